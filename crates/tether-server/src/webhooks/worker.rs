//! The delivery worker: claims due events from the outbox, POSTs each signed to the app, and
//! records the outcome; failures back off exponentially (capped) until `max_attempts`.
//!
//! At least once: an event is marked delivered only after a 2xx, and a crashed worker's
//! claims expire so another worker sends them again. In order per connection: the store hands
//! out only the oldest pending event of each connection. The worker never busy-loops: when
//! there is nothing due it waits for a wake-up (a new event), the poll interval, or shutdown.
//! It never follows a redirect and never logs the secret or a payload.

use std::time::Instant;

use futures_util::future::join_all;
use tether_store::{AttemptOutcome, Store, WebhookAttempt, WebhookEventRow};
use tokio::sync::watch;

use super::signature::{SIGNATURE_HEADER, sign};
use crate::config::WebhookConfig;
use crate::state::AppState;

/// Events claimed per round; at most one per connection, all sent concurrently.
const BATCH: u32 = 32;

/// Delivers webhooks until `shutdown` turns true (or its sender is dropped). Returns at once
/// when no webhook URL is configured.
pub(crate) async fn run<S: Store>(state: AppState<S>, mut shutdown: watch::Receiver<bool>) {
    let _running = crate::state::Running::mark(&state.workers.webhooks);
    let Some(config) = state.config.webhooks.clone() else {
        return;
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.request_timeout)
        .timeout(config.request_timeout)
        .user_agent(concat!("tether-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "webhook client could not be built; no webhooks sent");
            return;
        }
    };
    let owner = format!("{}/webhooks", state.instance_id);
    // The host only: a URL may carry credentials in its userinfo or query.
    tracing::info!(
        host = config.url.host_str().unwrap_or(""),
        "webhook worker started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        let round = tokio::select! {
            round = deliver_round(&state, &config, &client, &owner) => round,
            _ = shutdown.changed() => break,
        };
        let full = match round {
            Ok(claimed) => claimed == BATCH as usize,
            Err(err) => {
                tracing::warn!(error = ?err, "webhook round failed; will retry");
                false
            }
        };
        if full {
            // More may be due right now; yield and go again.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = state.webhook_wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("webhook worker stopped");
}

/// Claims one batch and delivers it; returns how many events were claimed.
async fn deliver_round<S: Store>(
    state: &AppState<S>,
    config: &WebhookConfig,
    client: &reqwest::Client,
    owner: &str,
) -> Result<usize, tether_store::StoreError> {
    let now = state.clock.now();
    // The claim outlives the slowest attempt with room to spare, so it does not expire while
    // its delivery is still in flight.
    let lease = config
        .request_timeout
        .saturating_mul(2)
        .saturating_add(std::time::Duration::from_secs(30));
    let events = state
        .store
        .claim_webhook_events(
            owner,
            crate::connection_service::expiry::after(now, lease),
            now,
            BATCH,
        )
        .await?;
    let claimed = events.len();
    join_all(
        events
            .into_iter()
            .map(|event| deliver_one(state, config, client, owner, event)),
    )
    .await;
    Ok(claimed)
}

async fn deliver_one<S: Store>(
    state: &AppState<S>,
    config: &WebhookConfig,
    client: &reqwest::Client,
    owner: &str,
    event: WebhookEventRow,
) {
    let started = Instant::now();
    let sent_at = state.clock.now();
    let signature = sign(
        config.secret.expose().as_bytes(),
        sent_at,
        event.payload.as_bytes(),
    );
    let result = client
        .post(config.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("Tether-Event-Id", &event.id)
        .header("Tether-Event-Type", &event.event_type)
        .body(event.payload.clone())
        .send()
        .await;
    let (status_code, error) = match result {
        Ok(response) if response.status().is_success() => (Some(response.status()), None),
        Ok(response) => (
            Some(response.status()),
            Some(format!("http_{}", response.status().as_u16())),
        ),
        Err(err) if err.is_timeout() => (None, Some("timeout".to_owned())),
        Err(_) => (None, Some("network_error".to_owned())),
    };
    let attempts = event.attempts + 1;
    let at = state.clock.now();
    let outcome = match &error {
        None => AttemptOutcome::Delivered,
        Some(_) if attempts >= i64::from(config.max_attempts.max(1)) => AttemptOutcome::GiveUp,
        Some(_) => AttemptOutcome::Retry {
            next_attempt_at: at + backoff_secs(config, event.attempts),
        },
    };
    let label = match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::Retry { .. } => "retry",
        AttemptOutcome::GiveUp => "gave_up",
    };
    state
        .metrics
        .webhook_attempt(label, started.elapsed().as_secs_f64());
    match &error {
        None => tracing::debug!(event_id = %event.id, "webhook delivered"),
        Some(reason) => tracing::warn!(
            event_id = %event.id,
            connection_id = %event.connection_id,
            attempts,
            reason = %reason,
            outcome = label,
            "webhook delivery failed"
        ),
    }
    let attempt = WebhookAttempt {
        id: event.id.clone(),
        owner: owner.to_owned(),
        at,
        status_code: status_code.map(|s| i64::from(s.as_u16())),
        error,
        outcome,
    };
    match state.store.record_webhook_attempt(&attempt).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(event_id = %event.id, "webhook claim was taken over; result dropped")
        }
        Err(err) => tracing::warn!(event_id = %event.id, error = ?err, "could not record attempt"),
    }
}

/// Seconds to wait after `failed_before + 1` failures: `retry_base * 2^failed_before`, capped
/// at `retry_max`, at least one second (the outbox keeps whole seconds).
fn backoff_secs(config: &WebhookConfig, failed_before: i64) -> i64 {
    let exponent = failed_before.clamp(0, 30) as u32;
    let wait = config
        .retry_base
        .saturating_mul(1u32 << exponent)
        .min(config.retry_max);
    (wait.as_secs_f64().ceil() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tether_core::secret::SecretString;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut config = WebhookConfig::new(
            url::Url::parse("http://127.0.0.1:9/hooks").unwrap(),
            SecretString::new("s"),
        );
        config.retry_base = Duration::from_secs(5);
        config.retry_max = Duration::from_secs(60);
        let waits: Vec<i64> = (0..6).map(|n| backoff_secs(&config, n)).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff_secs(&config, 1_000), 60);
        config.retry_base = Duration::from_millis(10);
        assert_eq!(backoff_secs(&config, 0), 1);
    }
}
