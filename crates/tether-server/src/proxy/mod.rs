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
//!
//! Around each send, the provider's budget (`provider_limits`): a call it cannot take waits
//! for the reset or `Retry-After` (up to `proxy_max_wait`) or is answered 429 without calling
//! the provider, and each answer's budget headers are read back into it. Calls safe to repeat
//! are retried on 429, 502, 503, 504 and failed connections (`retry`), a kept body only; the
//! operator's budgets (`budgets`) are checked once per call, before anything else is spent
//! (`shared_budgets` instead with `[proxy] shared_budgets`: in PostgreSQL, for every instance).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri, header};
use axum::response::IntoResponse as _;
use axum::routing::any;
use http_body_util::{Either, Full};
use percent_encoding::percent_decode_str;
use std::time::{Duration, Instant};
use tether_core::catalog::rate_limit::{self, RateLimitDef, WindowReading};
use tether_core::credentials::Credentials;
use tether_core::ids::ConnectionId;
use tether_store::Store;
use tracing::Instrument;
use url::Url;

pub(crate) mod budgets;
pub(crate) mod client;
mod history;
mod host_limits;
pub(crate) mod provider_limits;
mod retry;
mod shared_budgets;

use self::client::{ProxyBody, ProxyError, ProxyResponse};
use self::provider_limits::{Admission, BudgetKey, MAX_WINDOWS, Ticket, budget_key};
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
) -> Response<Body> {
    answer(&state, &params.id, request).await
}

/// The proxied call's answer on connection `id` (as the route gives it, not yet checked), with
/// the number of calls sent again; the app's key has been checked. For the route above and for
/// the same route served ahead of the router (`http::fast_path`).
pub(crate) async fn answer<S: Store>(
    state: &AppState<S>,
    id: &str,
    request: Request,
) -> Response<Body> {
    let mut retries = 0u32;
    let mut response = match forward(state, id, request, &mut retries).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    response
        .headers_mut()
        .insert(retry::RETRIES, retry::count_value(retries));
    response
}

/// The proxied call, with its waits for the provider's budget, its retries and its refresh
/// after a 401; `retries` counts the calls sent again.
async fn forward<S: Store>(
    state: &AppState<S>,
    id: &str,
    request: Request,
    retries: &mut u32,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    let (mut parts, body) = request.into_parts();
    let raw_path = raw_provider_path(parts.uri.path(), id.as_str())?;
    let raw_query = parts.uri.query().map(str::to_owned);
    let policy = retry::Policy::read(&mut parts.headers, &parts.method, &state.config)?;
    let body = outgoing_body(state, &parts.headers, body).await?;
    let outgoing = Outgoing {
        method: parts.method,
        raw_path,
        raw_query,
        headers: parts.headers,
        body,
    };
    forward_outgoing(state, &id, outgoing, policy, retries).await
}

/// A call made in-process rather than through the route (the MCP server's `crm_request`):
/// it takes the same way as the app's (refresh, path confinement, budgets, retries).
pub(crate) struct InProcessCall {
    pub method: axum::http::Method,
    /// The provider path under its base URL, percent-encoded, with or without a leading `/`.
    pub path: String,
    /// The query string, already encoded.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `call` on connection `id` as the proxy route would; the caller has already decided
/// the connection is one it may use. Answers the provider's response and the retries made.
pub(crate) async fn forward_in_process<S: Store>(
    state: &AppState<S>,
    id: &ConnectionId,
    call: InProcessCall,
) -> Result<(Response<Body>, u32), ApiError> {
    let InProcessCall {
        method,
        path,
        query,
        mut headers,
        body,
    } = call;
    let raw_path = checked_provider_path(path.strip_prefix('/').unwrap_or(&path))?;
    let policy = retry::Policy::read(&mut headers, &method, &state.config)?;
    if body.len() > state.config.proxy_max_body_bytes {
        return Err(ApiError::PayloadTooLarge(state.config.proxy_max_body_bytes));
    }
    let outgoing = Outgoing {
        method,
        raw_path,
        raw_query: query,
        headers,
        body: OutgoingBody::Kept(body),
    };
    let mut retries = 0;
    let response = forward_outgoing(state, id, outgoing, policy, &mut retries).await?;
    Ok((response, retries))
}

/// [`forward`] once the request is read: the budgets, the sends, the refresh after a 401.
async fn forward_outgoing<S: Store>(
    state: &AppState<S>,
    id: &ConnectionId,
    mut outgoing: Outgoing,
    policy: retry::Policy,
    retries: &mut u32,
) -> Result<Response<Body>, ApiError> {
    let live = refresh::live(state, id.as_str(), Freshness::Normal).await?;
    // After a 401, the refreshed connection (of the same integration).
    let mut refreshed: Option<Live> = None;
    let integration = &live.integration;
    let integration_key = integration.key.as_str();
    let rate_limit = integration.provider.rate_limit.as_ref();
    let scope = rate_limit.map(|r| r.scope).unwrap_or_default();
    let account = live.row.provider_account.as_ref();
    let key = budget_key(scope, integration_key, id.as_str(), account);
    let over = if state.config.proxy_shared_budgets {
        // Boxed: a database call's future, inline, would make every proxied call's future
        // (held for the whole call) larger, shared budgets or not.
        Box::pin(shared_budgets::take(state, integration, id.as_str(), key)).await
    } else if let Some(budget) = &integration.budget {
        state
            .proxy_budgets
            .take(budget, integration_key, id.as_str(), state.clock.instant())
    } else {
        Ok(())
    };
    if let Err(over) = over {
        state
            .metrics
            .rate_limit_event(integration_key, "refused_budget");
        return Err(throttled(
            "budget_exceeded",
            match over {
                budgets::Over::Connection(_) => {
                    "this connection is over its share of the integration's request budget"
                }
                budgets::Over::Integration(_) => {
                    "the integration is over the request budget its operator set"
                }
            },
            over.retry_after(),
        ));
    }
    let deadline = state.clock.instant() + state.config.proxy_retry_within;
    loop {
        let current = refreshed.as_ref().unwrap_or(&live);
        let ticket = admit(state, key, integration_key, deadline).await?;
        let result = send(state, current, &mut outgoing).await;
        let now = state.clock.instant();
        let (retry_after, spent) = match &result {
            Ok(response) => {
                let retry_after = observe(state, key, ticket, rate_limit, response, now);
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    state
                        .metrics
                        .rate_limit_event(integration_key, "provider_429");
                }
                retry_after
            }
            Err(_) => {
                drop(ticket);
                (None, false)
            }
        };
        if spent {
            history::held_back(state, current, key, now);
            if state.config.proxy_shared_budgets {
                shared_budgets::hold(state, key, now);
            }
        }
        let status = result.as_ref().ok().map(|response| response.status());
        if status == Some(StatusCode::UNAUTHORIZED)
            && refreshed.is_none()
            && matches!(current.credentials.as_ref(), Credentials::Oauth2(_))
        {
            // The provider says the token is bad: refresh once (unless someone already did)
            // and send the same request again; a streamed body is gone, so then the app gets
            // the 401 and its own retry finds the fresh token.
            let version = current.row.credentials_version;
            let fresh = refresh::live(state, id.as_str(), Freshness::Rejected { version }).await?;
            refreshed = Some(fresh);
            if outgoing.body.can_resend() {
                // The refused response holds its host's turn (see `host_limits`) until
                // dropped: held over the resend, it would wait for itself when the host has
                // no turn free.
                drop(result);
                continue;
            }
        }
        let retry = match (&result, status) {
            (_, Some(status)) => retry::retryable(status),
            (Err(ApiError::ProviderUnavailable(_)), None) => true,
            _ => false,
        };
        let delay = if retry && outgoing.body.can_resend() {
            policy.next_delay(*retries, retry_after, now, deadline)
        } else {
            None
        };
        let Some(delay) = delay else {
            return result.map(|response| stream_back(state, key, response, now));
        };
        drop(result);
        *retries += 1;
        state.metrics.rate_limit_event(integration_key, "retry");
        tokio::time::sleep(delay).await;
    }
}

/// A 429 from the proxy itself, with `Retry-After` in whole seconds (rounded up).
fn throttled(code: &'static str, detail: &str, after: Duration) -> ApiError {
    ApiError::Throttled {
        code,
        detail: detail.to_owned(),
        retry_after: whole_seconds(after),
    }
}

fn whole_seconds(after: Duration) -> u64 {
    after.as_secs() + u64::from(after.subsec_nanos() > 0)
}

/// Waits, within `[proxy] max_wait_secs` and the call's deadline, until the provider's
/// budget allows the call; a longer wait is a 429 at once, without calling the provider.
async fn admit<S: Store>(
    state: &AppState<S>,
    key: BudgetKey<'_>,
    integration: &str,
    deadline: Instant,
) -> Result<Ticket, ApiError> {
    let max_wait = state.config.proxy_max_wait;
    // Counted apart from the clock, so a clock that does not move cannot hold a call forever.
    let mut slept = Duration::ZERO;
    loop {
        let now = state.clock.instant();
        let until = match state.provider_limits.admit(key, now) {
            Admission::Go(ticket) => return Ok(ticket),
            Admission::Wait(until) => until,
        };
        let wait = until.saturating_duration_since(now);
        if slept + wait > max_wait || until > deadline {
            state
                .metrics
                .rate_limit_event(integration, "refused_provider");
            return Err(throttled(
                "provider_rate_limited",
                "the provider's request budget for this connection is spent until the time \
                 Retry-After gives; the provider was not called",
                wait,
            ));
        }
        if slept.is_zero() {
            state.metrics.rate_limit_event(integration, "wait");
        }
        slept += wait;
        tokio::time::sleep(wait).await;
    }
}

/// Hands an answer's budget headers (and its `Retry-After`, on 429 and 503) to the budget;
/// returns the `Retry-After` and whether the budget is now spent.
fn observe<S: Store>(
    state: &AppState<S>,
    key: BudgetKey<'_>,
    ticket: Ticket,
    rate_limit: Option<&RateLimitDef>,
    response: &ProxyResponse,
    now: Instant,
) -> (Option<Duration>, bool) {
    let headers = response.headers();
    let wall_millis = state.clock.now().saturating_mul(1000);
    let retry_after = matches!(response.status().as_u16(), 429 | 503)
        .then(|| headers.get(header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| rate_limit::retry_after(v, wall_millis));
    let mut readings = [WindowReading::default(); MAX_WINDOWS];
    if let Some(def) = rate_limit.filter(|d| d.reads_headers()) {
        def.read(
            |name| headers.get(name).and_then(|v| v.to_str().ok()),
            wall_millis,
            &mut readings,
        );
    }
    let windows = rate_limit.map_or(0, RateLimitDef::windows).min(MAX_WINDOWS);
    let spent = state
        .provider_limits
        .observe(key, ticket, &readings[..windows], retry_after, now);
    (retry_after, spent)
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
    checked_provider_path(rest)
}

/// `rest` (a raw path, without its leading `/`) when it stays under the provider's base.
fn checked_provider_path(rest: &str) -> Result<String, ApiError> {
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

/// The provider URI of [`provider_url`], built from the base URL's text and what the app sent
/// when that is only characters `url` would keep as they are (the usual case), so without a
/// `Url` to copy, re-parse and serialise and then parse again as a `Uri`; through
/// [`provider_url`] otherwise (characters `url` percent-encodes, the catalog's own query
/// parameters), so both ways give the same URI. The checks of [`checked_provider_path`] are
/// made before, either way.
fn provider_uri(
    base: &Url,
    raw_path: &str,
    raw_query: Option<&str>,
    added: &[(String, String)],
) -> Result<Uri, ApiError> {
    let direct = added.is_empty()
        && matches!(base.scheme(), "http" | "https")
        && base.fragment().is_none()
        && kept_as_is(raw_path, false)
        && raw_query.is_none_or(|query| kept_as_is(query, true));
    let text = if direct {
        let origin = &base[..url::Position::BeforePath];
        let base_path = base.path().trim_end_matches('/');
        let query_len = raw_query.map_or(0, |query| query.len() + 1);
        let mut text =
            String::with_capacity(origin.len() + base_path.len() + raw_path.len() + query_len + 1);
        text.push_str(origin);
        text.push_str(base_path);
        // `url` gives an empty path of an http(s) URL as `/`.
        if !raw_path.is_empty() || base_path.is_empty() {
            text.push('/');
        }
        text.push_str(raw_path);
        if let Some(query) = raw_query {
            text.push('?');
            text.push_str(query);
        }
        text
    } else {
        String::from(provider_url(base, raw_path, raw_query, added))
    };
    Uri::try_from(text).map_err(|_| {
        ApiError::bad_request(
            "invalid_proxy_path",
            "the proxied path and query do not form a valid URL",
        )
    })
}

/// Whether `url` keeps `text` as it is in an http(s) URL's path (or query): only RFC 3986's
/// unreserved characters, `%`, and the delimiters `url` never encodes there (and `?` in a
/// query). A subset of what `url` keeps, on purpose: anything else takes the `Url` way.
fn kept_as_is(text: &str, query: bool) -> bool {
    text.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            )
            || (query && b == b'?')
    })
}

/// The app's request, kept so it can be sent a second time after a refresh.
struct Outgoing {
    method: axum::http::Method,
    raw_path: String,
    raw_query: Option<String>,
    /// As the app sent them (less Tether's own controls): each send copies those it forwards
    /// (see [`forwarded_headers`]).
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
/// header lists) and the app's own credentials, followed by the provider's auth headers
/// (`auth`), which replace any of the app's with the same name.
///
/// One pass over the headers the app sent, into a map made for them. (It used to be one
/// `remove` per dropped name, eleven lookups whether the header was there or not, and then a
/// copy of what was left for each send.)
fn forwarded_headers(incoming: &HeaderMap, auth: &[provider_auth::PreparedHeader]) -> HeaderMap {
    // Rare: most clients send no `Connection` header over HTTP/1.1, and none over HTTP/2.
    let listed_in_connection: Vec<HeaderName> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| HeaderName::try_from(v.trim()).ok())
        .collect();
    let mut headers = HeaderMap::with_capacity(incoming.len() + auth.len());
    // Every value, a name's values one after the other; comparing names is cheap (a standard
    // name is a small number).
    for (name, value) in incoming {
        if !(DROPPED_REQUEST_HEADERS.contains(name)
            || name == "keep-alive"
            || listed_in_connection.contains(name))
        {
            headers.append(name, value.clone());
        }
    }
    for header in auth {
        headers.insert(header.name.clone(), header.value.clone());
    }
    headers
}

async fn send<S: Store>(
    state: &AppState<S>,
    live: &Live,
    outgoing: &mut Outgoing,
) -> Result<ProxyResponse, ApiError> {
    let prepared = provider_auth::prepared(live)?;
    let uri = provider_uri(
        &prepared.base_url,
        &outgoing.raw_path,
        outgoing.raw_query.as_deref(),
        &prepared.query,
    )?;
    let mut request = http::Request::new(outgoing.body.take());
    *request.method_mut() = outgoing.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = forwarded_headers(&outgoing.headers, &prepared.headers);
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
/// handed over as it arrives without copying it through another stream. A 429 without
/// `Retry-After` gets one from what the budget knows, so the app always has one.
fn stream_back<S: Store>(
    state: &AppState<S>,
    key: BudgetKey<'_>,
    response: ProxyResponse,
    now: Instant,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    for name in DROPPED_RESPONSE_HEADERS {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    parts.headers.remove("set-cookie2");
    if parts.status == StatusCode::TOO_MANY_REQUESTS
        && !parts.headers.contains_key(header::RETRY_AFTER)
    {
        let known = state
            .provider_limits
            .get(key)
            .map(|budget| budget.snapshot(now))
            .and_then(|s| s.blocked_for.or(s.resets_in));
        let after = whole_seconds(known.unwrap_or(Duration::from_secs(1))).max(1);
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every proxied request in flight holds its handler's future (boxed by axum) for the
    /// whole call; a large inline state (a refresh, a database call) used to make it several
    /// KiB per request. The bound is for the unoptimised test build, where futures are larger
    /// than in release.
    #[tokio::test]
    async fn proxied_call_future_stays_small() {
        let store = tether_store::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap();
        let state = AppState::for_tests(
            store,
            std::sync::Arc::new(crate::connection_service::clock::SystemClock),
        );
        let mut retries = 0;
        let call = forward(&state, ID, Request::new(Body::empty()), &mut retries);
        let size = std::mem::size_of_val(&call);
        // 5,464 bytes before the refresh and the shared budget were boxed, 3,104 after.
        const FUTURE_BOUND: usize = 3_584;
        assert!(
            size <= FUTURE_BOUND,
            "the proxied call's future is {size} bytes"
        );
    }

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

    #[test]
    fn builds_provider_uris_directly_or_through_url() {
        let base = Url::parse("http://127.0.0.1:9/api/public/v1/").unwrap();
        let uri = |path: &str, query: Option<&str>| {
            provider_uri(&base, path, query, &[]).unwrap().to_string()
        };
        assert_eq!(
            uri("contacts", Some("page=2")),
            "http://127.0.0.1:9/api/public/v1/contacts?page=2"
        );
        assert_eq!(uri("", None), "http://127.0.0.1:9/api/public/v1");
        assert_eq!(uri("", Some("")), "http://127.0.0.1:9/api/public/v1?");
        // Characters `url` encodes take its way, as before.
        assert_eq!(
            uri("a{b}", Some("q='x'")),
            "http://127.0.0.1:9/api/public/v1/a%7Bb%7D?q=%27x%27"
        );
        let root = Url::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(
            provider_uri(&root, "", None, &[]).unwrap().to_string(),
            "http://127.0.0.1:9/"
        );
        let added = [("auth".to_owned(), "t k".to_owned())];
        assert_eq!(
            provider_uri(&root, "crm.deal.list", Some("start=50"), &added)
                .unwrap()
                .to_string(),
            "http://127.0.0.1:9/crm.deal.list?start=50&auth=t+k"
        );
    }

    #[test]
    fn forwards_the_apps_headers_but_not_hop_by_hop_ones_or_its_credentials() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("accept", "application/json"),
            ("x-trace", "1"),
            ("x-trace", "2"),
            ("authorization", "Bearer app-key"),
            ("cookie", "session=1"),
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "gone"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
            ("host", "127.0.0.1:3003"),
            ("x-api-key", "the app's"),
        ] {
            incoming.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let auth = [provider_auth::PreparedHeader {
            written: "X-Api-Key".to_owned(),
            name: HeaderName::from_static("x-api-key"),
            value: HeaderValue::from_static("provider-token"),
        }];
        let forwarded = forwarded_headers(&incoming, &auth);
        let mut names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "x-api-key", "x-trace"]);
        let traces: Vec<_> = forwarded.get_all("x-trace").iter().collect();
        assert_eq!(traces, ["1", "2"]);
        assert_eq!(forwarded.get_all("x-api-key").iter().count(), 1);
        assert_eq!(forwarded["x-api-key"], "provider-token");
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

            /// The direct way to the provider URI gives what the `Url` way gives, for every
            /// path the checks accept and any query (characters `url` encodes included).
            #[test]
            fn direct_uris_are_the_ones_url_gives(
                path in attack_path(),
                query in proptest::option::of("[a-z0-9=&.%/?'\" <>{}^|`;:@!$()*+,~-]{0,12}"),
            ) {
                let Ok(raw) = check(&path) else {
                    return Ok(());
                };
                for base in [
                    "http://127.0.0.1:9/api/v1",
                    "http://127.0.0.1:9/",
                    "https://127.0.0.1/a/",
                    "http://127.0.0.1:9/a#part",
                ] {
                    let base = Url::parse(base).unwrap();
                    let by_url = Uri::try_from(
                        provider_url(&base, &raw, query.as_deref(), &[]).as_str(),
                    )
                    .ok()
                    .map(|uri| uri.to_string());
                    let direct = provider_uri(&base, &raw, query.as_deref(), &[])
                        .ok()
                        .map(|uri| uri.to_string());
                    prop_assert_eq!(direct, by_url);
                }
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
