//! The store conformance suite: every behaviour the [`Store`] trait promises, written once,
//! generic over the backend, and instantiated per backend by `conformance_suite!` below.
//! This file is the harness: the backends' openers, the fixtures every subject shares, and the
//! list of cases; each subject's cases live in their own module (`sessions`, `connections`,
//! ...). A new case is a `pub(crate) async fn name<S: Store>(store: S)` in its subject's module
//! plus one `subject::name` line in the list; a new backend adds one `conformance_suite!` line
//! with its opener. Backend-only tests (`sqlite`, `postgres_specifics`, `change_feed`, the
//! `*_scale` modules) are plain `#[tokio::test]`s in their own modules.
//!
//! Tests never depend on each other or on wall-clock time: every test gets a fresh database
//! (on PostgreSQL, a fresh schema, dropped afterwards) and all timestamps derive from the
//! fixed [`NOW`].
//!
//! The PostgreSQL half needs a server: `TETHER_TEST_DATABASE_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test` (what `.ci/run` starts). Without one those tests
//! fail, saying so; they never skip silently.

// The suite's subjects, one module each.
mod agent_tokens;
mod api_keys;
mod budgets;
mod connections;
mod console;
mod history;
mod lifecycle;
mod mcp_oauth;
mod refresh;
mod restart;
mod sealing;
mod sessions;
mod webhooks;

// Backend-only tests.
mod change_feed;
mod postgres_scale;
mod postgres_specifics;
mod sqlite;
mod sqlite_scale;

// Shared with the `auth` test binary.
#[path = "../pg_support/mod.rs"]
mod pg_support;

use std::sync::Arc;

use tempfile::TempDir;
use tether_store::{
    AttemptOutcome, AttemptWindow, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    FlowStateRow, HistoryEntry, NewWebhookEvent, PgStore, RefreshClaim, RefreshFinish,
    RefreshedCredentials, Sealed, SealedCount, SqliteStore, StatusChange, Store, StoreError,
    TokenHash, WebhookAttempt, WebhookEventFilter, WebhookEventRow, WebhookStatus, history_kind,
};
use tokio::sync::Barrier;

use pg_support::{PgSchema, open_postgres};
use restart::{check_after_restart, seed_before_restart};

/// The suite's "current time", in unix seconds.
const NOW: i64 = 1_800_000_000;

/// How many tasks race in the concurrency tests.
const RACERS: usize = 16;

// ----- fixtures --------------------------------------------------------------------------

fn session(token_hash: &str, expires_at: i64) -> ConnectSessionRow {
    ConnectSessionRow {
        token_hash: TokenHash::from_hex(token_hash),
        end_user_id: "user-1".to_owned(),
        end_user_email: Some("ada@example.com".to_owned()),
        end_user_display_name: None,
        integrations: Some(r#"["github"]"#.to_owned()),
        return_url: Some("https://app.example.com/done".to_owned()),
        expires_at,
        created_at: NOW - 10,
        browser_hash: None,
        completed_at: None,
    }
}

fn flow(state_hash: &str, browser_hash: &str, expires_at: i64) -> FlowStateRow {
    FlowStateRow {
        state_hash: TokenHash::from_hex(state_hash),
        browser_hash: TokenHash::from_hex(browser_hash),
        session_token_hash: TokenHash::from_hex("session-hash"),
        integration: "github".to_owned(),
        end_user_id: "user-1".to_owned(),
        pkce_verifier: Sealed::from_bytes(vec![0, 1, 2, 255, 254]),
        redirect_uri: "https://tether.example.com/oauth/callback".to_owned(),
        return_url: None,
        display: "popup".to_owned(),
        expires_at,
        created_at: NOW - 5,
    }
}

fn connection(id: &str, integration: &str, end_user_id: &str) -> ConnectionRow {
    ConnectionRow {
        id: id.to_owned(),
        integration: integration.to_owned(),
        end_user_id: end_user_id.to_owned(),
        end_user_email: Some(format!("{end_user_id}@example.com")),
        end_user_display_name: Some("Ada".to_owned()),
        status: ConnectionStatus::Active,
        credentials: sealed_bytes(format!("sealed:{id}").as_bytes()),
        credentials_version: 1,
        access_expires_at: Some(NOW + 3600),
        metadata: r#"{"scopes":["repo"]}"#.to_owned(),
        last_error: None,
        refresh_failures: 0,
        next_refresh_at: None,
        created_at: NOW,
        updated_at: NOW,
        provider_account: None,
    }
}

fn update(id: &str, expected_version: i64) -> CredentialsUpdate {
    CredentialsUpdate {
        id: id.to_owned(),
        expected_version,
        credentials: sealed_bytes(b"sealed:new"),
        access_expires_at: Some(NOW + 7200),
        metadata: r#"{"scopes":["repo","user"]}"#.to_owned(),
        status: ConnectionStatus::Active,
        end_user_email: Some("new@example.com".to_owned()),
        end_user_display_name: None,
        now: NOW + 100,
    }
}

/// A token hash from its text: the suite's hashes are short readable stand-ins for hex.
fn th(hash: &str) -> TokenHash {
    TokenHash::from_hex(hash)
}

/// Sealed bytes from a literal.
fn sealed_bytes(bytes: &[u8]) -> Sealed {
    Sealed::from_bytes(bytes.to_vec())
}

fn ids(rows: &[ConnectionRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

async fn get<S: Store>(store: &S, id: &str) -> ConnectionRow {
    store
        .get_connection(id)
        .await
        .unwrap()
        .expect("connection exists")
}

// ----- fixtures: webhook events and history (the outbox, history and console use them) ---

fn event(id: &str, connection_id: &str, at: i64) -> NewWebhookEvent {
    NewWebhookEvent {
        id: id.to_owned(),
        event_type: "connection.refreshed".to_owned(),
        connection_id: connection_id.to_owned(),
        payload: format!(r#"{{"id":"{id}"}}"#),
        created_at: at,
        deliver: true,
        history: HistoryEntry {
            kind: history_kind::REFRESHED.to_owned(),
            integration: "github".to_owned(),
            detail: None,
            reference: None,
        },
    }
}

/// An event recorded in the history only (no webhook URL configured).
fn history_only(id: &str, connection_id: &str, kind: &str, at: i64) -> NewWebhookEvent {
    let mut e = event(id, connection_id, at);
    e.deliver = false;
    e.history.kind = kind.to_owned();
    e
}

async fn history<S: Store>(store: &S, connection_id: &str) -> Vec<ConnectionEventRow> {
    store
        .list_connection_events(connection_id, None, 500)
        .await
        .unwrap()
}

fn kinds(rows: &[ConnectionEventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.kind.as_str()).collect()
}

fn attempt(id: &str, owner: &str, at: i64, outcome: AttemptOutcome) -> WebhookAttempt {
    WebhookAttempt {
        id: id.to_owned(),
        owner: owner.to_owned(),
        at,
        status_code: Some(500),
        error: Some("http_500".to_owned()),
        outcome,
    }
}

/// Every event, oldest first.
async fn all_events<S: Store>(store: &S) -> Vec<WebhookEventRow> {
    let mut rows = store
        .list_webhook_events(&WebhookEventFilter::default())
        .await
        .unwrap();
    rows.reverse();
    rows
}

fn event_ids(rows: &[WebhookEventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

// ----- instantiation per backend ---------------------------------------------------------

/// Instantiates every suite case for one backend. `$open` is an async fn returning the store
/// and a guard that keeps its database alive for the test's duration. Cases are listed by
/// subject module; the test is `backend::case`.
macro_rules! conformance_suite {
    ($backend:ident, $open:ident) => {
        conformance_suite!(@tests $backend, $open;
            connections::{
                ping,
                connection_insert_get_find,
                connection_duplicate_conflicts,
                insert_connections_all_or_none,
                list_connections_filters,
                list_connections_limits,
                replace_credentials_cas,
                replace_credentials_concurrent,
                set_connection_status,
                delete_connection,
                api_managed_integrations,
            },
            sessions::{
                connect_sessions,
                connect_session_binds_to_first_browser,
                connect_session_binding_race,
                connect_session_completes_once,
                connect_session_attempt_window,
                flow_states_capped_per_session,
                flow_state_single_use,
                flow_state_expired_is_still_consumed,
                flow_state_wrong_browser_leaves_it,
                flow_state_concurrent_consume,
                purge_expired,
            },
            refresh::{
                refresh_leases,
                refresh_lease_concurrent,
                connections_due_for_refresh,
                record_refresh_failure,
                refresh_claims,
                refresh_claims_concurrent,
                finish_refresh,
                finish_refreshes_batch,
            },
            sealing::{
                flow_cursor_and_reseal,
                integration_reseal,
                sealing_key_announcements,
                sealed_values_counted_per_key,
                cursor_and_reseal,
            },
            api_keys::{
                api_key_hashes,
            },
            agent_tokens::{
                agent_token_insert_find_get,
                agent_token_expiry,
                agent_token_revocation,
                agent_token_grant_family,
                agent_tokens_listed_per_end_user,
                agent_tokens_purged,
                agent_tokens_purged_at_the_retention_cut,
            },
            webhooks::{
                webhook_events_commit_with_their_change,
                webhook_claims_in_order_per_connection,
                webhook_claims_return_to_their_owner,
                webhook_give_up_redeliver_and_log,
                webhook_redelivery_keeps_a_claim,
                webhook_claim_concurrent,
            },
            history::{
                history_commits_with_its_change,
                history_records_webhook_outcomes,
                history_without_a_change,
            },
            console::{
                console_pages_counts_and_buckets,
            },
            mcp_oauth::{
                mcp_clients_and_requests,
                mcp_request_taken_once_under_race,
                mcp_code_single_use_and_reuse_revokes,
                mcp_refresh_rotation_and_reuse,
                mcp_refresh_rotates_once_under_race,
                mcp_revocation_per_client_and_listing,
                mcp_purge_and_signing_key,
                mcp_unused_clients_purged,
                mcp_clients_kept_while_a_grant_lives,
                mcp_signing_key_resealed_by_rotation,
            },
        );
    };
    (@tests $backend:ident, $open:ident; $($subject:ident :: { $($test:ident),* $(,)? }),* $(,)?) => {
        mod $backend {
            $($(
                // Several worker threads, so the concurrency tests really race.
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (store, _guard) = super::$open().await;
                    super::$subject::$test(store).await;
                }
            )*)*
        }
    };
}

conformance_suite!(sqlite_file, open_sqlite_file);
conformance_suite!(sqlite_memory, open_sqlite_memory);
conformance_suite!(postgres, open_postgres);

// ----- backends ----------------------------------------------------------------------------

/// A fresh SQLite database in a temporary directory, removed when the guard drops.
async fn open_sqlite_file() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&sqlite_url(&dir)).await.unwrap();
    (store, dir)
}

/// A fresh in-memory SQLite database; it lives as long as the store.
async fn open_sqlite_memory() -> (SqliteStore, ()) {
    (SqliteStore::connect("sqlite::memory:").await.unwrap(), ())
}

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("tether.db").display())
}
