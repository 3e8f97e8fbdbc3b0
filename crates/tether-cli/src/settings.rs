//! The one declaration of every `tether.toml` setting. [`settings!`] declares a section once:
//! each key's type, its documentation, and the rule that checks it and writes it into the
//! gateway's own settings (whose constructors hold the defaults). From that one declaration
//! come the serde struct the file and `TETHER_<SECTION>__<KEY>` variables are read into, the
//! code applying it, and the rows of `docs/configuration.md` (see `reference`), defaults read
//! from the very values the gateway starts with, so the reference cannot drift from the code.

use std::time::Duration;

use anyhow::bail;

/// One row of the configuration reference.
#[cfg_attr(not(test), allow(dead_code))]
pub struct Row {
    pub key: &'static str,
    /// Markdown, as shown in the reference's default column.
    pub default: String,
    /// Markdown: the key's doc comment, its lines joined.
    pub doc: String,
}

/// Joins a doc comment's lines into one line of Markdown.
#[cfg_attr(not(test), allow(dead_code))]
pub fn doc_line(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Declares a section (or a part of one flattened into it).
///
/// ```text
/// settings! {
///     /// struct doc
///     pub struct RefreshSection in "refresh" for config: GatewayConfig = make() => {
///         /// the key's reference text
///         margin_secs: Option<u64> => secs(0, config.refresh_margin),
///         /// ...
///         other: Vec<String> => custom("none"),
///     }
/// }
/// ```
///
/// Rules: `secs(min, path)` (whole seconds into a `Duration`, at most ten years),
/// `millis(min, path)` (milliseconds into a `Duration`),
/// `days(min, path)` (whole days into a `Duration`), `count(min, path)` (a number), and
/// `custom(default text)` (checked by hand in `config`; the default text may read the binding
/// named after `for`). A field may give its serde default after `=`; others default to
/// `Default::default()`. The binding's initial value (after the type) is the defaults; it may
/// be a tuple, `(limits, config)`, when a section writes into two targets.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $section:literal for $t:tt : $target:ty = $make:expr => {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty $(= $default:expr)? => $rule:ident ( $($args:tt)* ),
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $( $field: $crate::settings::settings!(@default $($default)?), )*
                }
            }
        }

        impl $name {
            /// Checks the keys with a rule and writes them into their target; the `custom`
            /// keys are left to their own code.
            // A section with only `custom` keys has nothing to apply.
            #[allow(unused_variables, dead_code)]
            pub fn apply(&self, $t: &mut $target) -> anyhow::Result<()> {
                $( $crate::settings::settings!(@apply self, $field, concat!($section, ".", stringify!($field)), $rule($($args)*)); )*
                Ok(())
            }

            /// The reference rows, defaults read from a fresh target.
            // Only the reference's test reads them.
            #[allow(unused_variables)]
            #[cfg_attr(not(test), allow(dead_code))]
            pub fn rows() -> Vec<$crate::settings::Row> {
                let $t: $target = $make;
                vec![$(
                    $crate::settings::Row {
                        key: stringify!($field),
                        default: $crate::settings::settings!(@show $rule($($args)*)),
                        doc: $crate::settings::doc_line(&[$($doc),*]),
                    },
                )*]
            }
        }
    };

    (@default) => { Default::default() };
    (@default $default:expr) => { $default };

    (@apply $s:ident, $field:ident, $key:expr, secs($min:expr, $($path:ident).+)) => {
        $crate::settings::secs($key, $s.$field, $min, &mut $($path).+)?
    };
    (@apply $s:ident, $field:ident, $key:expr, millis($min:expr, $($path:ident).+)) => {
        $crate::settings::millis($key, $s.$field, $min, &mut $($path).+)?
    };
    (@apply $s:ident, $field:ident, $key:expr, days($min:expr, $($path:ident).+)) => {
        $crate::settings::days($key, $s.$field, $min, &mut $($path).+)?
    };
    (@apply $s:ident, $field:ident, $key:expr, count($min:expr, $($path:ident).+)) => {
        $crate::settings::count($key, $s.$field, $min, &mut $($path).+)?
    };
    (@apply $s:ident, $field:ident, $key:expr, custom($($text:tt)*)) => {};

    (@show secs($min:expr, $($path:ident).+)) => { $($path).+.as_secs().to_string() };
    (@show millis($min:expr, $($path:ident).+)) => { $($path).+.as_millis().to_string() };
    (@show days($min:expr, $($path:ident).+)) => { ($($path).+.as_secs() / 86_400).to_string() };
    (@show count($min:expr, $($path:ident).+)) => { $($path).+.to_string() };
    (@show custom($text:expr)) => { ($text).to_string() };
}

pub(crate) use settings;

/// The most seconds any setting may be: ten years. Larger values only come from typos, and
/// the server adds them to unix times and instants, which they would overflow.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;

/// Sets `into` from `value` seconds when given; below `min` or above [`MAX_SECS`] is refused
/// naming `key`.
pub fn secs(key: &str, value: Option<u64>, min: u64, into: &mut Duration) -> anyhow::Result<()> {
    match value {
        Some(secs) if secs < min => bail!("{key} must be at least {min}"),
        Some(secs) if secs > MAX_SECS => bail!("{key} must be at most {MAX_SECS} (ten years)"),
        Some(secs) => *into = Duration::from_secs(secs),
        None => {}
    }
    Ok(())
}

/// Sets `into` from `value` milliseconds when given; below `min` or above [`MAX_SECS`] is
/// refused naming `key`.
pub fn millis(key: &str, value: Option<u64>, min: u64, into: &mut Duration) -> anyhow::Result<()> {
    match value {
        Some(ms) if ms < min => bail!("{key} must be at least {min}"),
        Some(ms) if ms / 1000 > MAX_SECS => bail!("{key} must be at most {MAX_SECS} seconds"),
        Some(ms) => *into = Duration::from_millis(ms),
        None => {}
    }
    Ok(())
}

/// Sets `into` from `value` days when given; below `min` is refused naming `key`.
pub fn days(key: &str, value: Option<u32>, min: u32, into: &mut Duration) -> anyhow::Result<()> {
    match value {
        Some(days) if days < min => bail!("{key} must be at least {min}"),
        Some(days) => *into = Duration::from_secs(u64::from(days) * 86_400),
        None => {}
    }
    Ok(())
}

/// Sets `into` from `value` when given; below `min` is refused naming `key`.
pub fn count<T: Copy + PartialOrd + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    min: T,
    into: &mut T,
) -> anyhow::Result<()> {
    match value {
        Some(n) if n < min => bail!("{key} must be at least {min}"),
        Some(n) => *into = n,
        None => {}
    }
    Ok(())
}
