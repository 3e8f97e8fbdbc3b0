//! The hot path's one read, `get_connection` by primary key, batched on a connection of its
//! own per thread.
//!
//! A credential cache miss used to cost four hand-offs between threads for one indexed read:
//! sqlx runs each SQLite connection on a worker thread, so the query went there and back, and
//! returning the connection to the pool pinged it (there and back again). In a profile of an
//! app cycling through a million connections, waking those threads cost more than SQLite's
//! own work. So each thread that reads (with `tether serve`'s runtime per core: each serving
//! thread) gets a reader of its own: a task holding one dedicated connection, outside the
//! pool, that takes every lookup queued since its last query and answers them all with one
//! `SELECT ... WHERE id IN (...)`. Under load many misses share one round trip; alone, a
//! lookup waits for nothing but its own query.
//!
//! Reads on a separate connection see every committed write (each `SELECT` is its own read
//! transaction in WAL mode). An in-memory database is a different database per connection, so
//! it has no readers and reads through the pool; so does every read when a reader is gone
//! (its runtime shut down).

use std::cell::RefCell;
use std::collections::HashMap;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, QueryBuilder, Sqlite, SqliteConnection};
use thread_local::ThreadLocal;
use tokio::sync::{mpsc, oneshot};

use crate::rows::{ConnectionRecord, connection_columns};
use crate::{ConnectionRow, StoreResult};

/// The most ids one query asks for; the rest wait for the next round.
const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<StoreResult<Option<ConnectionRow>>>;

/// Where a thread queues its lookups: an id and where to send its row.
type Lookups = mpsc::UnboundedSender<(String, Reply)>;

/// One reader per thread, made on the thread's first lookup.
pub(super) struct PointReaders {
    options: SqliteConnectOptions,
    /// This thread's reader and the runtime it runs on; replaced when it has stopped (its
    /// runtime is gone) or when this thread now runs another runtime.
    readers: ThreadLocal<RefCell<Option<(tokio::runtime::Id, Lookups)>>>,
}

impl PointReaders {
    pub(super) fn new(options: SqliteConnectOptions) -> Self {
        PointReaders {
            options,
            readers: ThreadLocal::new(),
        }
    }

    /// The row with this id; `None` when this thread has no runtime to run a reader on, or
    /// its reader could not answer (the caller then reads through the pool).
    pub(super) async fn get(&self, id: &str) -> Option<StoreResult<Option<ConnectionRow>>> {
        let reader = {
            let handle = tokio::runtime::Handle::try_current().ok()?;
            let mut slot = self.readers.get_or(|| RefCell::new(None)).borrow_mut();
            match slot.as_ref() {
                Some((runtime, reader)) if *runtime == handle.id() && !reader.is_closed() => {
                    reader.clone()
                }
                _ => {
                    let (reader, lookups) = mpsc::unbounded_channel();
                    handle.spawn(serve_lookups(self.options.clone(), lookups));
                    slot.insert((handle.id(), reader)).1.clone()
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        reader.send((id.to_owned(), reply)).ok()?;
        answer.await.ok()
    }
}

/// A reader: opens its connection, then answers queued lookups a batch at a time until every
/// sender is gone. When its connection cannot be opened or a query fails, it drops that
/// batch's replies, so those lookups read through the pool instead and get the pool's answer
/// (or its error); the next batch starts on a fresh connection.
async fn serve_lookups(
    options: SqliteConnectOptions,
    mut lookups: mpsc::UnboundedReceiver<(String, Reply)>,
) {
    let mut connection: Option<SqliteConnection> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while lookups.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if connection.is_none() {
            match options.connect().await {
                Ok(opened) => connection = Some(opened),
                Err(err) => {
                    tracing::warn!(error = %err, "a point reader could not open its connection");
                    batch.clear();
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        match read_batch(open, &batch).await {
            Ok(rows) => {
                // One id may be asked for several times in a batch: each gets the row.
                for (id, reply) in batch.drain(..) {
                    let answer = match rows.get(&id) {
                        None => Ok(None),
                        Some(Ok(row)) => Ok(Some(row.clone())),
                        // Dropped: this lookup reads through the pool, which reports the
                        // same row's error.
                        Some(Err(_)) => continue,
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "a point reader's query failed");
                connection = None;
                batch.clear();
            }
        }
    }
}

/// The rows of `batch`'s ids, by id (a row that fails to decode is that lookup's error).
async fn read_batch(
    connection: &mut SqliteConnection,
    batch: &[(String, Reply)],
) -> Result<HashMap<String, StoreResult<ConnectionRow>>, sqlx::Error> {
    let mut query = QueryBuilder::<Sqlite>::new(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE id IN ("
    ));
    let mut ids = query.separated(", ");
    for (id, _) in batch {
        ids.push_bind(id.as_str());
    }
    ids.push_unseparated(")");
    let records: Vec<ConnectionRecord> = query.build_query_as().fetch_all(connection).await?;
    Ok(records
        .into_iter()
        .map(|record| (record.id.clone(), ConnectionRow::try_from(record)))
        .collect())
}
