//! `[rate_limit]`: how a provider reports and enforces its request limits, as data, and the
//! reading of one response's headers against it.
//!
//! Every CRM reports its budget its own way (HubSpot a 10-second and a daily window in
//! `X-HubSpot-RateLimit-*`, Salesforce `Sforce-Limit-Info: api-usage=25/5000`, most others
//! `X-RateLimit-*` with a reset in seconds, milliseconds, or a Unix time). The file says which
//! headers mean what; [`RateLimitDef::read`] turns a response's headers into one
//! [`WindowReading`] per declared window, which the proxy keeps per connection (or per app).
//! `Retry-After` (RFC 9110 10.2.3) needs no declaration: [`retry_after`] reads both forms.

use std::time::Duration;

use serde::Deserialize;

/// `[rate_limit]` of a provider file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDef {
    /// Whose budget the provider's limits are.
    #[serde(default)]
    pub scope: LimitScope,
    /// Headers reporting a window's budget, one table per window.
    #[serde(default)]
    pub headers: Vec<HeaderWindowDef>,
    /// Headers of the form `KEY=USED/MAX`.
    #[serde(default)]
    pub usage: Vec<UsageDef>,
    /// The documented fixed limits.
    #[serde(default)]
    pub documented: Vec<DocumentedLimit>,
}

/// Whose budget a limit is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Each token (each connection) has its own.
    #[default]
    Connection,
    /// Every connection of one provider account shares it (until the account id is known,
    /// Tether keeps it per connection).
    Account,
    /// The OAuth client's: every connection of the integration shares it.
    App,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Connection => "connection",
            LimitScope::Account => "account",
            LimitScope::App => "app",
        }
    }
}

/// One window the provider reports in headers; every key optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderWindowDef {
    /// Requests left in the window.
    pub remaining: Option<String>,
    /// The window's size in requests.
    pub limit: Option<String>,
    /// When the window resets, in `reset_format`.
    pub reset: Option<String>,
    #[serde(default)]
    pub reset_format: ResetFormat,
    /// A header giving the window's length.
    pub window: Option<String>,
    #[serde(default)]
    pub window_format: WindowFormat,
    /// The window's length when fixed and documented.
    pub window_secs: Option<u64>,
}

/// How a reset header is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetFormat {
    /// Seconds from now.
    #[default]
    DeltaSeconds,
    /// Milliseconds from now.
    DeltaMillis,
    /// A Unix time in seconds.
    UnixSeconds,
    /// A Unix time in milliseconds.
    UnixMillis,
    /// An HTTP-date (RFC 9110 5.6.7).
    HttpDate,
}

/// How a window-length header is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowFormat {
    #[default]
    Seconds,
    Millis,
}

/// A header of the form `KEY=USED/MAX` (`Sforce-Limit-Info: api-usage=25/5000`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageDef {
    pub header: String,
    pub key: String,
    /// The window's length (Salesforce: a rolling 24 hours).
    pub window_secs: Option<u64>,
}

/// A limit the provider documents: for the record, the console and pacing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentedLimit {
    pub requests: u64,
    pub per_secs: u64,
    /// Defaults to `[rate_limit] scope`.
    pub scope: Option<LimitScope>,
    /// The page that documents it (https).
    pub source: String,
}

/// What one response said about one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowReading {
    pub remaining: Option<u64>,
    pub limit: Option<u64>,
    /// How long until the window resets, from when the response was read, when the
    /// provider said so (a reset header).
    pub reset_after: Option<Duration>,
    /// The window's length (a window header, or the documented one): without a reset, a
    /// rolling window whose budget comes back call by call.
    pub window: Option<Duration>,
}

impl WindowReading {
    pub fn is_empty(&self) -> bool {
        self.remaining.is_none() && self.limit.is_none() && self.reset_after.is_none()
    }
}

/// The most windows one file may declare: the proxy keeps them in a fixed array per budget.
pub const MAX_WINDOWS: usize = 4;

/// The longest reset or window Tether believes: a header saying "in a year" is a broken
/// header, and a connection must not be held back for longer than a day on its word.
pub const MAX_RESET: Duration = Duration::from_secs(86_400);

impl RateLimitDef {
    /// How many windows [`RateLimitDef::read`] reports (headers first, then usage).
    pub fn windows(&self) -> usize {
        self.headers.len() + self.usage.len()
    }

    /// Whether any header is declared: without one there is nothing to read on a 2xx.
    pub fn reads_headers(&self) -> bool {
        self.windows() > 0
    }

    /// Reads one response's headers (`header(name)` returns its value, names
    /// case-insensitive) into one reading per window, in [`RateLimitDef::windows`] order.
    /// Values that do not parse are left out, never guessed. `now_unix_millis` is the wall
    /// clock, for resets written as a Unix time.
    pub fn read<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        now_unix_millis: i64,
        out: &mut [WindowReading],
    ) {
        for (def, slot) in self.headers.iter().zip(out.iter_mut()) {
            let number = |name: &Option<String>| {
                name.as_deref()
                    .and_then(&header)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let window = def
                .window
                .as_deref()
                .and_then(&header)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|n| match def.window_format {
                    WindowFormat::Seconds => Duration::from_secs(n),
                    WindowFormat::Millis => Duration::from_millis(n),
                })
                .or(def.window_secs.map(Duration::from_secs));
            let reset = def
                .reset
                .as_deref()
                .and_then(&header)
                .and_then(|v| reset_after(v, def.reset_format, now_unix_millis));
            *slot = WindowReading {
                remaining: number(&def.remaining),
                limit: number(&def.limit),
                reset_after: reset.map(|d| d.min(MAX_RESET)),
                window: window.map(|d| d.min(MAX_RESET)),
            };
        }
        for (def, slot) in self
            .usage
            .iter()
            .zip(out.iter_mut().skip(self.headers.len()))
        {
            *slot = header(&def.header)
                .and_then(|v| usage(v, &def.key))
                .map(|(used, max)| WindowReading {
                    remaining: Some(max.saturating_sub(used)),
                    limit: Some(max),
                    reset_after: None,
                    window: def
                        .window_secs
                        .map(|s| Duration::from_secs(s).min(MAX_RESET)),
                })
                .unwrap_or_default();
        }
    }

    /// What serde cannot check: a window needs something to read, names are header names,
    /// numbers are positive, sources are https.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if self.windows() > MAX_WINDOWS {
            return Err((
                "rate_limit".into(),
                format!("at most {MAX_WINDOWS} windows (headers and usage together)"),
            ));
        }
        let header_name = |key: String, name: &Option<String>| match name {
            Some(name) if http_token(name) => Ok(()),
            Some(name) => Err((key, format!("{name:?} is not a header name"))),
            None => Ok(()),
        };
        for (i, def) in self.headers.iter().enumerate() {
            let key = |k: &str| format!("rate_limit.headers[{i}].{k}");
            header_name(key("remaining"), &def.remaining)?;
            header_name(key("limit"), &def.limit)?;
            header_name(key("reset"), &def.reset)?;
            header_name(key("window"), &def.window)?;
            if def.remaining.is_none() && def.reset.is_none() {
                return Err((
                    key("remaining"),
                    "a window needs a remaining or a reset header to read".into(),
                ));
            }
            if def.window_secs == Some(0) {
                return Err((key("window_secs"), "must be at least 1".into()));
            }
        }
        for (i, def) in self.usage.iter().enumerate() {
            let key = |k: &str| format!("rate_limit.usage[{i}].{k}");
            header_name(key("header"), &Some(def.header.clone()))?;
            if def.key.is_empty() || def.key.contains(['=', '/', ',']) {
                return Err((key("key"), "must be a plain key name".into()));
            }
            if def.window_secs == Some(0) {
                return Err((key("window_secs"), "must be at least 1".into()));
            }
        }
        for (i, def) in self.documented.iter().enumerate() {
            let key = |k: &str| format!("rate_limit.documented[{i}].{k}");
            if def.requests == 0 {
                return Err((key("requests"), "must be at least 1".into()));
            }
            if def.per_secs == 0 {
                return Err((key("per_secs"), "must be at least 1".into()));
            }
            if !def.source.starts_with("https://") {
                return Err((key("source"), "must be an https URL".into()));
            }
        }
        Ok(())
    }
}

/// A header name (RFC 9110 5.1: a token).
fn http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A reset value as a duration from now; a time in the past is zero.
fn reset_after(value: &str, format: ResetFormat, now_unix_millis: i64) -> Option<Duration> {
    let value = value.trim();
    let number = || value.parse::<u64>().ok();
    let since_now = |at_millis: i64| {
        Some(Duration::from_millis(
            at_millis.saturating_sub(now_unix_millis).max(0) as u64,
        ))
    };
    match format {
        ResetFormat::DeltaSeconds => number().map(Duration::from_secs),
        ResetFormat::DeltaMillis => number().map(Duration::from_millis),
        ResetFormat::UnixSeconds => since_now(i64::try_from(number()?).ok()?.saturating_mul(1000)),
        ResetFormat::UnixMillis => since_now(i64::try_from(number()?).ok()?),
        ResetFormat::HttpDate => since_now(http_date_millis(value)?),
    }
}

/// An HTTP-date as Unix milliseconds.
fn http_date_millis(value: &str) -> Option<i64> {
    let at = httpdate::parse_http_date(value).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// `KEY=USED/MAX` among comma-separated entries.
fn usage(value: &str, key: &str) -> Option<(u64, u64)> {
    value.split(',').find_map(|entry| {
        let (name, numbers) = entry.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case(key) {
            return None;
        }
        let (used, max) = numbers.trim().split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

/// `Retry-After` (RFC 9110 10.2.3): delta-seconds or an HTTP-date, as a duration from now
/// (a date in the past is zero, a longer wait than [`MAX_RESET`] is [`MAX_RESET`]); `None`
/// when it is neither.
pub fn retry_after(value: &str, now_unix_millis: i64) -> Option<Duration> {
    let value = value.trim();
    let after = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A number too long for u64 is still "a long time".
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        reset_after(value, ResetFormat::HttpDate, now_unix_millis)?
    };
    Some(after.min(MAX_RESET))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(text: &str) -> RateLimitDef {
        toml::from_str(text).unwrap()
    }

    fn read(def: &RateLimitDef, headers: &[(&str, &str)], now_ms: i64) -> Vec<WindowReading> {
        let mut out = vec![WindowReading::default(); def.windows()];
        def.read(
            |name| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            },
            now_ms,
            &mut out,
        );
        out
    }

    #[test]
    fn reads_each_reset_format() {
        let now = 1_800_000_000_000;
        for (format, value, expected) in [
            ("delta_seconds", "7", 7_000),
            ("delta_millis", "1500", 1_500),
            ("unix_seconds", "1800000009", 9_000),
            ("unix_millis", "1800000000250", 250),
            ("unix_seconds", "1700000000", 0),
            ("http_date", "Fri, 15 Jan 2027 08:00:10 GMT", 10_000),
        ] {
            let now = if format == "http_date" {
                http_date_millis("Fri, 15 Jan 2027 08:00:00 GMT").unwrap()
            } else {
                now
            };
            let d = def(&format!(
                "[[headers]]\nremaining = \"R\"\nreset = \"T\"\nreset_format = \"{format}\"\n"
            ));
            let got = read(&d, &[("r", "3"), ("t", value)], now);
            assert_eq!(got[0].remaining, Some(3));
            assert_eq!(
                got[0].reset_after,
                Some(Duration::from_millis(expected)),
                "{format}"
            );
        }
    }

    #[test]
    fn window_lengths_are_read_apart_from_resets_and_resets_are_capped() {
        let d = def(concat!(
            "[[headers]]\nremaining = \"R\"\nwindow = \"W\"\nwindow_format = \"millis\"\n",
            "[[headers]]\nremaining = \"D\"\nreset = \"DR\"\n",
        ));
        let got = read(
            &d,
            &[("R", "9"), ("W", "10000"), ("D", "0"), ("DR", "999999999")],
            0,
        );
        assert_eq!(got[0].reset_after, None);
        assert_eq!(got[0].window, Some(Duration::from_secs(10)));
        assert_eq!(got[1].remaining, Some(0));
        assert_eq!(got[1].reset_after, Some(MAX_RESET));
    }

    #[test]
    fn reads_usage_headers_and_ignores_garbage() {
        let d = def(
            "[[usage]]\nheader = \"Sforce-Limit-Info\"\nkey = \"api-usage\"\nwindow_secs = 86400\n",
        );
        let got = read(
            &d,
            &[("sforce-limit-info", "per-app=1/10, api-usage=25/5000")],
            0,
        );
        assert_eq!(got[0].remaining, Some(4975));
        assert_eq!(got[0].limit, Some(5000));
        for garbage in ["api-usage=x/5000", "api-usage", "other=1/2", ""] {
            let got = read(&d, &[("Sforce-Limit-Info", garbage)], 0);
            assert!(got[0].is_empty(), "{garbage}");
        }
        let d = def("[[headers]]\nremaining = \"R\"\nreset = \"T\"\n");
        let got = read(&d, &[("R", "-1"), ("T", "soon")], 0);
        assert!(got[0].is_empty());
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = http_date_millis("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("99999999999999999999999", now), Some(MAX_RESET));
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RESET)
        );
    }

    #[test]
    fn checks_what_serde_cannot() {
        for (text, key) in [
            (
                "[[headers]]\nlimit = \"L\"\n",
                "rate_limit.headers[0].remaining",
            ),
            (
                "[[headers]]\nremaining = \"a b\"\n",
                "rate_limit.headers[0].remaining",
            ),
            (
                "[[usage]]\nheader = \"H\"\nkey = \"a=b\"\n",
                "rate_limit.usage[0].key",
            ),
            (
                "[[documented]]\nrequests = 1\nper_secs = 0\nsource = \"https://x\"\n",
                "rate_limit.documented[0].per_secs",
            ),
            (
                "[[documented]]\nrequests = 1\nper_secs = 1\nsource = \"http://x\"\n",
                "rate_limit.documented[0].source",
            ),
        ] {
            assert_eq!(def(text).check().unwrap_err().0, key, "{text}");
        }
        assert!(toml::from_str::<RateLimitDef>("typo = 1").is_err());
    }
}
