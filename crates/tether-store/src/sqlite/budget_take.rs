//! Taking one proxied call from the budgets on SQLite: the hold read, then one statement per
//! budget (`TAKE_ONE`, atomic on its row). SQLite has no data-modifying CTE to make it one
//! statement, and one instance owns the file, so the server keeps its budgets in memory
//! there; this exists so the store behaves the same on both backends.

use super::Pool;
use super::budgets::TAKE_ONE;
use crate::StoreResult;
use crate::budgets::{BudgetTake, BudgetVerdict, GcraKey};

pub(super) async fn take(pool: &Pool, take: &BudgetTake) -> StoreResult<BudgetVerdict> {
    let held: Option<i64> =
        sqlx::query_scalar("SELECT tat FROM proxy_budgets WHERE key = $1 AND tat > $2")
            .bind(&take.hold)
            .bind(take.now_micros)
            .fetch_optional(pool)
            .await?;
    if let Some(until_micros) = held {
        return Ok(BudgetVerdict::Held { until_micros });
    }
    if let Some(wait) = step(pool, take.now_micros, take.connection.as_ref()).await? {
        return Ok(BudgetVerdict::OverConnection { wait_micros: wait });
    }
    if let Some(wait) = step(pool, take.now_micros, take.integration.as_ref()).await? {
        return Ok(BudgetVerdict::OverIntegration { wait_micros: wait });
    }
    Ok(BudgetVerdict::Taken)
}

/// One budget's step; `Some(wait)` when it refused the call.
async fn step(pool: &Pool, now: i64, gcra: Option<&GcraKey>) -> StoreResult<Option<i64>> {
    let Some(gcra) = gcra else {
        return Ok(None);
    };
    let refused_for: i64 = sqlx::query_scalar(TAKE_ONE)
        .bind(&gcra.key)
        .bind(now)
        .bind(gcra.interval_micros)
        .bind(gcra.tolerance_micros)
        .fetch_one(pool)
        .await?;
    Ok((refused_for > 0).then_some(refused_for))
}
