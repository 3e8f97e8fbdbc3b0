//! Hearing what other instances changed: `LISTEN` on the schema's channel, fed by the triggers
//! of `migrations/postgres/*_change_notifications.sql`.
//!
//! The listener holds its own connection (from a one-connection pool, so it never takes a
//! slot a request needs). NOTIFY is fire-and-forget: a notification sent while that
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

async fn listen(options: PgConnectOptions, channel: String, tx: mpsc::UnboundedSender<Change>) {
    // Lazy: a database that is down at this moment is retried below, not an error.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribed(&pool, &channel).await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                tracing::debug!(%channel, "listening for changes of other instances");
                if tx.send(Change::Resync).is_err() {
                    return;
                }
                // Until the connection drops (`None`) or fails in another way (a terminated
                // backend reports an error first): either way, notifications may be lost
                // from then on.
                while let Ok(Some(notification)) = listener.try_recv().await {
                    if let Some(change) = parse(&notification)
                        && tx.send(change).is_err()
                    {
                        return;
                    }
                }
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

/// `c:<connection id>` or `i:<integration key>`; anything else is ignored.
fn parse(notification: &PgNotification) -> Option<Change> {
    let payload = notification.payload();
    if let Some(id) = payload.strip_prefix("c:") {
        return Some(Change::Connection(id.to_owned()));
    }
    if let Some(key) = payload.strip_prefix("i:") {
        return Some(Change::Integration(key.to_owned()));
    }
    None
}
