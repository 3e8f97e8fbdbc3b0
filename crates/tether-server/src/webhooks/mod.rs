//! Webhooks: the events Tether tells the app about, how they are signed, and the worker that
//! delivers them from the outbox.
//!
//! An event is built here and handed to the store together with the change it reports, which
//! writes both in one transaction: there is never an event for a change that did not commit,
//! nor a committed change without its event. Payloads carry ids and facts, never a credential.

mod signature;
mod worker;

pub use signature::{SIGNATURE_HEADER, sign, verify};
pub(crate) use worker::run as run_worker;

use serde_json::{Map, Value, json};
use tether_core::unix_time;
use tether_store::{ConnectionRow, HistoryEntry, NewWebhookEvent, history_kind};

use crate::config::GatewayConfig;

/// The kinds of event, as the webhook payloads name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Refreshed,
    RefreshFailed,
    Deleted,
    /// The connection became `needs_reauth` (with `reason`).
    NeedsReauth,
    /// Back to `active` after `needs_reauth`.
    Recovered,
    /// The grant's fixed lifetime ends soon (`grant_expires_at`).
    Expiring,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "connection.created",
            EventType::Refreshed => "connection.refreshed",
            EventType::RefreshFailed => "connection.refresh_failed",
            EventType::Deleted => "connection.deleted",
            EventType::NeedsReauth => "connection.needs_reauth",
            EventType::Recovered => "connection.recovered",
            EventType::Expiring => "connection.expiring",
        }
    }
}

/// The event for `row`: recorded in the connection's history always, and put in the outbox
/// for delivery only when a webhook URL is configured (an outbox nobody drains would only
/// grow). `extra` fields are added to the body; `reason` and `reference` among them also go
/// into the history entry. `now` is the state's clock. Always `Some`; an `Option` because
/// the store takes one.
pub(crate) fn event(
    config: &GatewayConfig,
    now: i64,
    kind: EventType,
    row: &ConnectionRow,
    extra: Map<String, Value>,
) -> Option<NewWebhookEvent> {
    let id = tether_core::random::prefixed_token("evt_");
    let text = |key: &str| extra.get(key).and_then(Value::as_str).map(str::to_owned);
    let history = HistoryEntry {
        kind: match kind {
            EventType::Created if extra.get("reconnected") == Some(&Value::Bool(true)) => {
                history_kind::RECONNECTED
            }
            EventType::Created => history_kind::CREATED,
            EventType::Refreshed => history_kind::REFRESHED,
            EventType::RefreshFailed => history_kind::NEEDS_REAUTH,
            EventType::Deleted => history_kind::DELETED,
            EventType::NeedsReauth => history_kind::NEEDS_REAUTH,
            EventType::Recovered => history_kind::RECOVERED,
            EventType::Expiring => history_kind::EXPIRING,
        }
        .to_owned(),
        integration: row.integration.clone(),
        detail: text("reason"),
        reference: text("reference"),
    };
    let mut body = json!({
        "id": id,
        "type": kind.as_str(),
        "connection_id": row.id,
        "integration": row.integration,
        "end_user_id": row.end_user_id,
        "occurred_at": unix_time::rfc3339(now),
    });
    if let Value::Object(fields) = &mut body {
        for (key, value) in extra {
            fields.entry(key).or_insert(value);
        }
    }
    Some(NewWebhookEvent {
        id,
        event_type: kind.as_str().to_owned(),
        connection_id: row.id.clone(),
        payload: body.to_string(),
        created_at: now,
        deliver: config.webhooks.is_some(),
        history,
    })
}

/// A history entry with no webhook: a transient refresh failure, which the refresher retries
/// on its own and the app need not hear about.
pub(crate) fn history_only(
    config: &GatewayConfig,
    now: i64,
    row: &ConnectionRow,
    reason: String,
    reference: &str,
) -> Option<NewWebhookEvent> {
    let mut extra = Map::new();
    extra.insert("reason".into(), Value::from(reason));
    extra.insert("reference".into(), Value::from(reference));
    let mut event = event(config, now, EventType::RefreshFailed, row, extra)?;
    event.deliver = false;
    event.history.kind = history_kind::REFRESH_FAILED.to_owned();
    Some(event)
}

/// Wakes the delivery worker after an event was committed, so it goes out now rather than at
/// the next poll. Harmless when no worker runs.
pub(crate) fn wake(bell: &tokio::sync::Notify, event: Option<&NewWebhookEvent>) {
    if event.is_some_and(|e| e.deliver) {
        bell.notify_one();
    }
}
