//! What a provider's `[lifetime]` means for one grant, as pure functions of "now": the access
//! token's expiry when the token response said none, when the refresher must use a refresh
//! token that expires unused, and when a fixed-lifetime grant ends.

use tether_core::catalog::LifetimeDef;
use tether_core::credentials::{Credentials, OAuth2Tokens};

const DAY: i64 = 86_400;

/// Sets the declared access-token lifetime on tokens whose response carried no `expires_in`
/// (so the refresher refreshes them before they lapse instead of never).
pub fn default_expiry(lifetime: &LifetimeDef, now: i64, tokens: &mut OAuth2Tokens) {
    if tokens.expires_at.is_none()
        && let Some(secs) = lifetime.access_token_secs
    {
        tokens.expires_at = Some(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)));
    }
}

/// When the refresher must use the refresh token so that it does not expire unused: a tenth
/// of the idle lifetime before it would (between an hour and a week ahead). `None` when the
/// provider declares no idle expiry or there is no refresh token to keep alive.
pub fn keepalive_at(lifetime: &LifetimeDef, now: i64, credentials: &Credentials) -> Option<i64> {
    let idle_days = lifetime.refresh_token_idle_days?;
    let refreshable = matches!(credentials, Credentials::Oauth2(t) if t.refresh_token.is_some());
    if !refreshable {
        return None;
    }
    let idle = i64::try_from(idle_days).unwrap_or(i64::MAX / DAY) * DAY;
    let lead = (idle / 10).clamp(3600, 7 * DAY).min(idle / 2);
    Some(now.saturating_add(idle - lead))
}

/// When a grant given at `now` ends whatever is done (the provider's fixed lifetime).
pub fn grant_expires_at(lifetime: &LifetimeDef, now: i64) -> Option<i64> {
    let days = lifetime.refresh_token_max_days?;
    Some(now.saturating_add(i64::try_from(days).unwrap_or(i64::MAX / DAY) * DAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::AccessToken;

    fn tokens(refresh: bool, expires_at: Option<i64>) -> OAuth2Tokens {
        OAuth2Tokens {
            access_token: AccessToken::new("a"),
            refresh_token: refresh.then(|| tether_core::RefreshToken::new("r")),
            token_type: "Bearer".into(),
            scope: None,
            expires_at,
            extra: Default::default(),
        }
    }

    #[test]
    fn a_missing_expiry_takes_the_declared_lifetime() {
        let lifetime = LifetimeDef {
            access_token_secs: Some(7200),
            ..LifetimeDef::default()
        };
        let mut without = tokens(true, None);
        default_expiry(&lifetime, 1000, &mut without);
        assert_eq!(without.expires_at, Some(8200));
        let mut with = tokens(true, Some(50));
        default_expiry(&lifetime, 1000, &mut with);
        assert_eq!(with.expires_at, Some(50), "the provider's word wins");
        let mut undeclared = tokens(true, None);
        default_expiry(&LifetimeDef::default(), 1000, &mut undeclared);
        assert_eq!(undeclared.expires_at, None);
    }

    #[test]
    fn keepalive_comes_before_the_idle_expiry() {
        let lifetime = LifetimeDef {
            refresh_token_idle_days: Some(90),
            refresh_token_max_days: Some(365),
            ..LifetimeDef::default()
        };
        let oauth = Credentials::Oauth2(tokens(true, None));
        assert_eq!(keepalive_at(&lifetime, 0, &oauth), Some(83 * DAY));
        let one_day = LifetimeDef {
            refresh_token_idle_days: Some(1),
            ..LifetimeDef::default()
        };
        let at = keepalive_at(&one_day, 0, &oauth).unwrap();
        assert!(at > 0 && at < DAY, "{at}");
        let no_refresh = Credentials::Oauth2(tokens(false, None));
        assert_eq!(keepalive_at(&lifetime, 0, &no_refresh), None);
        assert_eq!(keepalive_at(&LifetimeDef::default(), 0, &oauth), None);
        assert_eq!(grant_expires_at(&lifetime, 10), Some(10 + 365 * DAY));
    }
}
