//! `[documented]`: what a provider's own pages say, kept as data beside the settings Tether
//! uses, so that a check can hold the file to its sources instead of a reviewer's memory.
//!
//! Three kinds of drift broke real connections: an endpoint the provider announced it would
//! retire (HubSpot's `/oauth/v1/token`), a parameter the provider never documented sent anyway
//! (PKCE to Pipedrive), and one host assumed where the provider runs several (ActiveCampaign's
//! clusters). Each has a field here. The checks that need no clock run when the catalog loads
//! ([`check`]); the ones that depend on today's date ([`findings`]) run in `cargo test` and in
//! `tether providers show`, never at start-up, so a running gateway is not stopped by a date.

use serde::Deserialize;
use time::Date;

use super::{ProviderDef, Verification};
use crate::template::Template;

/// Days before a published sunset from which an endpoint still in use fails the catalog check
/// (earlier it only warns): time enough to ship a release with the new endpoint.
pub const SUNSET_FAIL_DAYS: i64 = 90;

/// Days after which a `[verified]` record is called stale (a warning).
pub const VERIFIED_STALE_DAYS: i64 = 365;

/// The provider's documented facts the file is checked against.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Documented {
    /// The authorization-request parameters the provider documents. When given, every
    /// optional parameter Tether would send (`code_challenge` with PKCE, `scope` with scopes,
    /// each `authorization_params` key) must be in it; and a provider that documents
    /// `code_challenge` gets PKCE. The RFC 6749 core (`response_type`, `client_id`,
    /// `redirect_uri`, `state`) is always sent.
    #[serde(default)]
    pub authorize_params: Option<Vec<String>>,
    /// How the provider places accounts on API hosts.
    #[serde(default)]
    pub api_host: Option<ApiHost>,
    /// Endpoints with a published end-of-life date.
    #[serde(default)]
    pub sunsets: Vec<Sunset>,
}

/// Where an account's API lives, as the provider documents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiHost {
    /// One host for everyone: `api.base_url` names it.
    Fixed,
    /// One domain, an account subdomain: the host reads a connection or setting value.
    Subdomain,
    /// Several domains (clusters, regions, self-hosted servers): the whole host comes from a
    /// value (what the user entered, the token response, an operator setting), never from a
    /// literal domain in the file.
    Several,
}

/// An endpoint the provider will switch off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sunset {
    /// The endpoint as the file would write it (https, no template).
    pub url: String,
    /// The day it stops working, `YYYY-MM-DD`.
    pub on: String,
    /// The provider's announcement (https).
    pub source: String,
    /// What replaces it, if the provider names something.
    #[serde(default)]
    pub replaced_by: Option<String>,
}

/// The RFC 6749 4.1.1 parameters every authorization request carries.
const CORE_AUTHORIZE_PARAMS: &[&str] = &["response_type", "client_id", "redirect_uri", "state"];

fn parse_day(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// The optional authorization parameters this file makes Tether send.
fn sent_authorize_params(provider: &ProviderDef) -> Vec<String> {
    let Some(def) = provider.oauth2.as_ref() else {
        return Vec::new();
    };
    let mut sent = Vec::new();
    if def.pkce {
        sent.push("code_challenge".to_owned());
        sent.push("code_challenge_method".to_owned());
    }
    if !def.scopes.is_empty() {
        sent.push("scope".to_owned());
    }
    sent.extend(def.authorization_params.keys().cloned());
    sent
}

/// Whether the host of a URL template is made only of one reference (`https://${x}/...`,
/// `${connection.instance_url}`), as opposed to holding a literal domain.
fn host_is_one_value(text: &str) -> bool {
    let host = match text.split_once("://") {
        None => return text.starts_with("${"),
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or_default(),
    };
    let Ok(template) = Template::parse(host) else {
        return false;
    };
    host.starts_with("${")
        && host.ends_with('}')
        && template.references().len() == 1
        && host.matches("${").count() == 1
}

/// Load-time checks of `[documented]` against the rest of the file (no clock involved).
pub fn check(provider: &ProviderDef) -> Result<(), (String, String)> {
    let Some(documented) = &provider.documented else {
        return Ok(());
    };
    if let Some(documented_params) = &documented.authorize_params {
        if !provider.is_oauth() {
            return Err((
                "documented.authorize_params".into(),
                "only OAuth providers have an authorization request".into(),
            ));
        }
        for param in sent_authorize_params(provider) {
            if !documented_params.contains(&param) {
                return Err((
                    "documented.authorize_params".into(),
                    format!(
                        "Tether would send {param:?}, which the provider does not document \
                         (switch it off, or record the page that documents it)"
                    ),
                ));
            }
        }
        let pkce = provider.oauth2.as_ref().is_some_and(|d| d.pkce);
        if documented_params.iter().any(|p| p == "code_challenge") && !pkce {
            return Err((
                "oauth2.pkce".into(),
                "the provider documents code_challenge: PKCE must be on".into(),
            ));
        }
        if let Some(core) = documented_params
            .iter()
            .find(|p| CORE_AUTHORIZE_PARAMS.contains(&p.as_str()))
        {
            return Err((
                "documented.authorize_params".into(),
                format!("{core:?} is always sent; list only the optional parameters"),
            ));
        }
    }
    if let Some(api_host) = documented.api_host {
        let base = provider.api.base_url.as_deref();
        let host_reads_value = base.is_some_and(|b| {
            let host = b
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
                .unwrap_or(b);
            host.contains("${")
        });
        let wrong = match (api_host, base) {
            // Without a catalog base URL the operator names it: any shape is the operator's.
            (_, None) => None,
            (ApiHost::Fixed, Some(_)) if host_reads_value => {
                Some("the provider has one API host, but api.base_url's host reads a value")
            }
            (ApiHost::Subdomain, Some(_)) if !host_reads_value => {
                Some("the provider has one host per account, but api.base_url names a fixed host")
            }
            (ApiHost::Several, Some(b)) if !host_is_one_value(b) => Some(
                "the provider runs several API domains, but api.base_url fixes a domain; the \
                 whole host must come from one value",
            ),
            _ => None,
        };
        if let Some(message) = wrong {
            return Err(("documented.api_host".into(), message.into()));
        }
    }
    for (index, sunset) in documented.sunsets.iter().enumerate() {
        let key = format!("documented.sunsets[{index}]");
        if parse_day(&sunset.on).is_none() {
            return Err((key, "on must be a date, YYYY-MM-DD".into()));
        }
        let https = |u: &str| u.starts_with("https://") && !u.contains("${");
        if !https(&sunset.url) || !https(&sunset.source) {
            return Err((key, "url and source must be https URLs".into()));
        }
        if sunset.replaced_by.as_deref().is_some_and(|u| !https(u)) {
            return Err((key, "replaced_by must be an https URL".into()));
        }
    }
    Ok(())
}

/// How serious a finding of the dated check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Fails the catalog check in CI.
    Error,
    /// Printed, does not fail.
    Warning,
}

/// One thing the dated check found about a provider file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

/// The endpoints this file makes Tether call, as written (templates included).
fn endpoints_in_use(provider: &ProviderDef) -> Vec<&str> {
    let mut urls: Vec<&str> = provider.api.base_url.as_deref().into_iter().collect();
    if let Some(def) = provider.oauth2.as_ref().filter(|_| provider.is_oauth()) {
        for url in [&def.authorization_url, &def.token_url, &def.revocation_url]
            .into_iter()
            .flatten()
        {
            urls.push(url);
        }
    }
    urls
}

/// The checks that depend on `today`: a sunset endpoint still in use (an error from
/// [`SUNSET_FAIL_DAYS`] before the date, a warning earlier), a `[verified]` record dated in the
/// future (an error) or older than [`VERIFIED_STALE_DAYS`] (a warning), and a provider file
/// without one (an error).
pub fn findings(provider: &ProviderDef, today: Date) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut push = |severity, message: String| found.push(Finding { severity, message });
    match &provider.verified {
        None => push(
            Severity::Error,
            "no [verified] record: when was this file checked, against what?".into(),
        ),
        Some(Verification { on, .. }) => match parse_day(on) {
            Some(day) if day > today => push(
                Severity::Error,
                format!("[verified] is dated {on}, after today ({today})"),
            ),
            Some(day) if (today - day).whole_days() > VERIFIED_STALE_DAYS => push(
                Severity::Warning,
                format!("[verified] is from {on}: check the file against its sources again"),
            ),
            _ => {}
        },
    }
    let in_use = endpoints_in_use(provider);
    for sunset in provider
        .documented
        .iter()
        .flat_map(|d| d.sunsets.iter())
        .filter(|s| in_use.contains(&s.url.as_str()))
    {
        let Some(day) = parse_day(&sunset.on) else {
            continue;
        };
        let left = (day - today).whole_days();
        let instead = sunset
            .replaced_by
            .as_deref()
            .map(|r| [" (use ", r, ")"].concat())
            .unwrap_or_default();
        if left < 0 {
            push(
                Severity::Error,
                format!("{} was switched off on {}{instead}", sunset.url, sunset.on),
            );
        } else if left <= SUNSET_FAIL_DAYS {
            push(
                Severity::Error,
                format!(
                    "{} is switched off on {}, in {left} days{instead}",
                    sunset.url, sunset.on
                ),
            );
        } else {
            push(
                Severity::Warning,
                format!(
                    "{} is switched off on {}, in {left} days{instead}",
                    sunset.url, sunset.on
                ),
            );
        }
    }
    found
}

/// Today in UTC, for the dated checks.
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn day(text: &str) -> Date {
        parse_day(text).unwrap()
    }

    fn load(text: &str) -> Result<Catalog, String> {
        Catalog::from_files([("providers/z.toml", text)]).map_err(|e| e.to_string())
    }

    const OAUTH: &str = "id = 'z'\ndisplay_name = 'Z'\nauth_mode = 'oauth2'\n\
        [api]\nbase_url = 'https://api.z.example'\n\
        [oauth2]\nauthorization_url = 'https://z.example/authorize'\n";

    /// The catalog check CI runs: every provider file records when and against what it was
    /// verified (never a day after today), and uses no endpoint within
    /// [`SUNSET_FAIL_DAYS`] of its published sunset. Warnings are printed, not failed.
    #[test]
    fn every_provider_file_is_verified_and_uses_no_endpoint_near_its_sunset() {
        let catalog = Catalog::embedded().unwrap();
        let today = today();
        let mut errors = Vec::new();
        for provider in catalog.iter() {
            for finding in findings(provider, today) {
                let line = [provider.id.as_str(), ": ", &finding.message].concat();
                match finding.severity {
                    Severity::Error => errors.push(line),
                    Severity::Warning => eprintln!("warning: {line}"),
                }
            }
            let verified = provider.verified.as_ref().unwrap();
            assert!(!verified.sources.is_empty(), "{}", provider.id);
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    /// HubSpot's file as it was (the v1 token endpoint) fails the check from 90 days before
    /// the sunset, and is called out as switched off after it; a year earlier it warns.
    #[test]
    fn a_sunset_endpoint_in_use_warns_then_fails() {
        let text = [
            OAUTH,
            "token_url = 'https://api.z.example/oauth/v1/token'\n",
            "[[documented.sunsets]]\nurl = 'https://api.z.example/oauth/v1/token'\n",
            "on = '2027-02-16'\nsource = 'https://z.example/changelog'\n",
            "replaced_by = 'https://api.z.example/oauth/2026-03/token'\n",
            "[verified]\non = '2026-12-01'\nsources = ['https://z.example/docs']\n",
        ]
        .concat();
        let catalog = load(&text).unwrap();
        let z = catalog.get("z").unwrap();
        // Only what is said about the endpoint (the record's own age is another finding).
        let at = |d: &str| -> Vec<Finding> {
            findings(z, day(d))
                .into_iter()
                .filter(|f| f.message.contains("/oauth/v1/token"))
                .collect()
        };
        let early = at("2026-06-01");
        assert_eq!(early.len(), 1, "{early:?}");
        assert_eq!(early[0].severity, Severity::Warning);
        assert_eq!(at("2026-11-17")[0].severity, Severity::Warning);
        // 90 days before, and on the day this check was written: HubSpot's old file fails.
        assert_eq!(at("2026-11-18")[0].severity, Severity::Error);
        assert_eq!(at("2026-12-07")[0].severity, Severity::Error);
        let late = at("2027-01-10");
        assert_eq!(late[0].severity, Severity::Error, "{late:?}");
        assert!(late[0].message.contains("in 37 days"), "{late:?}");
        assert!(late[0].message.contains("/oauth/2026-03/token"), "{late:?}");
        let past = at("2027-03-01");
        assert!(past[0].message.contains("was switched off"), "{past:?}");
        // The file moved to the new endpoint: the sunset stays recorded, nothing is found.
        let moved = text.replace(
            "token_url = 'https://api.z.example/oauth/v1/token'",
            "token_url = 'https://api.z.example/oauth/2026-03/token'",
        );
        let catalog = load(&moved).unwrap();
        assert_eq!(
            findings(catalog.get("z").unwrap(), day("2027-03-01")),
            Vec::new()
        );
    }

    #[test]
    fn a_missing_or_future_verification_is_an_error() {
        let catalog = load(&[OAUTH, "token_url = 'https://z.example/token'\n"].concat()).unwrap();
        let found = findings(catalog.get("z").unwrap(), day("2026-12-07"));
        assert_eq!(found[0].severity, Severity::Error);
        let text = [
            OAUTH,
            "token_url = 'https://z.example/token'\n",
            "[verified]\non = '2026-12-08'\nsources = ['https://z.example/docs']\n",
        ]
        .concat();
        let catalog = load(&text).unwrap();
        let found = findings(catalog.get("z").unwrap(), day("2026-12-07"));
        assert!(found[0].message.contains("after today"), "{found:?}");
        let stale = findings(catalog.get("z").unwrap(), day("2028-01-01"));
        assert_eq!(stale[0].severity, Severity::Warning, "{stale:?}");
    }

    /// Pipedrive's file as it was (PKCE on by default, while Pipedrive documents only
    /// client_id, redirect_uri and state) does not load.
    #[test]
    fn pkce_against_the_documented_authorize_parameters_is_refused() {
        let documented = "[documented]\nauthorize_params = []\n";
        let err = load(&[OAUTH, "token_url = 'https://z.example/token'\n", documented].concat())
            .unwrap_err();
        assert!(
            err.starts_with("providers/z.toml: documented.authorize_params: Tether would send \"code_challenge\""),
            "{err}"
        );
        load(&[OAUTH, "pkce = false\n", documented].concat()).unwrap();
        // An authorization parameter the provider does not document is caught the same way.
        let extra = [
            OAUTH,
            "pkce = false\n[oauth2.authorization_params]\nprompt = 'consent'\n",
            documented,
        ]
        .concat();
        assert!(load(&extra).unwrap_err().contains("\"prompt\""));
        // monday's file as it was: PKCE off where the provider documents code_challenge.
        let monday_like = [
            OAUTH,
            "pkce = false\n[documented]\nauthorize_params = ['code_challenge', 'code_challenge_method']\n",
        ]
        .concat();
        assert!(load(&monday_like).unwrap_err().contains("oauth2.pkce"));
    }

    /// ActiveCampaign's file as it was (a fixed `api-us1.com` suffix, while accounts live on
    /// several domains) does not load.
    #[test]
    fn a_fixed_domain_where_the_provider_has_several_is_refused() {
        let head = "id = 'z'\ndisplay_name = 'Z'\nauth_mode = 'api_key'\n\
            [[fields]]\nname = 'key'\nlabel = 'Key'\nsecret = true\n\
            [[fields]]\nname = 'account'\nlabel = 'Account'\npattern = '[a-z]+'\n";
        let base = |b: &str, host: &str| {
            [
                head,
                "[api]\nbase_url = '",
                b,
                "'\n[documented]\napi_host = '",
                host,
                "'\n",
            ]
            .concat()
        };
        let err = load(&base(
            "https://${connection.account}.api-us1.com/api/3",
            "several",
        ))
        .unwrap_err();
        assert!(
            err.starts_with("providers/z.toml: documented.api_host: "),
            "{err}"
        );
        load(&base("https://${connection.account}/api/3", "several")).unwrap();
        load(&base(
            "https://${connection.account}.api-us1.com/api/3",
            "subdomain",
        ))
        .unwrap();
        assert!(load(&base("https://api.z.example", "subdomain")).is_err());
        assert!(load(&base("https://${connection.account}.z.example", "fixed")).is_err());
        load(&base("https://api.z.example", "fixed")).unwrap();
    }

    #[test]
    fn sunsets_need_dates_and_https_sources() {
        let text = [
            OAUTH,
            "token_url = 'https://z.example/token'\n",
            "[[documented.sunsets]]\nurl = 'https://z.example/old'\non = 'soon'\nsource = 'https://z.example/c'\n",
        ]
        .concat();
        assert!(load(&text).unwrap_err().contains("documented.sunsets[0]"));
    }
}
