//! The console's overview: connection counts by status, per integration, and the refresh
//! charts of the last 24 hours and 30 days.

use super::*;

pub(super) struct IntegrationCounts {
    key: String,
    name: String,
    active: i64,
    needs_reauth: i64,
    revoked: i64,
    total: i64,
    href: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub(super) struct OverviewPage {
    frame: Frame,
    integrations: Vec<IntegrationCounts>,
    total: i64,
    status_bar: Vec<charts::Segment>,
    /// (heading, charts): the last 24 hours per hour, the last 30 days per day.
    chart_groups: Vec<(&'static str, Vec<charts::BucketChart>)>,
}

pub(super) const CHART_KINDS: [&str; 3] = [
    history_kind::REFRESHED,
    history_kind::REFRESH_FAILED,
    history_kind::NEEDS_REAUTH,
];

pub(super) fn hour_label(t: i64) -> String {
    let text = rfc3339(t);
    // "YYYY-MM-DDTHH:MM:SSZ" -> "YYYY-MM-DD HH:00 UTC"
    text.get(..13)
        .map(|d| d.replace('T', " ") + ":00 UTC")
        .unwrap_or(text)
}

pub(super) fn day_label(t: i64) -> String {
    let text = rfc3339(t);
    text.get(..10).map(str::to_owned).unwrap_or(text)
}

pub(super) async fn overview<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Response {
    let Some(operator) = session::operator(&state, &headers).await else {
        return sign_in_page(&state, StatusCode::OK, None);
    };
    let counts = match state.store.connection_status_counts().await {
        Ok(counts) => counts,
        Err(err) => return internal(&state, "status counts", &err),
    };
    let mut integrations: Vec<IntegrationCounts> = state
        .integrations
        .all()
        .iter()
        .map(|i| IntegrationCounts {
            key: i.key.to_string(),
            name: i.display_name.clone(),
            active: 0,
            needs_reauth: 0,
            revoked: 0,
            total: 0,
            href: String::new(),
        })
        .collect();
    for count in &counts {
        let index = match integrations.iter().position(|i| i.key == count.integration) {
            Some(index) => index,
            None => {
                // Connections of an integration no longer configured still count.
                integrations.push(IntegrationCounts {
                    key: count.integration.clone(),
                    name: count.integration.clone(),
                    active: 0,
                    needs_reauth: 0,
                    revoked: 0,
                    total: 0,
                    href: String::new(),
                });
                integrations.len() - 1
            }
        };
        let row = &mut integrations[index];
        match count.status {
            ConnectionStatus::Active => row.active += count.count,
            ConnectionStatus::NeedsReauth => row.needs_reauth += count.count,
            ConnectionStatus::Revoked => row.revoked += count.count,
        }
        row.total += count.count;
    }
    integrations.sort_by(|a, b| a.key.cmp(&b.key));
    for row in &mut integrations {
        row.href = dashboard_url(&state, &["connections"], &[("integration", &row.key)]);
    }
    let now = state.clock.now();
    // Whole hours and days, so a bucket's bounds read well.
    let day_since = (now - 23 * 3600).div_euclid(3600) * 3600;
    let month_since = (now - 29 * 86_400).div_euclid(86_400) * 86_400;
    let day = state
        .store
        .connection_event_buckets(day_since, 3600, &CHART_KINDS)
        .await;
    let month = state
        .store
        .connection_event_buckets(month_since, 86_400, &CHART_KINDS)
        .await;
    let (day, month) = match (day, month) {
        (Ok(day), Ok(month)) => (day, month),
        (Err(err), _) | (_, Err(err)) => return internal(&state, "event buckets", &err),
    };
    let frame = Frame::new(&state, Some(&operator), "overview");
    let nonce = frame.nonce.clone();
    let body = OverviewPage {
        frame,
        total: counts.iter().map(|c| c.count).sum(),
        status_bar: charts::status_bar(&counts),
        chart_groups: vec![
            (
                "last 24 hours, per hour",
                charts::bucket_charts(&day, day_since, 3600, 24, "last 24 hours", hour_label),
            ),
            (
                "last 30 days, per day",
                charts::bucket_charts(&month, month_since, 86_400, 30, "last 30 days", day_label),
            ),
        ],
        integrations,
    };
    page(StatusCode::OK, &nonce, body.render())
}
