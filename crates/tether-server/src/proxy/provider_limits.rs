//! What each provider budget has left, as the provider last reported it: so the proxy never
//! sends a call that is known to fail (a spent window, a `Retry-After` not yet over).
//!
//! A budget is kept per connection; per provider account when the catalog's `[rate_limit]
//! scope` is `account` and the connection's account is known (HubSpot's portal, Salesforce's
//! org: two connections of one account share what the provider allows it); per integration
//! when the scope is `app` (see [`budget_key`]). Each declared window keeps a local count of what is
//! left, lowered on every call sent (before its answer) and by what the provider reports,
//! minus the calls still in flight, which the provider may or may not have counted yet: the
//! count can only err low, so a burst never goes over the provider's limit once a header has
//! been seen. At the window's reset it starts again from the window's size, minus the calls
//! still in flight. A window the provider gives no reset for is taken as rolling: its latest
//! count is believed, and once spent it is probed by one call at a time.
//!
//! The happy path of a provider that reports nothing costs one relaxed load of a flag that
//! stays false (no map read, no allocation, no lock): an entry is made only when a response
//! reports a budget or a `Retry-After`, and from then on a call reads a sharded map once and
//! locks its own budget's entry, which no other connection touches (unless the scope is
//! `app`, where the integration's calls share one, as they share the provider's limit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_core::catalog::rate_limit::{LimitScope, WindowReading};
use tether_store::ProviderAccount;

/// The most windows a provider file may declare (headers and usage together).
pub use tether_core::catalog::rate_limit::MAX_WINDOWS;

/// Budgets remembered per kind; beyond this the least used are forgotten (and relearnt
/// from the next response), which errs towards sending, never towards a wrong count.
const ENTRIES: usize = 65_536;

/// A spent window whose reset the provider did not say is probed by one call at a time,
/// this often.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Whose budget a call spends. `account` scope is the (integration, provider account)'s,
/// read with the connection's row (no other read), and the connection's own while its
/// account is not known yet; `app` scope is the integration's.
pub fn budget_key<'a>(
    scope: LimitScope,
    integration: &'a str,
    connection: &'a str,
    account: Option<&'a ProviderAccount>,
) -> BudgetKey<'a> {
    match (scope, account) {
        (LimitScope::Account, Some(account)) => BudgetKey::Account(integration, account.as_str()),
        (LimitScope::Connection | LimitScope::Account, _) => BudgetKey::Connection(connection),
        (LimitScope::App, _) => BudgetKey::App(integration),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetKey<'a> {
    Connection(&'a str),
    /// An integration and one of its provider accounts.
    Account(&'a str, &'a str),
    App(&'a str),
}

impl BudgetKey<'_> {
    /// The key as one string (for the shared holds in the database, see `shared_budgets`).
    pub fn text(self) -> String {
        match self {
            BudgetKey::Connection(id) => ["h:c:", id].concat(),
            // An integration key has no newline, so the two parts cannot run into each other.
            BudgetKey::Account(integration, account) => {
                ["h:a:", integration, "\n", account].concat()
            }
            BudgetKey::App(integration) => ["h:p:", integration].concat(),
        }
    }
}

/// An (integration, account) key looked up without building the owned pair.
#[derive(Hash)]
struct AccountRef<'a>(&'a str, &'a str);

impl quick_cache::Equivalent<(String, String)> for AccountRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Every budget of one instance.
pub struct ProviderLimits {
    /// Set once any budget is known: until then no call looks anything up.
    any: AtomicBool,
    connections: quick_cache::sync::Cache<String, Arc<Budget>>,
    accounts: quick_cache::sync::Cache<(String, String), Arc<Budget>>,
    apps: quick_cache::sync::Cache<String, Arc<Budget>>,
}

/// One budget: its windows and the `Retry-After` in force.
#[derive(Default)]
pub struct Budget {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A `Retry-After` (or a spent window) holds every call until then.
    blocked_until: Option<Instant>,
    windows: [Window; MAX_WINDOWS],
    /// Calls sent and not answered yet.
    in_flight: u64,
    /// The budget's being spent was reported (see [`ProviderLimits::observe`]).
    reported: bool,
}

#[derive(Clone, Copy, Default)]
struct Window {
    /// Calls that may still be sent in this window; `None`: not known.
    remaining: Option<u64>,
    /// The window's size, as last reported.
    limit: Option<u64>,
    /// When the window resets (the latest any answer said).
    reset_at: Option<Instant>,
}

/// The decision for one call.
pub enum Admission {
    /// Send it; report the answer to the ticket.
    Go(Ticket),
    /// Not before then.
    Wait(Instant),
}

/// A call counted against a budget (or against none); give it the answer with
/// [`Ticket::observe`]. Dropped unobserved, the call no longer counts as in flight.
pub struct Ticket {
    budget: Option<Arc<Budget>>,
}

/// What a budget looks like now, for the console and the history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub blocked_for: Option<Duration>,
    pub remaining: Option<u64>,
    pub limit: Option<u64>,
    pub resets_in: Option<Duration>,
}

impl ProviderLimits {
    pub fn new() -> Self {
        ProviderLimits {
            any: AtomicBool::new(false),
            connections: quick_cache::sync::Cache::new(ENTRIES),
            accounts: quick_cache::sync::Cache::new(ENTRIES),
            apps: quick_cache::sync::Cache::new(ENTRIES),
        }
    }

    /// The budget of `key`, when anything is known of it.
    pub fn get(&self, key: BudgetKey<'_>) -> Option<Arc<Budget>> {
        // A load of a line nobody writes after the first budget: no contention.
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        match key {
            BudgetKey::Connection(id) => self.connections.get(id),
            BudgetKey::Account(integration, account) => {
                self.accounts.get(&AccountRef(integration, account))
            }
            BudgetKey::App(integration) => self.apps.get(integration),
        }
    }

    /// The budget of `key`, made when unknown (only once a response reports something).
    fn entry(&self, key: BudgetKey<'_>) -> Arc<Budget> {
        if !self.any.load(Ordering::Relaxed) {
            self.any.store(true, Ordering::Relaxed);
        }
        if let Some(budget) = self.get(key) {
            return budget;
        }
        let new = || Ok::<_, std::convert::Infallible>(Arc::new(Budget::default()));
        match key {
            BudgetKey::Connection(id) => self.connections.get_or_insert_with(id, new),
            BudgetKey::Account(integration, account) => self
                .accounts
                .get_or_insert_with(&(integration.to_owned(), account.to_owned()), new),
            BudgetKey::App(integration) => self.apps.get_or_insert_with(integration, new),
        }
        .unwrap_or_else(|never| match never {})
    }

    /// Holds `key`'s budget until `until` (what another instance heard from the provider,
    /// through the shared budgets): its calls wait or are refused here, as after a
    /// `Retry-After`.
    pub fn hold(&self, key: BudgetKey<'_>, until: Instant) {
        let budget = self.entry(key);
        let mut state = budget.lock();
        state.blocked_until = Some(state.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// May a call spend `key`'s budget at `now`?
    pub fn admit(&self, key: BudgetKey<'_>, now: Instant) -> Admission {
        match self.get(key) {
            None => Admission::Go(Ticket { budget: None }),
            Some(budget) => budget.admit(now),
        }
    }

    /// Records what an answer said: the windows' readings, and a `Retry-After` (on 429 and
    /// 503). Returns whether this answer spent the budget (once per spell), for the history.
    pub fn observe(
        &self,
        key: BudgetKey<'_>,
        ticket: Ticket,
        readings: &[WindowReading],
        retry_after: Option<Duration>,
        now: Instant,
    ) -> bool {
        let mut ticket = ticket;
        let reports = retry_after.is_some() || readings.iter().any(|r| !r.is_empty());
        // Taken out of the ticket, whose drop then counts nothing.
        let (budget, was_counted) = match (ticket.budget.take(), reports) {
            (Some(budget), _) => (budget, true),
            (None, false) => return false,
            (None, true) => (self.entry(key), false),
        };
        budget.observe(was_counted, readings, retry_after, now)
    }
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements; a panic elsewhere leaves it usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(self: Arc<Self>, now: Instant) -> Admission {
        let mut state = self.lock();
        if let Some(until) = state.blocked_until {
            if until > now {
                return Admission::Wait(until);
            }
            state.blocked_until = None;
        }
        let in_flight = state.in_flight;
        let mut wait: Option<Instant> = None;
        for window in &mut state.windows {
            if window.reset_at.is_some_and(|at| at <= now) {
                // A new window: its size, less what is still in flight (it may count there).
                window.remaining = window.limit.map(|l| l.saturating_sub(in_flight));
                window.reset_at = None;
            }
            if window.remaining == Some(0) {
                let until = match window.reset_at {
                    Some(at) => at,
                    // Spent, and no word on when it resets: one probe at a time.
                    None if in_flight == 0 => continue,
                    None => now + PROBE_INTERVAL,
                };
                wait = Some(wait.map_or(until, |w| w.max(until)));
            }
        }
        if let Some(until) = wait {
            return Admission::Wait(until);
        }
        for window in &mut state.windows {
            if let Some(remaining) = &mut window.remaining {
                *remaining = remaining.saturating_sub(1);
            }
        }
        state.in_flight += 1;
        drop(state);
        Admission::Go(Ticket { budget: Some(self) })
    }

    fn observe(
        &self,
        was_counted: bool,
        readings: &[WindowReading],
        retry_after: Option<Duration>,
        now: Instant,
    ) -> bool {
        let mut state = self.lock();
        if was_counted {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        let others = state.in_flight;
        for (window, reading) in state.windows.iter_mut().zip(readings) {
            if reading.is_empty() {
                continue;
            }
            if reading.limit.is_some() {
                window.limit = reading.limit;
            }
            // The provider may not have counted the calls still in flight yet.
            let left = reading.remaining.map(|r| r.saturating_sub(others));
            match reading.reset_after {
                Some(after) => {
                    // A fixed window: the latest reset any answer gave, and the lowest count
                    // (answers may arrive out of order; the local count already holds every
                    // call sent since the window began).
                    let at = now + after;
                    window.reset_at = Some(window.reset_at.map_or(at, |known| known.max(at)));
                    if let Some(left) = left {
                        window.remaining =
                            Some(window.remaining.map_or(left, |known| known.min(left)));
                    }
                }
                None if left.is_some() => {
                    // No reset: a rolling window (Salesforce's 24 hours, Dynamics' 5 minutes)
                    // whose budget comes back call by call, so the latest count is the one.
                    // Once spent, one call at a time probes it.
                    window.remaining = left;
                    window.reset_at = None;
                }
                None => {}
            }
        }
        if let Some(after) = retry_after {
            let until = now + after;
            state.blocked_until = Some(state.blocked_until.map_or(until, |b| b.max(until)));
        }
        let spent = state.blocked_until.is_some_and(|until| until > now)
            || state
                .windows
                .iter()
                .any(|w| w.remaining == Some(0) && w.reset_at.is_none_or(|at| at > now));
        // Reported once per spell, however many answers say it.
        let newly = spent && !state.reported;
        state.reported = spent;
        newly
    }

    /// The budget as it stands at `now`: the tightest window.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let state = self.lock();
        let tightest = state
            .windows
            .iter()
            .filter(|w| w.remaining.is_some() && w.reset_at.is_none_or(|at| at > now))
            .min_by_key(|w| w.remaining);
        Snapshot {
            blocked_for: state
                .blocked_until
                .filter(|until| *until > now)
                .map(|until| until - now),
            remaining: tightest.and_then(|w| w.remaining),
            limit: tightest.and_then(|w| w.limit),
            resets_in: tightest
                .and_then(|w| w.reset_at)
                .map(|at| at.saturating_duration_since(now)),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            let mut state = budget.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: BudgetKey<'static> = BudgetKey::Connection("conn_a");

    fn reading(remaining: u64, limit: u64, reset_secs: u64) -> [WindowReading; 1] {
        [WindowReading {
            remaining: Some(remaining),
            limit: Some(limit),
            reset_after: Some(Duration::from_secs(reset_secs)),
            window: None,
        }]
    }

    fn go(admission: Admission) -> Ticket {
        match admission {
            Admission::Go(ticket) => ticket,
            Admission::Wait(_) => panic!("expected to go"),
        }
    }

    #[test]
    fn nothing_known_means_no_entry() {
        let limits = ProviderLimits::new();
        let now = Instant::now();
        let ticket = go(limits.admit(KEY, now));
        assert!(!limits.observe(KEY, ticket, &[WindowReading::default()], None, now));
        assert!(
            limits.get(KEY).is_none(),
            "no entry for a provider that reports nothing"
        );
    }

    #[test]
    fn never_sends_more_than_reported_counting_calls_in_flight() {
        let limits = ProviderLimits::new();
        let now = Instant::now();
        // The first answer reports 5 left.
        let first = go(limits.admit(KEY, now));
        limits.observe(KEY, first, &reading(5, 10, 60), None, now);
        let a = go(limits.admit(KEY, now));
        let b = go(limits.admit(KEY, now));
        // a's answer says 4: b may not be counted yet, so 3 may still go.
        limits.observe(KEY, a, &reading(4, 10, 60), None, now);
        let sent: Vec<Ticket> = (0..3).map(|_| go(limits.admit(KEY, now))).collect();
        assert!(matches!(limits.admit(KEY, now), Admission::Wait(_)));
        // After the reset: the window's size, less the four still in flight.
        let later = now + Duration::from_secs(61);
        let mut more = Vec::new();
        while let Admission::Go(t) = limits.admit(KEY, later) {
            more.push(t);
        }
        assert_eq!(more.len(), 10 - 1 - sent.len());
        drop(b);
    }

    #[test]
    fn retry_after_blocks_until_then() {
        let limits = ProviderLimits::new();
        let now = Instant::now();
        let ticket = go(limits.admit(KEY, now));
        assert!(limits.observe(KEY, ticket, &[], Some(Duration::from_secs(2)), now));
        let again = go(limits.admit(BudgetKey::Connection("conn_c"), now));
        drop(again);
        match limits.admit(KEY, now + Duration::from_secs(1)) {
            Admission::Wait(until) => assert_eq!(until, now + Duration::from_secs(2)),
            Admission::Go(_) => panic!("blocked"),
        }
        go(limits.admit(KEY, now + Duration::from_secs(2)));
        // Another connection was never affected.
        go(limits.admit(BudgetKey::Connection("conn_b"), now));
    }

    #[test]
    fn a_spent_window_without_a_reset_is_probed_one_call_at_a_time() {
        let limits = ProviderLimits::new();
        let now = Instant::now();
        let ticket = go(limits.admit(KEY, now));
        let spent = [WindowReading {
            remaining: Some(0),
            ..WindowReading::default()
        }];
        limits.observe(KEY, ticket, &spent, None, now);
        let probe = go(limits.admit(KEY, now));
        assert!(matches!(limits.admit(KEY, now), Admission::Wait(_)));
        drop(probe);
        go(limits.admit(KEY, now));
    }

    #[test]
    fn a_rolling_window_believes_its_latest_count() {
        let limits = ProviderLimits::new();
        let now = Instant::now();
        let rolling = |remaining| {
            [WindowReading {
                remaining: Some(remaining),
                window: Some(Duration::from_secs(86_400)),
                ..WindowReading::default()
            }]
        };
        let first = go(limits.admit(KEY, now));
        limits.observe(KEY, first, &rolling(2), None, now);
        let a = go(limits.admit(KEY, now));
        let _b = go(limits.admit(KEY, now));
        assert!(matches!(limits.admit(KEY, now), Admission::Wait(_)));
        // Calls older than the window dropped out: the provider counts 4 left, less b.
        limits.observe(KEY, a, &rolling(4), None, now);
        let more: Vec<Ticket> = (0..3).map(|_| go(limits.admit(KEY, now))).collect();
        assert!(matches!(limits.admit(KEY, now), Admission::Wait(_)));
        drop(more);
    }

    #[test]
    fn app_scope_is_shared_by_the_integration() {
        assert_eq!(
            budget_key(LimitScope::App, "crm", "conn_a", None),
            budget_key(LimitScope::App, "crm", "conn_b", None)
        );
    }

    #[test]
    fn account_scope_is_shared_by_the_account_once_known() {
        let org = ProviderAccount::of(Some("org-1".into()), Some("u1".into()));
        let other = ProviderAccount::of(Some("org-2".into()), None);
        assert_eq!(
            budget_key(LimitScope::Account, "crm", "conn_a", None),
            BudgetKey::Connection("conn_a"),
            "per connection while the account is not known"
        );
        let a = budget_key(LimitScope::Account, "crm", "conn_a", org.as_ref());
        let b = budget_key(LimitScope::Account, "crm", "conn_b", org.as_ref());
        let c = budget_key(LimitScope::Account, "crm", "conn_c", other.as_ref());
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The connection scope ignores the account.
        assert_eq!(
            budget_key(LimitScope::Connection, "crm", "conn_a", org.as_ref()),
            BudgetKey::Connection("conn_a")
        );
        // One budget for both connections of the account, none shared with the other.
        let limits = ProviderLimits::new();
        let now = Instant::now();
        let ticket = go(limits.admit(a, now));
        limits.observe(a, ticket, &[], Some(Duration::from_secs(5)), now);
        assert!(matches!(limits.admit(b, now), Admission::Wait(_)));
        go(limits.admit(c, now));
        assert_ne!(a.text(), c.text());
    }
}
