//! Emulator of Redtail CRM's public v1 API as it really authenticates
//! (its public documentation, cited in `providers/redtail.toml`): `GET /authentication` exchanges
//! `Basic base64(APIKEY:USERNAME:PASSWORD)` for a user key, and every other call sends
//! `UserKeyAuth base64(APIKEY:USERKEY)`. Routes live under `/api/public/v1`.
//!
//! The data (contacts, opportunities, activities) is seeded deterministically. This emulator
//! must never accept a user key without the matching API key, nor put a password in a response.

mod auth;
mod data;
mod routes;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::server::{self, Running};

/// Configuration of one Redtail emulator.
#[derive(Clone)]
pub struct RedtailConfig {
    /// The integrating company's API key; every call must carry it.
    pub api_key: String,
    /// End users who can authenticate.
    pub users: Vec<RedtailUser>,
}

/// One Redtail end user and the user key `GET /authentication` returns for them.
#[derive(Clone)]
pub struct RedtailUser {
    /// Login name.
    pub username: String,
    /// Password; may contain colons.
    pub password: String,
    /// The long-lived key returned by `/authentication` and sent on every later call.
    pub user_key: String,
    /// `redtail_database_id` of the authentication response.
    pub database_id: i64,
    /// `redtail_user_id` of the authentication response.
    pub user_id: i64,
}

// Debug by hand so secrets never reach a test log.
impl std::fmt::Debug for RedtailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedtailConfig")
            .field("api_key", &"[redacted]")
            .field("users", &self.users)
            .finish()
    }
}

impl std::fmt::Debug for RedtailUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedtailUser")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("user_key", &"[redacted]")
            .field("database_id", &self.database_id)
            .field("user_id", &self.user_id)
            .finish()
    }
}

impl Default for RedtailConfig {
    fn default() -> Self {
        Self {
            api_key: "demo-redtail-api-key".to_owned(),
            users: vec![RedtailUser {
                username: "demo".to_owned(),
                password: "demo-password".to_owned(),
                user_key: "6b1f3c9e-4d2a-4f8b-9a7e-2c5d8e0f1a3b".to_owned(),
                database_id: 1001,
                user_id: 42,
            }],
        }
    }
}

/// A misbehaviour applied to every following call until cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedtailFault {
    /// 500 `{"message":"Internal Server Error"}`.
    ServerError,
    /// 502 with an HTML page.
    HtmlPage,
    /// Sleep this long, then answer normally.
    Delay(Duration),
}

/// Mutable emulator state behind the control handle.
pub(crate) struct State {
    pub config: RedtailConfig,
    pub fault: Option<RedtailFault>,
    pub calls: u64,
    pub flat_auth_response: bool,
}

pub(crate) type Shared = Arc<Mutex<State>>;

/// Control handle of a running Redtail emulator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct RedtailControl {
    state: Shared,
}

impl std::fmt::Debug for RedtailControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedtailControl").finish_non_exhaustive()
    }
}

impl RedtailControl {
    /// Makes every following call misbehave as `fault` (`None` clears it).
    pub fn set_fault(&self, fault: Option<RedtailFault>) {
        lock(&self.state).fault = fault;
    }

    /// Every request under `/api/public/v1`, including `/authentication`, whatever the outcome.
    pub fn calls(&self) -> u64 {
        lock(&self.state).calls
    }

    /// Answer `/authentication` with the flat form `{"user_key",...}` instead of
    /// `{"authenticated_user":{...}}` (the provider facts name both shapes).
    pub fn set_flat_auth_response(&self, flat: bool) {
        lock(&self.state).flat_auth_response = flat;
    }
}

/// Locks the state, recovering from poisoning (the data stays consistent between statements).
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts a Redtail emulator on `127.0.0.1:0`; its API base is `{base_url}api/public/v1`.
pub async fn spawn(config: RedtailConfig) -> std::io::Result<Running<RedtailControl>> {
    let (listener, base_url) = server::bind().await?;
    let state: Shared = Arc::new(Mutex::new(State {
        config,
        fault: None,
        calls: 0,
        flat_auth_response: false,
    }));
    let router = routes::router(state.clone(), Arc::new(data::Dataset::seeded()));
    Ok(server::start(
        listener,
        base_url,
        router,
        RedtailControl { state },
    ))
}
