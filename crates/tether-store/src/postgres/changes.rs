//! Hearing what other instances changed: `LISTEN` on the schema's channel, fed by the triggers
//! of `migrations/postgres/*_change_notifications.sql`.
//!
//! The listener holds its own connection (from a small pool of its own, so it never takes a
//! slot a request needs), and proves it alive with a heartbeat NOTIFY every few seconds. NOTIFY is fire-and-forget: a notification sent while that
//! connection is down is gone. So the feed says [`Change::Lost`] as soon as the connection
//! drops (the server stops trusting its caches), reconnects with back-off, and says
//! [`Change::Resync`] only once `LISTEN` is in place again (the server drops what it cached
//! and reloads), so that nothing committed after the resync can be missed.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use tokio::sync::mpsc;

use crate::{Change, ChangeFeed};

/// The channel of the tables in `schema`: one per schema, so that Tether databases sharing a
/// server in separate schemas (the test suites do) never hear each other.
pub(super) fn channel_for(schema: &str) -> String {
    let mut channel = String::from("tether:");
    channel.push_str(schema);
    channel
}

/// Starts the listener task; it stops when the feed is dropped.
pub(super) fn subscribe(options: PgConnectOptions, channel: String) -> ChangeFeed {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(listen(options, channel, tx));
    ChangeFeed::new(rx, task)
}

/// How often the listener proves its connection alive: it NOTIFYs its own channel and must
/// hear something (its own heartbeat, if nothing else) within [`SILENCE_LIMIT`].
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Silence after which the listening connection is taken for dead, even without an error: a
/// connection cut without a reset (a vanished peer, a stateful firewall) never reports one.
const SILENCE_LIMIT: Duration = Duration::from_secs(15);

async fn listen(options: PgConnectOptions, channel: String, tx: mpsc::UnboundedSender<Change>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Two connections: the listening one, and one for heartbeats. Lazy: a database that is
        // down at this moment is retried below, not an error. A new pool per subscription: a
        // dropped listener hands its connection back through `UNLISTEN`, which can hang on a
        // dead connection, and must not keep a slot the next subscription needs.
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.clone());
        match subscribed(&pool, &channel).await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                tracing::debug!(%channel, "listening for changes of other instances");
                if tx.send(Change::Resync).is_err() {
                    return;
                }
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                let mut heard = tokio::time::Instant::now();
                // Until the connection drops (`None`), fails in another way (a terminated
                // backend reports an error first), or falls silent: from then on,
                // notifications may be lost. A wait cut short here drops the listener with
                // it, so a half-read connection is never used again.
                loop {
                    tokio::select! {
                        received = listener.try_recv() => match received {
                            Ok(Some(notification)) => {
                                heard = tokio::time::Instant::now();
                                if let Some(change) = parse(&notification)
                                    && tx.send(change).is_err()
                                {
                                    return;
                                }
                            }
                            Ok(None) | Err(_) => break,
                        },
                        _ = heartbeat.tick() => {
                            if heard.elapsed() > SILENCE_LIMIT {
                                break;
                            }
                            let sent = tokio::time::timeout(
                                HEARTBEAT,
                                sqlx::query("SELECT pg_notify($1, 'h:')")
                                    .bind(&channel)
                                    .execute(&pool),
                            )
                            .await;
                            if !matches!(sent, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                drop(listener);
                tracing::warn!(
                    "lost the database connection that hears other instances' changes; \
                     caches are bypassed until it is back"
                );
                if tx.send(Change::Lost).is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot listen for changes yet; retrying");
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A fresh listener with `LISTEN` in place. A new one each time: after an error, sqlx's own
/// reconnect is not to be relied on.
async fn subscribed(pool: &sqlx::PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Report a dropped connection at once (`None`), before reconnecting: the caller must say
    // `Lost` first and `Resync` only after `LISTEN` is back.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// `c:<connection id>`, `i:<integration key>` or `k:<sealing key id>`; anything else (`h:`, a heartbeat) is
/// ignored.
fn parse(notification: &PgNotification) -> Option<Change> {
    let payload = notification.payload();
    if let Some(id) = payload.strip_prefix("c:") {
        return Some(Change::Connection(id.to_owned()));
    }
    if let Some(key) = payload.strip_prefix("i:") {
        return Some(Change::Integration(key.to_owned()));
    }
    if let Some(key_id) = payload.strip_prefix("k:") {
        return Some(Change::SealingKey(key_id.to_owned()));
    }
    None
}
