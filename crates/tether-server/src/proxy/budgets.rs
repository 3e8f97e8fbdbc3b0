//! The operator's budgets (`budget = { per_connection, per_integration, per_secs }` on an
//! integration): so one customer syncing flat out cannot spend the rate the provider gives
//! the whole app. Over a budget a call is answered 429 with `Retry-After` at once.
//!
//! Each budget is a GCRA (the generic cell rate algorithm, a token bucket kept as one
//! "theoretical arrival time"): one atomic per connection and one per integration, updated by
//! compare-and-swap, so the threads of one instance share it without a lock. Budgets are per
//! instance: with N instances behind a balancer, each allows the configured rate.
//! Integrations without a budget never reach this module.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tether_core::integration::ProxyBudget;

/// Connections whose budget is remembered; the least used are forgotten (and start full).
const CONNECTIONS: usize = 65_536;

pub struct Budgets {
    /// Where the nanosecond counts start.
    epoch: Instant,
    connections: quick_cache::sync::Cache<String, Arc<Gcra>>,
    integrations: quick_cache::sync::Cache<String, Arc<Gcra>>,
}

/// Which budget refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Connection(Duration),
    Integration(Duration),
}

impl Over {
    pub fn retry_after(self) -> Duration {
        match self {
            Over::Connection(d) | Over::Integration(d) => d,
        }
    }
}

/// The theoretical arrival time of the next call, in nanoseconds since the epoch.
#[derive(Default)]
struct Gcra {
    tat: AtomicU64,
}

impl Gcra {
    /// Takes one call if `requests` per `per` allows it at `now`; else how long until it would.
    fn take(&self, now: u64, requests: u32, per: Duration) -> Result<(), Duration> {
        let interval = (per.as_nanos() / u128::from(requests.max(1))) as u64;
        // A full bucket: `requests` calls at once.
        let tolerance = interval.saturating_mul(u64::from(requests.max(1)) - 1);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            if start - now > tolerance {
                return Err(Duration::from_nanos(start - now - tolerance));
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

impl Budgets {
    pub fn new(epoch: Instant) -> Self {
        Budgets {
            epoch,
            connections: quick_cache::sync::Cache::new(CONNECTIONS),
            integrations: quick_cache::sync::Cache::new(1024),
        }
    }

    fn gcra(cache: &quick_cache::sync::Cache<String, Arc<Gcra>>, key: &str) -> Arc<Gcra> {
        if let Some(found) = cache.get(key) {
            return found;
        }
        cache
            .get_or_insert_with(key, || Ok::<_, std::convert::Infallible>(Arc::default()))
            .unwrap_or_else(|never| match never {})
    }

    /// Counts one call of `connection` on `integration` against `budget` at `now`. The
    /// connection's budget is checked first, so a connection over its own share does not
    /// spend the integration's.
    pub fn take(
        &self,
        budget: &ProxyBudget,
        integration: &str,
        connection: &str,
        now: Instant,
    ) -> Result<(), Over> {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let per = Duration::from_secs(u64::from(budget.per_secs));
        if let Some(requests) = budget.per_connection {
            Self::gcra(&self.connections, connection)
                .take(now, requests, per)
                .map_err(Over::Connection)?;
        }
        if let Some(requests) = budget.per_integration {
            Self::gcra(&self.integrations, integration)
                .take(now, requests, per)
                .map_err(Over::Integration)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_connection: Option<u32>, per_integration: Option<u32>) -> ProxyBudget {
        ProxyBudget {
            per_connection,
            per_integration,
            per_secs: 1,
        }
    }

    #[test]
    fn a_connection_over_its_share_leaves_the_others_alone() {
        let start = Instant::now();
        let budgets = Budgets::new(start);
        let b = budget(Some(3), Some(5));
        for _ in 0..3 {
            budgets.take(&b, "crm", "a", start).unwrap();
        }
        let over = budgets.take(&b, "crm", "a", start).unwrap_err();
        assert!(
            matches!(over, Over::Connection(d) if d > Duration::ZERO && d <= Duration::from_secs(1))
        );
        budgets.take(&b, "crm", "b", start).unwrap();
        budgets.take(&b, "crm", "b", start).unwrap();
        // The integration's five are spent (three by a, two by b).
        assert!(matches!(
            budgets.take(&b, "crm", "c", start),
            Err(Over::Integration(_))
        ));
        // A third of a second later, one more call of a's is allowed.
        let later = start + Duration::from_millis(334);
        budgets.take(&b, "crm", "a", later).unwrap();
    }

    #[test]
    fn threads_share_one_budget() {
        let start = Instant::now();
        let budgets = Arc::new(Budgets::new(start));
        let b = budget(None, Some(100));
        let allowed: usize = (0..4)
            .map(|_| {
                let budgets = budgets.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| budgets.take(&b, "crm", "x", start).is_ok())
                        .count()
                })
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(allowed, 100);
    }
}
