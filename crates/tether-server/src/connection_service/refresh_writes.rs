//! Group commit for refreshed token sets: every refresh hands its write (the credentials'
//! compare-and-swap, its history entry, the keep-alive deadline, the lease's release) to one
//! writer task, which writes whatever is waiting in one transaction
//! ([`Store::finish_refreshes`]) and answers each refresh with its own row.
//!
//! One refresh alone is written at once, as before; a storm of them (the background
//! refresher's batches, many reads finding their tokens due together) shares one commit per
//! batch instead of paying one each: on PostgreSQL a commit waits for the disk, on SQLite
//! every statement is a hand-off to the connection's thread, and there is one writer.
//!
//! The write runs in the writer task, not in the refresh's future: a caller that goes away
//! (an app that hung up, the refresher's round dropped at shutdown) after the token call no
//! longer takes the new tokens with it, which with a provider that rotates refresh tokens
//! would have lost the connection. A batch that fails is written again one refresh at a
//! time, so that each refresh gets its own outcome and one bad entry fails only its own.

use std::sync::OnceLock;

use tether_store::{
    ConnectionRow, NewWebhookEvent, RefreshFinish, RefreshedCredentials, Store, StoreError,
    StoreResult,
};
use tokio::sync::{mpsc, oneshot};

/// The most refreshes one transaction writes.
const MAX_BATCH: usize = 64;

/// One refresh waiting to be written, and where its outcome goes.
struct Job {
    refreshed: RefreshedCredentials,
    event: Option<NewWebhookEvent>,
    reply: oneshot::Sender<StoreResult<Option<ConnectionRow>>>,
}

/// The queue in front of the writer task, which starts with the first write (inside the
/// runtime that makes it) and ends when the state, and so this queue, is dropped.
pub struct RefreshWrites<S: Store> {
    store: S,
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl<S: Store> RefreshWrites<S> {
    pub fn new(store: S) -> Self {
        RefreshWrites {
            store,
            queue: OnceLock::new(),
        }
    }

    /// Writes `refreshed` (and `event`, when its swap wins) as [`Store::finish_refresh`]
    /// does, in a transaction shared with the refreshes waiting at the same time.
    pub(super) async fn finish(
        &self,
        refreshed: RefreshedCredentials,
        event: Option<NewWebhookEvent>,
    ) -> StoreResult<Option<ConnectionRow>> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(self.store.clone(), receiver));
            sender
        });
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            refreshed,
            event,
            reply,
        };
        match queue.send(job) {
            Ok(()) => {}
            // The writer is gone (its runtime shut down): write it here.
            Err(mpsc::error::SendError(job)) => {
                return self
                    .store
                    .finish_refresh(&job.refreshed, job.event.as_ref())
                    .await;
            }
        }
        // No answer: the writer was dropped with this job, its runtime shutting down.
        outcome.await.unwrap_or_else(|_| Err(StoreError::closed()))
    }
}

/// The writer task: takes what is waiting (at least one job, at most [`MAX_BATCH`]), writes
/// it in one transaction, answers each job, and waits for more; ends when every sender is gone.
async fn write_batches<S: Store>(store: S, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&store, std::mem::take(&mut batch)).await;
    }
}

async fn write<S: Store>(store: &S, jobs: Vec<Job>) {
    let finishes: Vec<RefreshFinish<'_>> = jobs
        .iter()
        .map(|job| RefreshFinish {
            refreshed: &job.refreshed,
            event: job.event.as_ref(),
        })
        .collect();
    let outcome = store.finish_refreshes(&finishes).await;
    drop(finishes);
    match outcome {
        Ok(written) => {
            for (job, row) in jobs.into_iter().zip(written) {
                // A caller that went away no longer needs its answer; its write stands.
                let _ = job.reply.send(Ok(row));
            }
        }
        Err(err) if jobs.len() > 1 => {
            tracing::warn!(error = ?err, count = jobs.len(),
                "a batch of refreshed tokens could not be written; writing them one by one");
            for job in jobs {
                let written = store
                    .finish_refresh(&job.refreshed, job.event.as_ref())
                    .await;
                let _ = job.reply.send(written);
            }
        }
        // The one refresh of the batch: its own error.
        Err(err) => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_service::test_rows::{T, active_row};
    use tether_store::{ConnectionStatus, CredentialsUpdate, Sealed, SqliteStore};

    async fn store_with(ids: &[String]) -> SqliteStore {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let rows: Vec<ConnectionRow> = ids.iter().map(|id| active_row(id, Some(T - 1))).collect();
        store.insert_connections(&rows).await.unwrap();
        store
    }

    fn refreshed(id: &str) -> RefreshedCredentials {
        RefreshedCredentials {
            update: CredentialsUpdate {
                id: id.to_owned(),
                expected_version: 1,
                credentials: Sealed::from_bytes(format!("new-{id}").into_bytes()),
                access_expires_at: Some(T + 3_600),
                metadata: "{}".into(),
                status: ConnectionStatus::Active,
                end_user_email: None,
                end_user_display_name: None,
                now: T,
            },
            keepalive_at: None,
            lease_owner: "me".into(),
        }
    }

    /// Refreshes finishing together each get their own row back; a stale one gets `None`.
    #[tokio::test]
    async fn each_refresh_gets_its_own_outcome() {
        let ids: Vec<String> = (0..40).map(|n| format!("conn_{n:02}")).collect();
        let store = store_with(&ids).await;
        let writes = std::sync::Arc::new(RefreshWrites::new(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for (n, id) in ids.iter().enumerate() {
            let writes = writes.clone();
            let mut refreshed = refreshed(id);
            if n % 10 == 3 {
                refreshed.update.expected_version = 5;
            }
            tasks.spawn(async move { (n, writes.finish(refreshed, None).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (n, written) = done.unwrap();
            let written = written.unwrap();
            if n % 10 == 3 {
                assert_eq!(written, None, "{n}: a stale version loses");
            } else {
                let row = written.expect("the swap wins");
                assert_eq!(row.id, ids[n]);
                assert_eq!(
                    row.credentials.as_bytes(),
                    format!("new-{}", ids[n]).as_bytes()
                );
                assert_eq!(row.credentials_version, 2);
            }
        }
    }

    /// A caller that goes away once its write is handed over does not take the write with it.
    #[tokio::test]
    async fn a_write_outlives_its_caller() {
        let ids = vec!["conn_a".to_owned()];
        let store = store_with(&ids).await;
        let writes = RefreshWrites::new(store.clone());
        tokio::select! {
            biased;
            _ = writes.finish(refreshed("conn_a"), None) => panic!("not written at first poll"),
            () = std::future::ready(()) => {}
        }
        for _ in 0..500 {
            let row = store.get_connection("conn_a").await.unwrap().unwrap();
            if row.credentials_version == 2 {
                assert_eq!(row.credentials.as_bytes(), b"new-conn_a");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the write of a caller that went away never landed");
    }
}
