//! Taking one proxied call from the shared budgets on PostgreSQL in ONE statement: the hold
//! is read, then the connection's budget and (only when that took the call) the
//! integration's are stepped, each an `INSERT .. ON CONFLICT DO UPDATE .. RETURNING` in a
//! data-modifying CTE. Each row's step is atomic (ON CONFLICT locks the row for the statement
//! only and re-reads its latest version), so N instances together take at most what the
//! budget allows; nothing is held across the call to the provider.

use super::Pool;
use crate::StoreResult;
use crate::budgets::{BudgetTake, BudgetVerdict, GcraKey};

/// Binds: $1 hold key, $2 now, $3/$4/$5 the connection's key, interval and tolerance,
/// $6/$7/$8 the integration's (a NULL key: no such budget).
const TAKE: &str = "WITH hold AS ( \
         SELECT tat FROM proxy_budgets WHERE key = $1 AND tat > $2 \
     ), conn AS ( \
         INSERT INTO proxy_budgets AS b (key, tat, refused_for) \
         SELECT $3, $2 + $4, 0 WHERE $3::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM hold) \
         ON CONFLICT (key) DO UPDATE SET \
             refused_for = CASE WHEN b.tat - $2 > $5 THEN b.tat - $2 - $5 ELSE 0 END, \
             tat = CASE WHEN b.tat - $2 > $5 THEN b.tat \
                        WHEN b.tat > $2 THEN b.tat + $4 ELSE $2 + $4 END \
         RETURNING refused_for \
     ), integ AS ( \
         INSERT INTO proxy_budgets AS b (key, tat, refused_for) \
         SELECT $6, $2 + $7, 0 WHERE $6::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM hold) \
             AND COALESCE((SELECT refused_for FROM conn), 0) = 0 \
         ON CONFLICT (key) DO UPDATE SET \
             refused_for = CASE WHEN b.tat - $2 > $8 THEN b.tat - $2 - $8 ELSE 0 END, \
             tat = CASE WHEN b.tat - $2 > $8 THEN b.tat \
                        WHEN b.tat > $2 THEN b.tat + $7 ELSE $2 + $7 END \
         RETURNING refused_for \
     ) \
     SELECT (SELECT tat FROM hold), (SELECT refused_for FROM conn), \
            (SELECT refused_for FROM integ)";

pub(super) async fn take(pool: &Pool, take: &BudgetTake) -> StoreResult<BudgetVerdict> {
    let (conn_key, conn_interval, conn_tolerance) = parts(&take.connection);
    let (int_key, int_interval, int_tolerance) = parts(&take.integration);
    let (held, conn, integ): (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(TAKE)
        .bind(&take.hold)
        .bind(take.now_micros)
        .bind(conn_key)
        .bind(conn_interval)
        .bind(conn_tolerance)
        .bind(int_key)
        .bind(int_interval)
        .bind(int_tolerance)
        .fetch_one(pool)
        .await?;
    Ok(verdict(held, conn, integ))
}

/// A budget's binds: key (NULL when there is no such budget), interval, tolerance.
fn parts(gcra: &Option<GcraKey>) -> (Option<&str>, i64, i64) {
    match gcra {
        Some(g) => (Some(g.key.as_str()), g.interval_micros, g.tolerance_micros),
        None => (None, 0, 0),
    }
}

fn verdict(held: Option<i64>, conn: Option<i64>, integ: Option<i64>) -> BudgetVerdict {
    match (held, conn, integ) {
        (Some(until_micros), _, _) => BudgetVerdict::Held { until_micros },
        (None, Some(wait), _) if wait > 0 => BudgetVerdict::OverConnection { wait_micros: wait },
        (None, _, Some(wait)) if wait > 0 => BudgetVerdict::OverIntegration { wait_micros: wait },
        _ => BudgetVerdict::Taken,
    }
}
