//! The console's pictures, drawn on the server as inline SVG (no script, no external fetch):
//! refreshes and failures per time bucket for one integration, and a bar of connections by
//! status. Only numbers and fixed class names reach the markup; labels are escaped by askama.

use std::collections::BTreeMap;

use tether_store::{ConnectionStatus, EventBucket, StatusCount, history_kind};

/// Width and height of a bucket chart's plot area, in SVG user units.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 96.0;

/// One bar of a bucket chart: refreshes stacked under failures.
pub struct Bar {
    pub x: String,
    pub width: String,
    pub ok_y: String,
    pub ok_height: String,
    pub fail_y: String,
    pub fail_height: String,
    /// Tooltip: when, and the counts.
    pub title: String,
}

/// Refreshes and failures over a window, in buckets.
pub struct BucketChart {
    pub integration: String,
    pub window: &'static str,
    pub bars: Vec<Bar>,
    pub refreshed: i64,
    pub failed: i64,
    /// The tallest bar's count (the y scale's top).
    pub max: i64,
}

/// Builds one chart per integration that had refreshes or failures in the window.
pub fn bucket_charts(
    buckets: &[EventBucket],
    since: i64,
    bucket_secs: i64,
    count: usize,
    window: &'static str,
    label: fn(i64) -> String,
) -> Vec<BucketChart> {
    // integration -> bucket index -> (refreshed, failed)
    let mut per: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for b in buckets {
        let index = usize::try_from((b.bucket_start - since) / bucket_secs.max(1)).unwrap_or(0);
        if index >= count {
            continue;
        }
        let slots = per
            .entry(b.integration.as_str())
            .or_insert_with(|| vec![(0, 0); count]);
        if b.kind == history_kind::REFRESHED {
            slots[index].0 += b.count;
        } else {
            slots[index].1 += b.count;
        }
    }
    per.into_iter()
        .map(|(integration, slots)| {
            let max = slots.iter().map(|(a, b)| a + b).max().unwrap_or(0).max(1);
            let step = WIDTH / count as f64;
            let scale = |n: i64| HEIGHT * n as f64 / max as f64;
            let bars = slots
                .iter()
                .enumerate()
                .map(|(i, (ok, failed))| {
                    let ok_h = scale(*ok);
                    let fail_h = scale(*failed);
                    let start = since + i as i64 * bucket_secs;
                    Bar {
                        x: format!("{:.1}", i as f64 * step + 1.0),
                        width: format!("{:.1}", (step - 2.0).max(1.0)),
                        ok_y: format!("{:.1}", HEIGHT - ok_h),
                        ok_height: format!("{ok_h:.1}"),
                        fail_y: format!("{:.1}", HEIGHT - ok_h - fail_h),
                        fail_height: format!("{fail_h:.1}"),
                        title: format!("{}: {ok} refreshed, {failed} failed", label(start)),
                    }
                })
                .collect();
            BucketChart {
                integration: integration.to_owned(),
                window,
                refreshed: slots.iter().map(|s| s.0).sum(),
                failed: slots.iter().map(|s| s.1).sum(),
                max,
                bars,
            }
        })
        .collect()
}

/// One segment of the status bar.
pub struct Segment {
    pub status: &'static str,
    pub count: i64,
    pub x: String,
    pub width: String,
}

/// Connections by status as one horizontal bar (percentages of the whole).
pub fn status_bar(counts: &[StatusCount]) -> Vec<Segment> {
    let total: i64 = counts.iter().map(|c| c.count).sum();
    let mut x = 0.0;
    [
        ConnectionStatus::Active,
        ConnectionStatus::NeedsReauth,
        ConnectionStatus::Revoked,
    ]
    .into_iter()
    .map(|status| {
        let count: i64 = counts
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum();
        let width = if total == 0 {
            0.0
        } else {
            100.0 * count as f64 / total as f64
        };
        let segment = Segment {
            status: status.as_str(),
            count,
            x: format!("{x:.2}"),
            width: format!("{width:.2}"),
        };
        x += width;
        segment
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stack_failures_on_refreshes() {
        let b = |kind: &str, start: i64, count: i64| EventBucket {
            integration: "crm".into(),
            kind: kind.into(),
            bucket_start: start,
            count,
        };
        let charts = bucket_charts(
            &[
                b("refreshed", 0, 3),
                b("refresh_failed", 0, 1),
                b("needs_reauth", 3600, 2),
                b("refreshed", 999_999, 9),
            ],
            0,
            3600,
            24,
            "24 hours",
            |t| t.to_string(),
        );
        assert_eq!(charts.len(), 1);
        let chart = &charts[0];
        assert_eq!((chart.refreshed, chart.failed, chart.max), (3, 3, 4));
        assert_eq!(chart.bars.len(), 24);
        assert_eq!(chart.bars[0].ok_height, "72.0");
        assert_eq!(chart.bars[0].fail_y, "0.0");
        assert_eq!(chart.bars[1].title, "3600: 0 refreshed, 2 failed");
    }

    #[test]
    fn the_status_bar_adds_up() {
        let c = |status, count| StatusCount {
            integration: "crm".into(),
            status,
            count,
        };
        let bar = status_bar(&[
            c(ConnectionStatus::Active, 3),
            c(ConnectionStatus::NeedsReauth, 1),
        ]);
        assert_eq!(bar[0].width, "75.00");
        assert_eq!(bar[1].x, "75.00");
        assert_eq!(bar[1].width, "25.00");
        assert_eq!(bar[2].count, 0);
        assert!(status_bar(&[]).iter().all(|s| s.width == "0.00"));
    }
}
