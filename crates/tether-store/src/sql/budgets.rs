//! [`BudgetStore`] on either backend (compiled once per backend): the hold and the purge are
//! shared; taking a call (`take`) is the backend's own (`postgres/budget_take.rs`: one statement;
//! `sqlite/budget_take.rs`: one statement per budget).

use super::{Pool, ThisStore};
use crate::StoreResult;
use crate::budgets::{BudgetStore, BudgetTake, BudgetVerdict};

/// One GCRA step for one key, atomic on its row: a new key starts full (the call is taken);
/// a TAT more than `tolerance` ahead of now refuses the call, leaving the TAT and recording
/// the wait in `refused_for`; otherwise the TAT moves one interval on from max(TAT, now).
/// In an UPDATE every expression reads the row as it was, on both backends. Binds: key, now,
/// interval, tolerance. Returns `refused_for`.
#[allow(dead_code)] // PostgreSQL inlines the same step into its one statement.
pub(super) const TAKE_ONE: &str = "INSERT INTO proxy_budgets AS b (key, tat, refused_for) \
     VALUES ($1, $2 + $3, 0) \
     ON CONFLICT (key) DO UPDATE SET \
         refused_for = CASE WHEN b.tat - $2 > $4 THEN b.tat - $2 - $4 ELSE 0 END, \
         tat = CASE WHEN b.tat - $2 > $4 THEN b.tat \
                    WHEN b.tat > $2 THEN b.tat + $3 ELSE $2 + $3 END \
     RETURNING refused_for";

impl BudgetStore for ThisStore {
    async fn take_budgets(&self, take: &BudgetTake) -> StoreResult<BudgetVerdict> {
        super::budget_take::take(&self.pool, take).await
    }

    async fn hold_budget(&self, key: &str, until_micros: i64) -> StoreResult<()> {
        hold(&self.pool, key, until_micros).await
    }

    async fn purge_budgets(&self, before_micros: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM proxy_budgets WHERE tat < $1")
            .bind(before_micros)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn hold(pool: &Pool, key: &str, until_micros: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO proxy_budgets AS b (key, tat, refused_for) VALUES ($1, $2, 0) \
         ON CONFLICT (key) DO UPDATE SET \
             tat = CASE WHEN b.tat > excluded.tat THEN b.tat ELSE excluded.tat END",
    )
    .bind(key)
    .bind(until_micros)
    .execute(pool)
    .await?;
    Ok(())
}
