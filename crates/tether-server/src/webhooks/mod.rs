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
use tether_store::{ConnectionRow, NewWebhookEvent, Store};

use crate::state::AppState;

/// The kinds of event, as the webhook payloads name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Refreshed,
    RefreshFailed,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "connection.created",
            EventType::Refreshed => "connection.refreshed",
            EventType::RefreshFailed => "connection.refresh_failed",
            EventType::Deleted => "connection.deleted",
        }
    }
}

/// The event for `row`, or `None` when no webhook URL is configured (then nothing is written:
/// an outbox nobody drains would only grow). `extra` fields are added to the body.
pub(crate) fn event<S: Store>(
    state: &AppState<S>,
    kind: EventType,
    row: &ConnectionRow,
    extra: Map<String, Value>,
) -> Option<NewWebhookEvent> {
    state.config.webhooks.as_ref()?;
    let now = unix_time::now();
    let id = tether_core::random::prefixed_token("evt_");
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
    })
}

/// Wakes the delivery worker after an event was committed, so it goes out now rather than at
/// the next poll. Harmless when no worker runs.
pub(crate) fn wake<S: Store>(state: &AppState<S>, event: Option<&NewWebhookEvent>) {
    if event.is_some() {
        state.webhook_wake.notify_one();
    }
}
