//! A connection's health check: the catalog's `[check]` call made with its credentials
//! (refreshed first when due), and what the answer does to the connection. Shared by
//! `POST /v1/connections/{id}/verify` and the background checker.
//!
//! Only a definite answer counts: the provider refused the credentials (a 4xx, or a failure
//! in a 2xx body). A 401 is first answered with a refresh and one more try, since an access
//! token may simply have been revoked before its time; a refused refresh marks the connection
//! `needs_reauth` on the refresh's own path (reason `refresh_refused`). A check refused
//! `check_failures_before_reauth` times in a row marks it `needs_reauth` (reason
//! `check_failed`) with `connection.needs_reauth`. Timeouts, 5xx, HTML pages and 429s say
//! nothing about the connection: recorded, retried after `check_retry`, never counted.
//!
//! One check per connection at a time, across instances: the check holds the connection's
//! refresh lease while it calls the provider (the refresh it may need takes the same lease
//! first, and gives it back before the check takes it). The check takes the lease under an
//! owner token of its own, not the instance's id that the refresher and reads use: a lease
//! is "already ours" to whoever holds its owner, so with the instance's id the check would
//! take over, and then release, a lease this instance's refresher had claimed in the middle
//! of its token call (and the refresher would release the check's). A check releases only
//! the lease it took.

use serde_json::{Map, Value};
use tether_core::account_check::{self, Account, CheckOutcome};
use tether_core::credentials::Credentials;
use tether_store::{
    CheckRecord, CheckResult, ConnectionStatus, ProviderAccount, StatusChange, Store, StoredAccount,
};

use super::error::ConnectionError;
use super::expiry;
use super::refresh::{self, Freshness};
use crate::state::AppState;
use crate::webhooks::{self, EventType};

/// What a check found, and where it left the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub connection_id: String,
    /// `ok`, `refused` or `unavailable`.
    pub outcome: &'static str,
    /// The provider's reason for a refusal, or why it could not answer.
    pub reason: Option<String>,
    /// The connection's status after the check.
    pub status: ConnectionStatus,
    /// Whose credentials these are, when the check says.
    pub account: Option<Account>,
    /// Definite failures in a row (0 after a passing check).
    pub consecutive_failures: i64,
    pub checked_at: i64,
}

/// Who asks: the API waits for the lease; the background checker moves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Verify,
    Background,
}

/// Checks one connection now. `Ok(None)` only for the background checker, when another
/// holder has the lease (it is refreshing or checking this connection already).
pub async fn check<S: Store>(
    state: &AppState<S>,
    id: &str,
    caller: Caller,
) -> Result<Option<CheckReport>, ConnectionError> {
    let row = state
        .store
        .get_connection(id)
        .await?
        .ok_or(ConnectionError::NotFound)?;
    let integration = state
        .integration(&row.integration)
        .ok_or_else(|| ConnectionError::IntegrationGone(row.integration.clone()))?;
    let Some(check_def) = integration.check.clone() else {
        return Err(ConnectionError::NoCheck(row.integration.clone()));
    };
    if row.status != ConnectionStatus::Active {
        return Err(ConnectionError::NeedsReauth);
    }
    // Refreshed first when due (its own lease, released before ours is taken).
    let mut live = match refresh::live(state, id, Freshness::Normal).await {
        Ok(live) => live,
        Err(ConnectionError::ProviderUnavailable { reason }) => {
            let report = record(state, id, &row.integration, unavailable(reason), None).await?;
            return Ok(Some(report));
        }
        Err(err) => return Err(err),
    };
    let owner = lease_owner(&state.instance_id);
    if !acquire(state, id, &owner).await? {
        return busy(caller);
    }
    let result = async {
        let mut outcome = call(state, &live, &check_def).await?;
        // A revoked access token is not yet a revoked grant: refresh and ask once more.
        let refreshable = matches!(live.credentials.as_ref(), Credentials::Oauth2(t) if t.refresh_token.is_some());
        if matches!(outcome, CheckOutcome::Refused { status: 401, .. }) && refreshable {
            release(state, id, &owner).await;
            let version = live.row.credentials_version;
            live = refresh::live(state, id, Freshness::Rejected { version }).await?;
            // Someone else took the lease between the refresh and now: theirs to finish.
            if !acquire(state, id, &owner).await? {
                return Ok(None);
            }
            outcome = call(state, &live, &check_def).await?;
        }
        Ok::<_, ConnectionError>(Some(outcome))
    }
    .await;
    release(state, id, &owner).await;
    let outcome = match result {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return busy(caller),
        Err(ConnectionError::ProviderUnavailable { reason }) => unavailable(reason),
        Err(err) => return Err(err),
    };
    let version = live.row.credentials_version;
    let report = record(state, id, &row.integration, outcome, Some(version)).await?;
    Ok(Some(report))
}

/// What a check that finds the lease held answers: the background checker moves on, the
/// API says the connection is busy.
fn busy(caller: Caller) -> Result<Option<CheckReport>, ConnectionError> {
    match caller {
        Caller::Background => Ok(None),
        Caller::Verify => Err(ConnectionError::LeaseBusy),
    }
}

/// A lease owner for one check: the instance's id (so an operator reading the row sees who
/// holds it) and a random part of its own.
fn lease_owner(instance_id: &str) -> String {
    [
        instance_id,
        "/check/",
        &hex::encode(rand::random::<[u8; 8]>()),
    ]
    .concat()
}

/// Takes the connection's lease for `owner`: free, expired, or `owner`'s own already.
async fn acquire<S: Store>(
    state: &AppState<S>,
    id: &str,
    owner: &str,
) -> Result<bool, ConnectionError> {
    let now = state.clock.now();
    let until = expiry::lease_until(now, state.config.refresh_lease);
    Ok(state
        .store
        .try_acquire_refresh_lease(id, owner, until, now)
        .await?)
}

fn unavailable(reason: String) -> CheckOutcome {
    CheckOutcome::Unavailable { reason }
}

async fn call<S: Store>(
    state: &AppState<S>,
    live: &refresh::Live,
    check_def: &tether_core::catalog::CheckDef,
) -> Result<CheckOutcome, ConnectionError> {
    let metadata = super::provider_auth::metadata_of(&live.row);
    account_check::run(
        &state.outbound,
        &live.integration,
        check_def,
        &metadata,
        &live.credentials,
    )
    .await
    .map_err(|err| ConnectionError::Internal(anyhow::anyhow!("check call: {err}")))
}

/// Gives back the lease `owner` took; a lease someone else holds by now is left alone.
async fn release<S: Store>(state: &AppState<S>, id: &str, owner: &str) {
    if let Err(err) = state.store.release_refresh_lease(id, owner).await {
        tracing::warn!(connection_id = %id, error = ?err, "could not release the lease after a check");
    }
}

/// Records the outcome, schedules the next check, and marks the connection `needs_reauth`
/// once the refusals reach the configured count. `version`: the credentials checked.
async fn record<S: Store>(
    state: &AppState<S>,
    id: &str,
    integration: &str,
    outcome: CheckOutcome,
    version: Option<i64>,
) -> Result<CheckReport, ConnectionError> {
    let now = state.clock.now();
    let config = &state.config.lifecycle;
    let interval = config.interval_for(integration);
    let (result, name, reason, account) = match &outcome {
        CheckOutcome::Ok(account) => (CheckResult::Passed, "ok", None, account.clone()),
        CheckOutcome::Refused { reason, .. } => {
            (CheckResult::Refused, "refused", Some(reason.clone()), None)
        }
        CheckOutcome::Unavailable { reason } => (
            CheckResult::Unavailable,
            "unavailable",
            Some(reason.clone()),
            None,
        ),
    };
    let wait = match result {
        // Retried sooner, but never sooner than the operator allows for this integration.
        CheckResult::Unavailable => config.check_retry.min(config.check_interval).max(
            config
                .check_min_interval
                .get(integration)
                .copied()
                .unwrap_or_default(),
        ),
        _ => jittered(interval, config.check_jitter_percent),
    };
    let summary = match &reason {
        Some(reason) => [name, ": ", reason].concat(),
        None => name.to_owned(),
    };
    let stored_account = account.as_ref().map(|a| StoredAccount {
        user_id: a.user_id.clone(),
        organization_id: a.organization_id.clone(),
        label: a.label.clone(),
    });
    // The check may be what first names the account (kept when one is stored already).
    let learned = stored_account
        .as_ref()
        .and_then(|a| ProviderAccount::of(a.organization_id.clone(), a.user_id.clone()));
    let failures = state
        .store
        .record_check(&CheckRecord {
            id: id.to_owned(),
            result,
            summary: summary.chars().take(300).collect(),
            account: stored_account,
            next_check_at: expiry::after(now, wait),
            now,
        })
        .await?
        .ok_or(ConnectionError::NotFound)?;
    if learned.is_some() {
        forget_without_account(state, id);
    }
    tracing::info!(connection_id = %id, integration, outcome = name, failures, "connection checked");
    let mut status = ConnectionStatus::Active;
    if result == CheckResult::Refused {
        let threshold =
            i64::try_from(config.check_failures_before_reauth.max(1)).unwrap_or(i64::MAX);
        let row = state
            .store
            .get_connection(id)
            .await?
            .ok_or(ConnectionError::NotFound)?;
        status = row.status;
        if failures >= threshold {
            let detail = format!(
                "the check failed {failures} times in a row: {}",
                reason.clone().unwrap_or_default()
            );
            if mark_needs_reauth(state, &row, "check_failed", &detail, version).await? {
                status = ConnectionStatus::NeedsReauth;
            }
        } else {
            history(state, &row, reason.clone().unwrap_or_default()).await;
        }
    }
    Ok(CheckReport {
        connection_id: id.to_owned(),
        outcome: name,
        reason,
        status,
        account,
        consecutive_failures: failures,
        checked_at: now,
    })
}

/// One refusal below the threshold: in the history only (the app hears of a status change,
/// not of every check).
async fn history<S: Store>(state: &AppState<S>, row: &tether_store::ConnectionRow, reason: String) {
    let mut extra = Map::new();
    extra.insert("reason".into(), Value::from(reason));
    let Some(mut event) = webhooks::event(
        &state.config,
        state.clock.now(),
        EventType::NeedsReauth,
        row,
        extra,
    ) else {
        return;
    };
    event.deliver = false;
    event.history.kind = tether_store::history_kind::CHECK_FAILED.to_owned();
    if let Err(err) = state.store.append_event(&event).await {
        tracing::warn!(connection_id = %row.id, error = ?err, "could not record a check failure");
    }
}

/// Marks the connection `needs_reauth` with `reason`, and `connection.needs_reauth`, only
/// when that is a change (and, with `version`, only for those credentials).
pub(crate) async fn mark_needs_reauth<S: Store>(
    state: &AppState<S>,
    row: &tether_store::ConnectionRow,
    reason: &str,
    detail: &str,
    version: Option<i64>,
) -> Result<bool, ConnectionError> {
    let mut extra = Map::new();
    extra.insert(
        "status".into(),
        Value::from(ConnectionStatus::NeedsReauth.as_str()),
    );
    extra.insert("reason".into(), Value::from(reason));
    extra.insert("detail".into(), Value::from(detail));
    let known = state
        .store
        .connection_lifecycles(std::slice::from_ref(&row.id))
        .await?
        .into_iter()
        .next()
        .and_then(|l| l.account);
    if let Some(a) = known {
        extra.insert(
            "account".into(),
            super::persist::account_json(&Account {
                user_id: a.user_id,
                organization_id: a.organization_id,
                label: a.label,
            }),
        );
    }
    let events: Vec<_> = webhooks::event(
        &state.config,
        state.clock.now(),
        EventType::NeedsReauth,
        row,
        extra,
    )
    .into_iter()
    .collect();
    let change = StatusChange {
        id: row.id.clone(),
        status: ConnectionStatus::NeedsReauth,
        last_error: Some([reason, ": ", detail].concat()),
        expected_version: version,
        now: state.clock.now(),
    };
    let changed = state
        .store
        .change_status_with_events(&change, &events)
        .await?;
    state.cache.invalidate(&row.id);
    if changed {
        tracing::warn!(connection_id = %row.id, reason, "connection needs reauthorization");
        webhooks::wake(&state.webhook_wake, events.first());
    }
    Ok(changed)
}

/// `interval` moved by up to `percent` of it, either way, at random.
fn jittered(interval: std::time::Duration, percent: usize) -> std::time::Duration {
    let spread = interval.as_millis() as u64 * percent.min(50) as u64 / 100;
    if spread == 0 {
        return interval;
    }
    let offset = rand::random_range(0..=2 * spread);
    (interval + std::time::Duration::from_millis(offset))
        .saturating_sub(std::time::Duration::from_millis(spread))
}

/// Drops `id`'s cached row when it has no account yet, so the next read carries the one a
/// check just stored (the proxy keys per-account provider limits by it). A row with an
/// account keeps it: a check never replaces a stored account.
fn forget_without_account<S: Store>(state: &AppState<S>, id: &str) {
    if state
        .cache
        .get(id)
        .is_some_and(|cached| cached.row.provider_account.is_none())
    {
        state.cache.invalidate(id);
    }
}
