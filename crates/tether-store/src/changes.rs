//! What a server hears about changes other writers committed (see [`crate::Store::changes`]).
//! Plain data and a channel; the backend decides how it learns of them.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One thing a server may hold stale in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This connection's credentials, status or existence changed: drop any cached copy.
    Connection(String),
    /// This API-managed integration was created, replaced or deleted: load it again.
    Integration(String),
    /// A new sealing key was announced (key rotation): seal under this key id from now on.
    SealingKey(String),
    /// Changes may be going unheard (the feed lost its database connection): until the next
    /// [`Change::Resync`], nothing cached can be trusted.
    Lost,
    /// The feed is (again) hearing every change from now on: drop everything cached before,
    /// and reload what is kept in memory. Always the first item of a feed.
    Resync,
}

/// A subscription to [`Change`]s; the backend's listener task stops when this drops.
#[derive(Debug)]
pub struct ChangeFeed {
    rx: mpsc::UnboundedReceiver<Change>,
    task: JoinHandle<()>,
}

impl ChangeFeed {
    /// Wraps a backend's channel and the task that feeds it.
    pub fn new(rx: mpsc::UnboundedReceiver<Change>, task: JoinHandle<()>) -> Self {
        ChangeFeed { rx, task }
    }

    /// The next change; `None` once the backend's listener has stopped for good.
    pub async fn next(&mut self) -> Option<Change> {
        self.rx.recv().await
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}
