//! Emulator of Salesmate's v4 REST API as it really authenticates
//! (its public documentation, cited in `providers/salesmate.toml`): an `accessToken` header (or the legacy `sessionToken`)
//! plus `x-linkname: <link>.salesmate.io` naming the account, since tests cannot use the real
//! `https://{link}.salesmate.io` hosts.
//!
//! Responses use Salesmate's envelope (`{"Status":"success","Data":...}` or a failure body,
//! sometimes with HTTP 200), capitalised related objects and an hourly call limit per link.
//! This emulator must never serve one account's records to another account's key.

mod data;
mod gate;
mod reply;
mod routes;
mod search;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;

use crate::server::{self, Running};

/// Configuration of one Salesmate emulator.
#[derive(Clone, Debug)]
pub struct SalesmateConfig {
    /// The accounts that exist, each with its own seeded data.
    pub accounts: Vec<SalesmateAccount>,
    /// Calls a link may make within an hour before getting 429 (real API: 1500).
    pub hourly_limit: u32,
}

/// One Salesmate account (a "link").
#[derive(Clone)]
pub struct SalesmateAccount {
    /// The link name, e.g. `"acme"` for `acme.salesmate.io`.
    pub link_name: String,
    /// The user's access key, sent as the `accessToken` header.
    pub access_key: String,
}

// Debug by hand so the access key never reaches a test log.
impl std::fmt::Debug for SalesmateAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesmateAccount")
            .field("link_name", &self.link_name)
            .field("access_key", &"[redacted]")
            .finish()
    }
}

impl Default for SalesmateConfig {
    fn default() -> Self {
        Self {
            accounts: vec![SalesmateAccount {
                link_name: "acme".to_owned(),
                access_key: "demo-salesmate-access-key".to_owned(),
            }],
            hourly_limit: 1500,
        }
    }
}

/// A misbehaviour applied to every following call until cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SalesmateFault {
    /// HTTP 500 with a failure body.
    ServerError,
    /// HTTP 502 with an HTML page.
    HtmlPage,
    /// HTTP 200 with `{"Status":"failure",...}`: clients must read `Status`, not only the code.
    OkWithFailure,
}

/// One account's records and rate-limit window.
pub(crate) struct Account {
    pub access_key: String,
    pub deals: Vec<Value>,
    pub contacts: Vec<Value>,
    pub users: Vec<Value>,
    pub window_start: Instant,
    pub window_calls: u32,
}

/// Mutable emulator state behind the control handle.
pub(crate) struct State {
    pub accounts: HashMap<String, Account>,
    pub hourly_limit: u32,
    pub fault: Option<SalesmateFault>,
    pub calls: u64,
    pub created_deals: usize,
}

pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state, recovering from poisoning (the data stays consistent between statements).
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Control handle of a running Salesmate emulator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct SalesmateControl {
    state: Shared,
}

impl std::fmt::Debug for SalesmateControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesmateControl").finish_non_exhaustive()
    }
}

impl SalesmateControl {
    /// Makes every following call misbehave as `fault` (`None` clears it).
    pub fn set_fault(&self, fault: Option<SalesmateFault>) {
        lock(&self.state).fault = fault;
    }

    /// Every request received, whatever the outcome.
    pub fn calls(&self) -> u64 {
        lock(&self.state).calls
    }

    /// Deals created through `POST /apis/deal/v4`, across accounts.
    pub fn created_deals(&self) -> usize {
        lock(&self.state).created_deals
    }
}

/// Starts a Salesmate emulator on `127.0.0.1:0`. Clients send `x-linkname` to pick the account.
pub async fn spawn(config: SalesmateConfig) -> std::io::Result<Running<SalesmateControl>> {
    let (listener, base_url) = server::bind().await?;
    let now = Instant::now();
    let accounts = config
        .accounts
        .iter()
        .map(|account| {
            let link = account.link_name.to_ascii_lowercase();
            let seeded = data::seed(&link);
            (
                link,
                Account {
                    access_key: account.access_key.clone(),
                    deals: seeded.deals,
                    contacts: seeded.contacts,
                    users: seeded.users,
                    window_start: now,
                    window_calls: 0,
                },
            )
        })
        .collect();
    let state: Shared = Arc::new(Mutex::new(State {
        accounts,
        hourly_limit: config.hourly_limit,
        fault: None,
        calls: 0,
        created_deals: 0,
    }));
    let router = routes::router(state.clone());
    Ok(server::start(
        listener,
        base_url,
        router,
        SalesmateControl { state },
    ))
}
