//! `ANY /v1/proxy/{id}/{path...}`: forwards the app's request to the provider's API with the
//! connection's auth added, and streams the response back as is.
//!
//! The path is checked segment by segment on its raw (still percent-encoded) form, so it can
//! never leave the provider's base URL: no `..` or `.`, no empty segments (`//host`), no
//! encoded slash or backslash, and no dot segment hidden behind path parameters (`..;/`, which
//! Tomcat-style servers resolve as `..` once they strip the `;` part). The app's own `Authorization` and `Cookie` headers and
//! hop-by-hop headers are dropped; so are the provider's `Set-Cookie` headers, which would
//! otherwise hand the provider's session cookies (for the end user's account) to the app.
//!
//! The request body is kept in memory up to `proxy_retry_body_bytes` (or when it declares
//! no length), so the request can be sent once more after a refresh on a provider 401.
//! A larger body (up to `proxy_max_body_bytes`) streams through once: on a 401 the token is
//! still refreshed, but the 401 goes back to the app, whose own retry then succeeds.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, Response, StatusCode, Uri, header};
use axum::routing::any;
use http_body_util::{Either, Full};
use percent_encoding::percent_decode_str;
use std::time::Instant;
use tether_core::credentials::Credentials;
use tether_store::Store;
use tracing::Instrument;
use url::Url;

pub(crate) mod client;
mod host_limits;

use self::client::{ProxyBody, ProxyError, ProxyResponse};
use crate::api::parse_connection_id as parse_id;
use crate::connection_service::provider_auth;
use crate::connection_service::refresh::{self, Freshness, Live};
use crate::http::auth::App;
use crate::http::error::ApiError;
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/proxy/{id}", any(proxy::<S>))
        .route("/v1/proxy/{id}/", any(proxy::<S>))
        .route("/v1/proxy/{id}/{*path}", any(proxy::<S>))
}

/// Headers that describe one hop (RFC 9110 7.6.1) or the app's own credentials.
const DROPPED_REQUEST_HEADERS: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::AUTHORIZATION,
    header::COOKIE,
    header::CONTENT_LENGTH,
];

const DROPPED_RESPONSE_HEADERS: &[HeaderName] = &[
    header::SET_COOKIE,
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
];

/// The route's parameters: only the id. The `path` parameter is skipped (not copied): the
/// provider path is taken from the raw URI instead, see [`raw_provider_path`].
#[derive(serde::Deserialize)]
struct ProxyParams {
    id: String,
}

async fn proxy<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(params): Path<ProxyParams>,
    request: Request,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(&params.id)?;
    let (parts, body) = request.into_parts();
    let raw_path = raw_provider_path(parts.uri.path(), id.as_str())?;
    let raw_query = parts.uri.query().map(str::to_owned);
    let body = outgoing_body(&state, &parts.headers, body).await?;
    let mut outgoing = Outgoing {
        method: parts.method,
        raw_path,
        raw_query,
        headers: forwarded_headers(parts.headers),
        body,
    };
    let live = refresh::live(&state, id.as_str(), Freshness::Normal).await?;
    let response = send(&state, &live, &mut outgoing).await?;
    let response = if response.status() == StatusCode::UNAUTHORIZED
        && matches!(live.credentials.as_ref(), Credentials::Oauth2(_))
    {
        // The provider says the token is bad: refresh once (unless someone already did)
        // and send the same request again; a streamed body is gone, so then the app gets the
        // 401 and its own retry finds the fresh token.
        let version = live.row.credentials_version;
        let live = refresh::live(&state, id.as_str(), Freshness::Rejected { version }).await?;
        if outgoing.body.can_resend() {
            // The refused response holds its host's turn (see `host_limits`) until dropped:
            // held over the resend, it would wait for itself when the host has no turn free.
            drop(response);
            send(&state, &live, &mut outgoing).await?
        } else {
            response
        }
    } else {
        response
    };
    Ok(stream_back(response))
}

/// The app's body: kept in memory when it is small enough to send again after a refresh
/// (`proxy_retry_body_bytes`, or no declared length), streamed through once when it is
/// larger; never more than `proxy_max_body_bytes` (413).
async fn outgoing_body<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    body: Body,
) -> Result<OutgoingBody, ApiError> {
    let limit = state.config.proxy_max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(ApiError::PayloadTooLarge(limit)),
        Some(length) if length > state.config.proxy_retry_body_bytes as u64 => {
            // hyper's server holds the body to its declared length, so it stays in bounds.
            Ok(OutgoingBody::Streamed(Some(body)))
        }
        _ => axum::body::to_bytes(body, limit)
            .await
            .map(OutgoingBody::Kept)
            .map_err(|_| ApiError::PayloadTooLarge(limit)),
    }
}

/// The part of the request path after `/v1/proxy/{id}`, checked so it stays under the base.
fn raw_provider_path(path: &str, id: &str) -> Result<String, ApiError> {
    let marker_end = path
        .find(id)
        .map(|at| at + id.len())
        .ok_or_else(|| ApiError::bad_request("invalid_proxy_path", "malformed proxy path"))?;
    let rest = path[marker_end..].strip_prefix('/').unwrap_or("");
    if rest.is_empty() {
        return Ok(String::new());
    }
    let escapes = rest.split('/').enumerate().any(|(index, segment)| {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        segment.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains(['/', '\\'])
            // Servers that strip path parameters (`name;params`) resolve what is left, so the
            // name part must not be empty or a dot segment either (`..;/`, `.;`, `;x`).
            || matches!(decoded.split(';').next(), Some("" | "." | ".."))
            || decoded.chars().any(char::is_control)
            // `http:` as the first segment would read as an absolute URL to some servers.
            || (index == 0 && decoded.contains(':'))
    });
    if escapes {
        return Err(ApiError::bad_request(
            "invalid_proxy_path",
            "the proxied path must stay under the provider's base URL: no '..', '.', empty \
             segments, encoded slashes, '..;' or absolute URLs",
        ));
    }
    Ok(rest.to_owned())
}

/// The provider URL: base URL path + the checked path; the query passes through untouched,
/// followed by the catalog's own parameters (if any).
fn provider_url(
    base: &Url,
    raw_path: &str,
    raw_query: Option<&str>,
    added: &[(String, String)],
) -> Url {
    let mut url = base.clone();
    let mut path = String::from(base.path().trim_end_matches('/'));
    if !raw_path.is_empty() {
        path.push('/');
        path.push_str(raw_path);
    }
    url.set_path(&path);
    url.set_query(raw_query);
    if !added.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in added {
            pairs.append_pair(name, value);
        }
    }
    url
}

/// The app's request, kept so it can be sent a second time after a refresh.
struct Outgoing {
    method: axum::http::Method,
    raw_path: String,
    raw_query: Option<String>,
    headers: HeaderMap,
    body: OutgoingBody,
}

enum OutgoingBody {
    Kept(Bytes),
    /// Taken by the first send.
    Streamed(Option<Body>),
}

impl OutgoingBody {
    fn can_resend(&self) -> bool {
        matches!(self, OutgoingBody::Kept(_))
    }

    fn take(&mut self) -> ProxyBody {
        match self {
            OutgoingBody::Kept(bytes) => Either::Left(Full::new(bytes.clone())),
            OutgoingBody::Streamed(body) => Either::Right(body.take().unwrap_or_default()),
        }
    }
}

/// The app's headers minus hop-by-hop ones (RFC 9110 7.6.1, including any the `Connection`
/// header lists) and the app's own credentials; computed once per request.
fn forwarded_headers(mut incoming: HeaderMap) -> HeaderMap {
    let listed_in_connection: Vec<HeaderName> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| HeaderName::try_from(v.trim()).ok())
        .collect();
    for name in DROPPED_REQUEST_HEADERS.iter().chain(&listed_in_connection) {
        incoming.remove(name);
    }
    incoming.remove("keep-alive");
    incoming
}

async fn send<S: Store>(
    state: &AppState<S>,
    live: &Live,
    outgoing: &mut Outgoing,
) -> Result<ProxyResponse, ApiError> {
    let prepared = provider_auth::prepared(live)?;
    let url = provider_url(
        &prepared.base_url,
        &outgoing.raw_path,
        outgoing.raw_query.as_deref(),
        &prepared.query,
    );
    let uri = Uri::try_from(url.as_str()).map_err(|_| {
        ApiError::bad_request(
            "invalid_proxy_path",
            "the proxied path and query do not form a valid URL",
        )
    })?;
    let mut request = http::Request::new(outgoing.body.take());
    *request.method_mut() = outgoing.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    *headers = outgoing.headers.clone();
    for header in &prepared.headers {
        headers.insert(header.name.clone(), header.value.clone());
    }
    let integration = live.integration.key.as_str();
    let started = Instant::now();
    let span = tracing::debug_span!("proxy.upstream", integration, method = %outgoing.method);
    let result = state
        .proxy_client
        .send(request, prepared.trust)
        .instrument(span)
        .await;
    let class = match &result {
        Ok(response) => match response.status().as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        Err(ProxyError::Unavailable(_)) => "unreachable",
        Err(ProxyError::Failed(_)) => "failed",
        Err(ProxyError::Refused(_)) => "refused",
        Err(ProxyError::TotalDeadline) => "timeout",
    };
    state
        .metrics
        .proxied(integration, class, started.elapsed().as_secs_f64());
    result.map_err(|err| {
        // The error names no URL: the app's query string may hold anything.
        match err {
            ProxyError::Unavailable(error) => {
                tracing::warn!(connection_id = %live.row.id, %error, "provider unreachable");
                ApiError::ProviderUnavailable("the provider could not be reached".into())
            }
            ProxyError::Failed(error) => {
                tracing::warn!(connection_id = %live.row.id, %error, "proxied request failed");
                ApiError::Provider("the provider's response could not be read".into())
            }
            ProxyError::TotalDeadline => {
                tracing::warn!(connection_id = %live.row.id, "no provider answer within the total deadline");
                ApiError::ProviderTimeout(
                    "the provider did not answer within the proxy's total deadline".into(),
                )
            }
            ProxyError::Refused(error) => {
                tracing::warn!(connection_id = %live.row.id, %error, "provider address refused");
                ApiError::Provider(
                    "the provider's address is not allowed by the outbound address policy".into(),
                )
            }
        }
    })
}

/// The provider's response as ours: status, headers (minus hop-by-hop ones) and the body,
/// handed over as it arrives without copying it through another stream.
fn stream_back(response: ProxyResponse) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    for name in DROPPED_RESPONSE_HEADERS {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    parts.headers.remove("set-cookie2");
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "conn_0123456789abcdef0123456789abcdef";

    fn check(path: &str) -> Result<String, ApiError> {
        let mut full = String::from("/v1/proxy/");
        full.push_str(ID);
        full.push_str(path);
        raw_provider_path(&full, ID)
    }

    #[test]
    fn accepts_ordinary_paths() {
        assert_eq!(check("/v1/deals").unwrap(), "v1/deals");
        assert_eq!(check("/contacts/search").unwrap(), "contacts/search");
        assert_eq!(check("").unwrap(), "");
        assert_eq!(check("/a%20b").unwrap(), "a%20b");
        assert_eq!(check("/a;v=1/b").unwrap(), "a;v=1/b");
    }

    #[test]
    fn rejects_escapes() {
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/.%2E/x",
            "/a%2Fb",
            "/a%2fb",
            "//evil.example/x",
            "/a//b",
            "/./x",
            "/https:/evil",
            "/a%5Cb",
            "/a\\b",
            "/..;/x",
            "/a/..;/b",
            "/.;/x",
            "/%2e%2e;/x",
            "/..%3b/x",
            "/;x/b",
        ] {
            assert!(check(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn builds_provider_urls() {
        let base = Url::parse("http://127.0.0.1:9/api/public/v1").unwrap();
        assert_eq!(
            provider_url(&base, "contacts", Some("page=2"), &[]).as_str(),
            "http://127.0.0.1:9/api/public/v1/contacts?page=2"
        );
        let base = Url::parse("http://127.0.0.1:9/").unwrap();
        assert_eq!(
            provider_url(&base, "v1/deals", None, &[]).as_str(),
            "http://127.0.0.1:9/v1/deals"
        );
        let added = [("auth".to_owned(), "t k".to_owned())];
        assert_eq!(
            provider_url(&base, "crm.deal.list", Some("start=50"), &added).as_str(),
            "http://127.0.0.1:9/crm.deal.list?start=50&auth=t+k"
        );
    }

    mod properties {
        //! Property tests: paths built from the pieces attackers use (dot segments, `;`,
        //! encoded dots, slashes, backslashes and semicolons, `:`) are either refused, or
        //! give a provider URL on the same origin, under the base path, with no segment that
        //! any server would resolve as `.` or `..`.

        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = &'static str> {
            prop_oneof![
                Just("."),
                Just(".."),
                Just(";"),
                Just("%2e"),
                Just("%2E"),
                Just("%2f"),
                Just("%5c"),
                Just("%3b"),
                Just("/"),
                Just("\\"),
                Just(":"),
                Just("a"),
                Just("Z"),
                Just("7"),
                Just("%20"),
            ]
        }

        fn attack_path() -> impl Strategy<Value = String> {
            proptest::collection::vec(piece(), 0..12).prop_map(|pieces| {
                let mut path = String::from("/");
                pieces.iter().for_each(|p| path.push_str(p));
                path
            })
        }

        /// `.` or `..` after percent-decoding, alone or before a `;` parameter.
        fn is_dot_segment(segment: &str) -> bool {
            let decoded = percent_decode_str(segment).decode_utf8_lossy();
            let name = decoded.split(';').next().unwrap_or("");
            [decoded.as_ref(), name]
                .iter()
                .any(|s| *s == "." || *s == "..")
        }

        proptest! {
            #[test]
            fn accepted_paths_stay_under_the_base(
                path in attack_path(),
                query in proptest::option::of("[a-z0-9=&.%/]{0,12}"),
            ) {
                let Ok(raw) = check(&path) else {
                    return Ok(());
                };
                let base = Url::parse("http://127.0.0.1:9/api/v1").unwrap();
                let url = provider_url(&base, &raw, query.as_deref(), &[]);
                prop_assert_eq!(url.scheme(), "http");
                prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
                prop_assert_eq!(url.port(), Some(9));
                prop_assert!(url.username().is_empty() && url.password().is_none());
                prop_assert!(
                    url.path() == "/api/v1" || url.path().starts_with("/api/v1/"),
                    "{} left the base path", url
                );
                let segments: Vec<&str> = url.path_segments().unwrap().collect();
                prop_assert!(
                    !segments.iter().any(|s| is_dot_segment(s)),
                    "{} has a dot segment", url
                );
                // Nothing was resolved away: every segment the app sent is still there.
                let sent = if raw.is_empty() { 0 } else { raw.split('/').count() };
                prop_assert_eq!(segments.len(), 2 + sent, "{}", url);
            }

            #[test]
            fn never_panics(path in "\\PC{0,40}", query in proptest::option::of("\\PC{0,20}")) {
                if let Ok(raw) = check(&path) {
                    let base = Url::parse("http://127.0.0.1:9/").unwrap();
                    let url = provider_url(&base, &raw, query.as_deref(), &[]);
                    prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
                }
            }
        }
    }
}
