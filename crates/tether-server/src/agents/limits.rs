//! Per-token limits on `/mcp`: requests per minute and requests in progress at once. Kept in
//! this instance's memory (a deliberate trade: no database write per request), so behind a
//! balancer each instance allows a token its own share; the operator sizes `[mcp]` for that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tokens tracked before finished windows are swept out (bounds the memory per instance).
const SWEEP_AT: usize = 10_000;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Usage {
    window_start: Option<Instant>,
    requests: u32,
    in_flight: u32,
}

/// Every token's usage on this instance.
#[derive(Clone, Default)]
pub struct AgentLimits {
    usage: Arc<Mutex<HashMap<String, Usage>>>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over the per-minute rate; retry after this many seconds.
    Rate(u64),
    /// Too many requests of this token in progress.
    Concurrency,
}

/// A request in progress; dropping it frees its place.
pub struct Admitted {
    limits: AgentLimits,
    token_id: String,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut usage = self.limits.usage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = usage.get_mut(&self.token_id) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }
}

impl AgentLimits {
    /// Admits one request of `token_id` at `now`, or says why not.
    pub fn admit(
        &self,
        token_id: &str,
        per_minute: u32,
        max_concurrent: u32,
        now: Instant,
    ) -> Result<Admitted, Refusal> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if usage.len() >= SWEEP_AT {
            usage.retain(|_, u| {
                u.in_flight > 0
                    || u.window_start
                        .is_some_and(|s| now.duration_since(s) < WINDOW)
            });
        }
        let entry = usage.entry(token_id.to_owned()).or_default();
        let start = match entry.window_start {
            Some(start) if now.duration_since(start) < WINDOW => start,
            _ => {
                entry.requests = 0;
                entry.window_start = Some(now);
                now
            }
        };
        if entry.requests >= per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(start));
            return Err(Refusal::Rate(left.as_secs().max(1)));
        }
        if entry.in_flight >= max_concurrent {
            return Err(Refusal::Concurrency);
        }
        entry.requests += 1;
        entry.in_flight += 1;
        Ok(Admitted {
            limits: self.clone(),
            token_id: token_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_concurrency_per_token() {
        let limits = AgentLimits::default();
        let t0 = Instant::now();
        let first = limits.admit("agt_a", 3, 2, t0).unwrap();
        let second = limits.admit("agt_a", 3, 2, t0).unwrap();
        // Two in progress: a third waits for one to finish.
        assert_eq!(
            limits.admit("agt_a", 3, 2, t0).err(),
            Some(Refusal::Concurrency)
        );
        // Another token is not affected.
        let _other = limits.admit("agt_b", 3, 2, t0).unwrap();
        drop(first);
        let _third = limits.admit("agt_a", 3, 2, t0).unwrap();
        drop(second);
        // Three in this minute: the fourth is refused until the window ends.
        assert_eq!(
            limits
                .admit("agt_a", 3, 2, t0 + Duration::from_secs(20))
                .err(),
            Some(Refusal::Rate(40))
        );
        assert!(limits.admit("agt_a", 3, 2, t0 + WINDOW).is_ok());
    }
}
