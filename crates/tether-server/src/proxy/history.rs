//! The connection's history records when the provider held it back: the first answer that
//! spends its budget (a spent window, or a `Retry-After`) writes one `rate_limited` entry,
//! after the response has gone on (the write never delays the app), and a store error is
//! logged, not answered: the call itself went through.

use std::time::Instant;

use tether_store::{HistoryEntry, Store, history_kind};

use super::provider_limits::BudgetKey;
use crate::connection_service::refresh::Live;
use crate::state::AppState;

/// Records that `live`'s connection is held back by the provider, as its budget says at `now`.
pub fn held_back<S: Store>(state: &AppState<S>, live: &Live, key: BudgetKey<'_>, now: Instant) {
    let Some(budget) = state.provider_limits.get(key) else {
        return;
    };
    let snapshot = budget.snapshot(now);
    let until = snapshot.blocked_for.or(snapshot.resets_in);
    let mut detail = String::from("the provider's request budget is spent");
    if let Some(until) = until {
        detail.push_str(&format!(
            "; calls are held back for {} s",
            until.as_secs().max(1)
        ));
    }
    match key {
        BudgetKey::App(_) => {
            detail.push_str(" (the budget is the integration's, shared by its connections)")
        }
        BudgetKey::Account(..) => {
            detail.push_str(" (the budget is the provider account's, shared by its connections)")
        }
        BudgetKey::Connection(_) => {}
    }
    let entry = HistoryEntry {
        kind: history_kind::RATE_LIMITED.to_owned(),
        integration: live.integration.key.as_str().to_owned(),
        detail: Some(detail),
        reference: None,
    };
    let state = state.clone();
    let connection_id = live.row.id.clone();
    let at = state.clock.now();
    tokio::spawn(async move {
        if let Err(error) = state
            .store
            .record_connection_history(&connection_id, &entry, at)
            .await
        {
            tracing::warn!(%connection_id, error = ?error, "could not record the rate-limit hold in the history");
        }
    });
}
