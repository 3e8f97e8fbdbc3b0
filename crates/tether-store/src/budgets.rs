//! Request budgets shared by every instance on one database (`[proxy] shared_budgets`): the
//! operator's budgets per connection and per integration, each a GCRA (generic cell rate
//! algorithm) kept as one "theoretical arrival time" (TAT) per key, and the provider's
//! "spent until" holds, in the table `proxy_budgets`.
//!
//! One proxied call is one [`BudgetStore::take_budgets`]: on PostgreSQL one statement (the
//! hold read and each budget's `INSERT .. ON CONFLICT DO UPDATE .. RETURNING` in one query),
//! atomic per row, no lock held across the call to the provider. Times are microseconds of
//! the instances' wall clocks, which must agree (NTP): a skew of d shifts a budget by d.

use std::future::Future;

use crate::any::forward_to_backend;
use crate::{AnyStore, StoreResult};

/// One GCRA budget: `requests` per period as the spacing between calls and the burst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcraKey {
    pub key: String,
    /// Microseconds between two calls at the budget's rate (period / requests).
    pub interval_micros: i64,
    /// How far ahead of now the TAT may run: a full bucket, `(requests - 1) * interval`.
    pub tolerance_micros: i64,
}

/// What one call asks of the shared budgets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetTake {
    pub now_micros: i64,
    /// The provider budget's hold key: a hold in force refuses the call, spending nothing.
    pub hold: String,
    /// Checked first: a connection over its share does not spend the integration's.
    pub connection: Option<GcraKey>,
    pub integration: Option<GcraKey>,
}

/// The answer for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetVerdict {
    /// Taken from every budget asked.
    Taken,
    /// The provider said its budget is spent until then (microseconds); nothing was taken.
    Held { until_micros: i64 },
    /// Over the connection's budget; try again after this many microseconds.
    OverConnection { wait_micros: i64 },
    /// Over the integration's budget (the connection's was taken).
    OverIntegration { wait_micros: i64 },
}

/// The budgets' storage.
pub trait BudgetStore {
    /// Reads the hold and takes one call from each budget asked, in one round trip.
    fn take_budgets(
        &self,
        take: &BudgetTake,
    ) -> impl Future<Output = StoreResult<BudgetVerdict>> + Send;

    /// Records that the provider's budget `key` is spent until `until_micros` (the latest of
    /// what any instance heard wins).
    fn hold_budget(
        &self,
        key: &str,
        until_micros: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes the rows that say nothing any more (a full budget, an ended hold): those whose
    /// time is before `before_micros`. Returns how many.
    fn purge_budgets(&self, before_micros: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

impl BudgetStore for AnyStore {
    forward_to_backend! {
        fn take_budgets(&self, take: &BudgetTake) -> StoreResult<BudgetVerdict>;
        fn hold_budget(&self, key: &str, until_micros: i64) -> StoreResult<()>;
        fn purge_budgets(&self, before_micros: i64) -> StoreResult<u64>;
    }
}
