//! Emulator of a provider API protected by a static API key: the class of Affinity (v2,
//! `Authorization: Bearer KEY`), Apollo (`x-api-key`), Copper by API key (`X-PW-AccessToken`
//! with `X-PW-UserEmail` and `X-PW-Application`), Odoo's JSON-2 API (`Authorization: bearer
//! KEY`) and Follow Up Boss (HTTP Basic with the key as user name, plus `X-System` and
//! `X-System-Key`).
//!
//! Every path answers: a request that carries the key where the profile puts it, and every
//! required header with its value, gets an echo of itself (method, path, query, headers),
//! merged with the profile's extra fields; anything else gets 401, or (for APIs that report
//! a bad key inside a 200, as Apollo's health check does) 200 with the profile's body. It
//! never echoes a request that failed the key check, and never panics on input.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::server::{self, Running};

/// Where the key goes and what a good or bad request gets.
#[derive(Clone)]
pub struct KeyApiConfig {
    /// The header that carries the key (lower case), e.g. `authorization` or `x-api-key`.
    pub key_header: String,
    /// The text before the key in that header: `Bearer `, `bearer `, or nothing. For HTTP
    /// Basic, the whole expected value goes in `key` and this is `Basic `.
    pub key_prefix: String,
    /// The valid key (or Basic credentials, base64).
    pub key: String,
    /// Headers every call must carry with exactly these values (names lower case).
    pub required_headers: Vec<(String, String)>,
    /// Fields merged into every successful answer.
    pub ok_fields: Map<String, Value>,
    /// When set, a bad key gets 200 with this body instead of 401.
    pub bad_key_body: Option<Value>,
}

impl std::fmt::Debug for KeyApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyApiConfig")
            .field("key_header", &self.key_header)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl KeyApiConfig {
    /// The key in `header`, after `prefix`.
    pub fn header(header: &str, prefix: &str, key: &str) -> Self {
        KeyApiConfig {
            key_header: header.to_ascii_lowercase(),
            key_prefix: prefix.to_owned(),
            key: key.to_owned(),
            required_headers: Vec::new(),
            ok_fields: Map::new(),
            bad_key_body: None,
        }
    }

    /// Also requires `name: value` on every call.
    pub fn requiring(mut self, name: &str, value: &str) -> Self {
        self.required_headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }
}

/// Counters of a running key API emulator.
#[derive(Clone, Debug, Default)]
pub struct KeyApiControl {
    calls: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl KeyApiControl {
    /// Every request, whatever the outcome.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Requests refused for a missing or wrong key or header.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

struct Shared {
    config: KeyApiConfig,
    control: KeyApiControl,
}

/// Starts a key API emulator on `127.0.0.1:0`.
pub async fn spawn(config: KeyApiConfig) -> std::io::Result<Running<KeyApiControl>> {
    let (listener, base_url) = server::bind_port(0).await?;
    let control = KeyApiControl::default();
    let shared = Arc::new(Shared {
        config,
        control: control.clone(),
    });
    let router = Router::new().fallback(answer).with_state(shared);
    Ok(server::start(listener, base_url, router, control))
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    shared.control.calls.fetch_add(1, Ordering::Relaxed);
    let config = &shared.config;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key_ok = text(&config.key_header)
        .and_then(|value| value.strip_prefix(config.key_prefix.as_str()))
        .is_some_and(|key| key == config.key);
    let headers_ok = config
        .required_headers
        .iter()
        .all(|(name, value)| text(name) == Some(value.as_str()));
    if !(key_ok && headers_ok) {
        shared.control.refused.fetch_add(1, Ordering::Relaxed);
        return match &config.bad_key_body {
            Some(body) => Json(body.clone()).into_response(),
            None => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_api_key"})),
            )
                .into_response(),
        };
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        seen.insert(
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    let mut body = config.ok_fields.clone();
    body.insert("method".into(), method.as_str().into());
    body.insert("path".into(), uri.path().into());
    body.insert("query".into(), uri.query().into());
    body.insert("headers".into(), json!(seen));
    Json(Value::Object(body)).into_response()
}
