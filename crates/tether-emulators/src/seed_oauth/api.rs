//! The seed provider's Bearer-protected API: `GET`/`POST /v1/deals` and `/v1/echo`.
//!
//! Access tokens are checked as RFC 6750 describes: a missing, unknown, expired or revoked
//! token gets 401 `{"error":"invalid_token"}` with `WWW-Authenticate: Bearer
//! error="invalid_token"`, which is what triggers Tether's refresh-and-retry. These handlers
//! must never reveal why a token is invalid nor include a token in a deal.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::state::Deal;
use super::{Shared, lock};
use crate::http_util::authorization;

/// Checks the Bearer token (RFC 6750 2.1), or the token where the profile puts it instead (a
/// header without a scheme, a query parameter); `Err` carries the 401 to send.
pub(crate) fn check_bearer(
    shared: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), Response> {
    let state = lock(shared);
    let in_header = state
        .config
        .token_header
        .as_deref()
        .and_then(|name| crate::http_util::header_text(headers, name));
    let pairs = crate::http_util::query_pairs(query);
    let in_query = state
        .config
        .token_query_param
        .as_deref()
        .and_then(|name| crate::http_util::first(&pairs, name));
    let valid = authorization(headers, &state.config.token_scheme)
        .or(in_header)
        .or(in_query)
        .is_some_and(|token| state.access_token_valid(token));
    drop(state);
    if valid {
        return Ok(());
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "invalid_token" })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    Err(response)
}

fn invalid_request(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid_request", "error_description": description })),
    )
        .into_response()
}

/// `GET /v1/deals`: the seeded deals plus any created ones.
pub(crate) async fn list_deals(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    lock(&shared).api_calls += 1;
    if let Err(response) = check_bearer(&shared, &headers, uri.query()) {
        return response;
    }
    let deals = lock(&shared).deals.clone();
    Json(json!({ "deals": deals })).into_response()
}

/// `POST /v1/deals`: creates a deal from `{"title", "value"?, "stage"?}` and returns it, 201.
pub(crate) async fn create_deal(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&shared).api_calls += 1;
    if let Err(response) = check_bearer(&shared, &headers, uri.query()) {
        return response;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return invalid_request("The body must be a JSON object");
    };
    let title = match fields.get("title") {
        Some(Value::String(title)) if !title.trim().is_empty() => title.clone(),
        _ => return invalid_request("title is required"),
    };
    let value = match fields.get("value") {
        None | Some(Value::Null) => 0,
        Some(value) => match value.as_u64() {
            Some(value) => value,
            None => return invalid_request("value must be a non-negative integer"),
        },
    };
    let stage = match fields.get("stage") {
        None | Some(Value::Null) => "lead".to_owned(),
        Some(Value::String(stage)) => stage.clone(),
        Some(_) => return invalid_request("stage must be a string"),
    };
    let deal = {
        let mut state = lock(&shared);
        let id = state.deals.iter().map(|d| d.id).max().unwrap_or(0) + 1;
        let deal = Deal {
            id,
            title,
            value,
            stage,
        };
        state.deals.push(deal.clone());
        deal
    };
    (StatusCode::CREATED, Json(deal)).into_response()
}

/// `/v1/echo` (any method): describes the request as received, so proxy tests can see which
/// headers arrived, that the query survived and that the body was forwarded.
pub(crate) async fn echo(
    State(shared): State<Shared>,
    method: Method,
    // The path as the client sent it, `/x/{segment}/` included.
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = check_bearer(&shared, &headers, uri.query()) {
        return response;
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        seen.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": seen,
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}
