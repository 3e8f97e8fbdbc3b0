//! The budgets shared by every instance through PostgreSQL (`[proxy] shared_budgets`): the
//! operator's budgets (per connection, per integration) and the provider's "spent until"
//! holds live in the database, so N instances together allow each budget's rate instead of
//! N times it.
//!
//! Cost: one statement per proxied call ([`tether_store::BudgetStore::take_budgets`]), which
//! reads the provider budget's hold and steps both GCRA budgets; a hold is written only when
//! an answer newly spends a provider budget (rare). A hold another instance wrote is put into
//! this instance's own provider budget, so the call then waits or is refused exactly as after
//! a `Retry-After` heard here. With the opt-in off none of this runs (the in-memory budgets
//! of `budgets.rs` and `provider_limits.rs` only).
//!
//! When the database does not answer, the call is counted against this instance's in-memory
//! budgets instead (logged and counted as `shared_unavailable`): a budget is a courtesy to the
//! provider, not a reason to fail a call the connection could make.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tether_core::integration::{Integration, ProxyBudget};
use tether_store::{BudgetTake, BudgetVerdict, GcraKey, Store};

use super::budgets::Over;
use super::provider_limits::BudgetKey;
use crate::state::AppState;

/// Microseconds since the Unix epoch on this machine's wall clock (instances must agree on
/// it: NTP; a skew of d shifts what each instance sees of a budget by d).
fn wall_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A budget of `requests` per `per_secs` as a GCRA row.
fn gcra(key: String, requests: u32, per_secs: u32) -> GcraKey {
    let requests = i64::from(requests.max(1));
    let interval = i64::from(per_secs) * 1_000_000 / requests;
    GcraKey {
        key,
        interval_micros: interval,
        tolerance_micros: interval * (requests - 1),
    }
}

fn micros(d: i64) -> Duration {
    Duration::from_micros(u64::try_from(d).unwrap_or(0))
}

/// Takes one call of `connection` from the shared budgets: `Err` when the operator's budget
/// refuses it. A provider hold found in the database is put into this instance's provider
/// budget for `key` (the caller's admission then waits or refuses), spending nothing.
pub async fn take<S: Store>(
    state: &AppState<S>,
    integration: &Integration,
    connection: &str,
    key: BudgetKey<'_>,
) -> Result<(), Over> {
    let budget: Option<&ProxyBudget> = integration.budget.as_ref();
    let integration_key = integration.key.as_str();
    let now = wall_micros();
    let ask = BudgetTake {
        now_micros: now,
        hold: key.text(),
        connection: budget.and_then(|b| {
            b.per_connection
                .map(|n| gcra(["c:", connection].concat(), n, b.per_secs))
        }),
        integration: budget.and_then(|b| {
            b.per_integration
                .map(|n| gcra(["i:", integration_key].concat(), n, b.per_secs))
        }),
    };
    match state.store.take_budgets(&ask).await {
        Ok(BudgetVerdict::Taken) => Ok(()),
        Ok(BudgetVerdict::OverConnection { wait_micros }) => {
            Err(Over::Connection(micros(wait_micros)))
        }
        Ok(BudgetVerdict::OverIntegration { wait_micros }) => {
            Err(Over::Integration(micros(wait_micros)))
        }
        Ok(BudgetVerdict::Held { until_micros }) => {
            state
                .metrics
                .rate_limit_event(integration_key, "shared_hold");
            let until = state.clock.instant() + micros(until_micros - now);
            state.provider_limits.hold(key, until);
            Ok(())
        }
        Err(error) => {
            tracing::warn!(integration = integration_key, error = ?error,
                "the shared budgets did not answer; this instance's own budgets count the call");
            state
                .metrics
                .rate_limit_event(integration_key, "shared_unavailable");
            match budget {
                Some(budget) => state.proxy_budgets.take(
                    budget,
                    integration_key,
                    connection,
                    state.clock.instant(),
                ),
                None => Ok(()),
            }
        }
    }
}

/// Shares that the provider's budget `key` is spent, as this instance's budget says at
/// `now` (a `Retry-After`, or a spent window until its reset): written after the answer went
/// back, never delaying it; a failed write is logged (the other instances then learn it from
/// the provider themselves).
pub fn hold<S: Store>(state: &AppState<S>, key: BudgetKey<'_>, now: Instant) {
    let Some(budget) = state.provider_limits.get(key) else {
        return;
    };
    let snapshot = budget.snapshot(now);
    let spent_for = snapshot
        .blocked_for
        .or(snapshot.resets_in.filter(|_| snapshot.remaining == Some(0)));
    let Some(spent_for) = spent_for else {
        return;
    };
    let until =
        wall_micros().saturating_add(i64::try_from(spent_for.as_micros()).unwrap_or(i64::MAX));
    let state = state.clone();
    let key = key.text();
    tokio::spawn(async move {
        if let Err(error) = state.store.hold_budget(&key, until).await {
            tracing::warn!(error = ?error, "could not share the provider's rate-limit hold");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_becomes_its_interval_and_burst() {
        let g = gcra("c:x".into(), 4, 2);
        assert_eq!(g.interval_micros, 500_000);
        assert_eq!(g.tolerance_micros, 1_500_000);
        let one = gcra("c:x".into(), 1, 1);
        assert_eq!(one.tolerance_micros, 0, "one call at a time, no burst");
    }
}
