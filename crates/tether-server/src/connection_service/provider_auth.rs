//! What the provider expects on each call: the base URL and the auth headers, rendered from
//! the catalog's templates with the connection's credentials, metadata and the integration's
//! settings, once per cached credential version ([`prepared`]), for the proxy and the
//! credentials endpoint alike.

use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};
use tether_core::integration::Vars;
use tether_core::template::Template;
use tether_store::ConnectionRow;
use url::Url;

use super::error::ConnectionError;
use super::live::Live;

/// Parses a row's metadata column (a JSON object).
pub fn metadata_of(row: &ConnectionRow) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(&row.metadata) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// The catalog's (name, template) pairs (auth headers or query parameters, named `what` in
/// errors) rendered as (name, value).
fn rendered(
    pairs: &[(String, Template)],
    values: &Vars<'_>,
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    pairs
        .iter()
        .map(|(name, template)| {
            template
                .render(values)
                .map(|value| (name.clone(), value))
                .map_err(|e| format!("rendering {what} {name}: {e}"))
        })
        .collect()
}

/// What every call to the provider needs for one credential version, ready to use by the
/// proxy and the credentials endpoint alike.
pub struct PreparedAuth {
    pub base_url: Url,
    /// Whose word the base URL is: the proxy holds a guarded one to the address policy.
    pub trust: tether_core::outbound::Trust,
    pub headers: Vec<PreparedHeader>,
    /// Query parameters added to every call (most providers have none).
    pub query: Vec<(String, String)>,
}

/// One auth header: its name as the catalog writes it (what the credentials endpoint shows),
/// and the parsed name and value the proxy sends.
pub struct PreparedHeader {
    pub written: String,
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// Filled on first use; a failure (a catalog template that cannot render for this
/// connection) is kept too, so it is not retried on every request.
pub type PreparedSlot = OnceLock<Result<PreparedAuth, String>>;

/// The connection's base URL and auth headers, rendered once per cached credential version.
pub fn prepared(live: &Live) -> Result<&PreparedAuth, ConnectionError> {
    live.prepared
        .get_or_init(|| prepare(live))
        .as_ref()
        .map_err(|message| ConnectionError::Internal(anyhow::anyhow!("{message}")))
}

/// A header value whose bytes are wiped when its last clone drops (the entry was evicted,
/// invalidated or replaced, and no request in flight still holds it). `Bytes::from_owner`
/// keeps the rendered `String`'s buffer as is (no copy left behind) inside `Zeroizing`.
/// What hyper copies into a connection's write buffer is not covered.
fn zeroized_on_drop(value: String) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let owner = zeroize::Zeroizing::new(value.into_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(owner))
}

fn prepare(live: &Live) -> Result<PreparedAuth, String> {
    let metadata = metadata_of(&live.row);
    let values = live.integration.vars(&metadata, Some(&live.credentials));
    // Refused when a connection value (a token response's instance URL, an imported value)
    // names a host the provider's file does not allow.
    let (base_url, trust) = live
        .integration
        .base_url_with_trust(&values)
        .map_err(|e| format!("base URL: {e}"))?;
    let mut headers = Vec::with_capacity(live.integration.headers.len());
    for (name, value) in rendered(&live.integration.headers, &values, "header")? {
        let parsed = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("catalog header name {name:?} is invalid"))?;
        let mut value = zeroized_on_drop(value)
            .map_err(|_| format!("rendered header {name} is not a valid value"))?;
        // Keeps the value out of HTTP/2 header compression tables and debug output.
        value.set_sensitive(true);
        headers.push(PreparedHeader {
            written: name,
            name: parsed,
            value,
        });
    }
    let query = rendered(&live.integration.query, &values, "query parameter")?;
    Ok(PreparedAuth {
        base_url,
        trust,
        headers,
        query,
    })
}
