//! An app that embeds Tether instead of running it beside itself: one process, one tokio
//! runtime, the app's own routes at `/`, and Tether's whole router (API, Connect pages,
//! OAuth callback, proxy) mounted under `/tether`.
//!
//! The app's own handler `GET /users/{user}/deals` reads the user's CRM credentials through
//! the library ([`Gateway::credentials`]: refreshed when they expire, no HTTP round trip to
//! Tether) and calls the CRM itself with the base URL and headers Tether gives.
//!
//! The app remembers which connection belongs to which of its users from the return URL
//! (`/connected?connection_id=...`), as a real app would in its own database; here a map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tether_server::Gateway;
use tether_store::AnyStore;

/// The app's state: the embedded gateway, and its users' connections.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Gateway<AnyStore>,
    /// The app's user id -> their CRM connection id.
    pub connections: Arc<Mutex<HashMap<String, String>>>,
    http: reqwest::Client,
}

impl AppState {
    pub fn new(gateway: Gateway<AnyStore>) -> Self {
        AppState {
            gateway,
            connections: Arc::default(),
            http: reqwest::Client::new(),
        }
    }
}

/// The whole app: its own routes and Tether's under `/tether`. The gateway's
/// `public_url` must end in `/tether` so its links and OAuth callback point there.
pub fn router(state: AppState) -> Router {
    let tether = state.gateway.router();
    Router::new()
        .route("/", get(|| async { "Acme CRM sync" }))
        .route("/connected", get(connected))
        .route("/users/{user}/deals", get(deals))
        .with_state(state)
        .nest("/tether", tether)
}

#[derive(Deserialize)]
struct Connected {
    connection_id: String,
    #[serde(default)]
    user: Option<String>,
}

/// The return URL: Tether sends the browser back here with the new connection's id. The
/// app's session would say who the user is; this example carries it in the return URL.
async fn connected(State(state): State<AppState>, Query(query): Query<Connected>) -> Response {
    let Some(user) = query.user else {
        return (StatusCode::BAD_REQUEST, "which user?").into_response();
    };
    state
        .connections
        .lock()
        .expect("connections lock")
        .insert(user, query.connection_id);
    "Connected: you can close this page".into_response()
}

/// The app's own use of the CRM: credentials from the library, the call made by the app.
async fn deals(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    let connection = state
        .connections
        .lock()
        .expect("connections lock")
        .get(&user)
        .cloned();
    let Some(connection) = connection else {
        return (StatusCode::NOT_FOUND, "this user has not connected a CRM").into_response();
    };
    let credentials = match state.gateway.credentials(&connection).await {
        Ok(credentials) => credentials,
        Err(err) => return err.into_response(),
    };
    let Ok(mut url) = url::Url::parse(&credentials.base_url) else {
        return (StatusCode::BAD_GATEWAY, "bad base URL").into_response();
    };
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["v1", "deals"]);
    }
    let mut request = state.http.get(url);
    for (name, value) in &credentials.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => {
            match response.json::<serde_json::Value>().await {
                Ok(body) => Json(body).into_response(),
                Err(_) => (StatusCode::BAD_GATEWAY, "the CRM answered nonsense").into_response(),
            }
        }
        Ok(response) => (
            StatusCode::BAD_GATEWAY,
            format!("the CRM answered {}", response.status()),
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_GATEWAY, "the CRM could not be reached").into_response(),
    }
}
