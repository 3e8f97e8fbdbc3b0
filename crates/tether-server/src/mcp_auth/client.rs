//! Who a `client_id` is: a client registered here (RFC 7591), or an https URL naming the
//! client's own metadata document (client ID metadata documents, MCP 2025-11-25), fetched
//! with a timeout, a size cap and no redirects, through the outbound address policy (the URL
//! comes from anyone, so it must not reach the operator's private network), and kept briefly.
//!
//! Also the rule every redirect URI must meet, wherever it was declared: https, or http on a
//! loopback address (RFC 8252 section 7.3), no fragment.

use std::time::{Duration, Instant};

use tether_core::address_policy::Trust;
use tether_store::Store;
use url::{Host, Url};

use crate::state::AppState;

/// Redirect URIs one client may declare.
pub const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI accepted.
pub const MAX_URI_LEN: usize = 2000;
/// The longest client name kept.
pub const MAX_NAME_LEN: usize = 200;
/// The largest client metadata document read.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// How long a metadata document may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Metadata documents kept per instance.
const CACHE_CAPACITY: usize = 1024;

/// A client, as the authorization endpoint needs it.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
}

/// Why a client id names no usable client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no client is registered with this client_id")]
    Unknown,
    #[error("the client's metadata document could not be used: {0}")]
    Document(String),
    #[error("store")]
    Store(#[from] tether_store::StoreError),
}

/// Metadata documents fetched recently, with when they were fetched.
pub struct MetadataCache(quick_cache::sync::Cache<String, (Instant, Client)>);

impl Default for MetadataCache {
    fn default() -> Self {
        MetadataCache(quick_cache::sync::Cache::new(CACHE_CAPACITY))
    }
}

/// Whether `uri` may receive authorization codes: https, or http on a loopback address, with
/// no fragment (RFC 6749 section 3.1.2, RFC 8252 sections 7.3 and 8.3).
pub fn redirect_uri_allowed(uri: &str) -> Result<Url, &'static str> {
    if uri.len() > MAX_URI_LEN {
        return Err("a redirect URI is longer than 2000 characters");
    }
    let url = Url::parse(uri).map_err(|_| "a redirect URI is not an absolute URL")?;
    if url.fragment().is_some() {
        return Err("a redirect URI must not have a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a redirect URI must not carry credentials");
    }
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => Ok(url),
        ("http", Some(Host::Ipv4(ip))) if ip.is_loopback() => Ok(url),
        ("http", Some(Host::Ipv6(ip))) if ip.is_loopback() => Ok(url),
        ("http", Some(Host::Domain("localhost"))) => Ok(url),
        _ => Err("a redirect URI must be https, or http on a loopback address"),
    }
}

/// Whether a client id is a metadata document URL (rather than a registered id).
fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// The client a `client_id` names.
pub async fn resolve<S: Store>(
    state: &AppState<S>,
    client_id: &str,
) -> Result<Client, ClientError> {
    if client_id.is_empty() || client_id.len() > MAX_URI_LEN {
        return Err(ClientError::Unknown);
    }
    if !is_document_url(client_id) {
        let row = state
            .store
            .get_mcp_client(client_id)
            .await?
            .ok_or(ClientError::Unknown)?;
        return Ok(Client {
            client_id: row.client_id,
            client_name: row.client_name,
            redirect_uris: row.redirect_uris,
        });
    }
    let ttl = state.config.mcp_auth.client_metadata_ttl;
    if let Some((fetched, client)) = state.mcp_auth.clients.0.get(client_id)
        && fetched.elapsed() < ttl
    {
        return Ok(client);
    }
    let client = fetch_document(state, client_id).await?;
    state
        .mcp_auth
        .clients
        .0
        .insert(client_id.to_owned(), (Instant::now(), client.clone()));
    Ok(client)
}

#[derive(serde::Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Fetches and checks a client ID metadata document.
async fn fetch_document<S: Store>(
    state: &AppState<S>,
    client_id: &str,
) -> Result<Client, ClientError> {
    let bad = |why: &str| ClientError::Document(why.to_owned());
    let url = Url::parse(client_id).map_err(|_| bad("the client_id is not a URL"))?;
    // The document's URL must name a document: a path, no fragment, no credentials.
    if url.path() == "/" || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("the client_id URL must have a path and no fragment"));
    }
    let request = state
        .outbound
        .request(reqwest::Method::GET, url, Trust::Guarded)
        .map_err(|_| bad("its address is not allowed"))?
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(FETCH_TIMEOUT);
    let response = request.send().await.map_err(|err| {
        tracing::info!(error = %err.without_url(), "client metadata document fetch failed");
        bad("it could not be fetched")
    })?;
    if !response.status().is_success() {
        // A redirect is never followed: the document must live at the client id itself.
        return Err(bad("its URL did not answer 200"));
    }
    let body = tether_core::outbound::read_capped(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|_| bad("it is larger than 16 KiB or did not arrive"))?;
    let document: Document = serde_json::from_slice(&body)
        .map_err(|_| bad("it is not a JSON client metadata document"))?;
    if document.client_id != client_id {
        return Err(bad("its client_id is not the URL it was fetched from"));
    }
    if document
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|method| method != "none")
    {
        return Err(bad(
            "only public clients (token_endpoint_auth_method none) are supported",
        ));
    }
    if document.redirect_uris.is_empty() || document.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad("it must declare between 1 and 10 redirect_uris"));
    }
    for uri in &document.redirect_uris {
        redirect_uri_allowed(uri).map_err(bad)?;
    }
    Ok(Client {
        client_id: document.client_id,
        client_name: document
            .client_name
            .map(|name| name.chars().take(MAX_NAME_LEN).collect()),
        redirect_uris: document.redirect_uris,
    })
}
