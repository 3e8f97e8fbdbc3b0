//! Time as the store keeps it: UTC unix seconds, and RFC 3339 for humans and the API.

use time::OffsetDateTime;

/// Now, in UTC unix seconds.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 text of a unix timestamp (UTC), e.g. `2026-11-23T14:00:00Z`.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
