//! The seed OAuth emulator's memory: registered client, issued codes and tokens grouped in
//! families, counters, the injected fault and the demo deals.
//!
//! A "family" is everything issued from one authorization code; revoking a family (code
//! reuse, refresh-token reuse, revocation of a refresh token) kills all its tokens at once.
//! This module holds no locks across awaits (callers use a std mutex briefly) and never
//! stores a client secret anywhere but the config.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Serialize;
use url::Url;

use super::{RecordedTokenRequest, SeedOAuthConfig, TokenFault};
use crate::seed_data::{self, SeedRng};

/// Authorization codes live this long (RFC 6749 4.1.2 recommends at most 10 minutes).
pub(crate) const CODE_TTL: Duration = Duration::from_secs(60);

/// Used and expired codes are remembered this much longer, so a late replay is still
/// recognised as reuse and revokes what the code produced.
const CODE_MEMORY: Duration = Duration::from_secs(600);

/// One issued authorization code.
#[derive(Debug)]
pub(crate) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub scope: String,
    pub expires_at: Instant,
    pub family: u64,
    /// Set once exchanged; a second exchange is a reuse (RFC 6749 4.1.2).
    pub used: bool,
}

#[derive(Debug)]
struct AccessToken {
    family: u64,
    expires_at: Instant,
}

/// One issued refresh token.
#[derive(Debug)]
pub(crate) struct RefreshToken {
    pub family: u64,
    pub client_id: String,
    pub scope: String,
    /// False once rotated out; presenting it again is reuse (RFC 9700 4.14.2).
    pub current: bool,
}

/// A demo deal served by `/v1/deals`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Deal {
    pub id: u64,
    pub title: String,
    pub value: u64,
    pub stage: String,
}

/// Tokens handed out by one successful grant.
#[derive(Debug)]
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
}

/// Everything the emulator remembers.
#[derive(Debug)]
pub(crate) struct State {
    pub config: SeedOAuthConfig,
    /// The emulator's base URL, sent as `iss` on authorization responses (RFC 9207).
    pub issuer: Url,
    pub access_token_ttl: Duration,
    pub codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    revoked_families: std::collections::HashSet<u64>,
    next_family: u64,
    pub token_calls: u64,
    pub token_calls_by_grant: HashMap<String, u64>,
    pub reuse_events: u64,
    pub api_calls: u64,
    pub revoke_calls: u64,
    pub fault: Option<TokenFault>,
    pub last_token_request: Option<RecordedTokenRequest>,
    /// The parameters of the last authorization request, as sent.
    pub last_authorize_params: Vec<(String, String)>,
    pub deals: Vec<Deal>,
    /// When set, token responses name this instance URL instead of the emulator's own.
    pub instance_url_override: Option<serde_json::Value>,
    /// Every code, access token and refresh token handed out, revoked or not, so tests can
    /// check that none of them ever appears where it must not (logs, responses).
    pub issued: Vec<String>,
    /// True while token responses are held after issuing (see `hold_token_responses`).
    pub hold_responses: tokio::sync::watch::Sender<bool>,
    /// How many token responses are being held now.
    pub held_responses: usize,
    /// The API's rate limit, queued faults and arrivals (see `rate_limit.rs`).
    pub(crate) api_limits: super::rate_limit::ApiLimits,
    /// Whose each grant is, refresh tokens' idle clocks, the check endpoint's fault.
    pub accounts: super::account::Accounts,
}

/// A random alphanumeric string of `len` characters from the thread RNG.
pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

impl State {
    pub(crate) fn new(config: SeedOAuthConfig, issuer: Url) -> Self {
        Self {
            access_token_ttl: config.access_token_ttl,
            config,
            issuer,
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            revoked_families: std::collections::HashSet::new(),
            next_family: 1,
            token_calls: 0,
            token_calls_by_grant: HashMap::new(),
            reuse_events: 0,
            api_calls: 0,
            revoke_calls: 0,
            fault: None,
            last_token_request: None,
            last_authorize_params: Vec::new(),
            deals: seed_deals(),
            instance_url_override: None,
            issued: Vec::new(),
            hold_responses: tokio::sync::watch::Sender::new(false),
            held_responses: 0,
            api_limits: Default::default(),
            accounts: super::account::Accounts::default(),
        }
    }

    /// Issues a fresh authorization code for an approved request.
    pub(crate) fn issue_code(
        &mut self,
        client_id: &str,
        redirect_uri: &str,
        code_challenge: Option<&str>,
        scope: &str,
    ) -> String {
        // Expired codes are useless; dropping them keeps a long demo's memory flat.
        let now = Instant::now();
        self.codes
            .retain(|_, grant| grant.expires_at + CODE_MEMORY > now);
        let family = self.new_family();
        let code = random_token(32);
        self.issued.push(code.clone());
        self.codes.insert(
            code.clone(),
            CodeGrant {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.map(str::to_owned),
                scope: scope.to_owned(),
                expires_at: now + CODE_TTL,
                family,
                used: false,
            },
        );
        code
    }

    /// A new grant family: what one approved authorization starts.
    pub(crate) fn new_family(&mut self) -> u64 {
        let family = self.next_family;
        self.next_family += 1;
        self.accounts.assign(family);
        family
    }

    /// Issues an access token (and, when asked, a refresh token) in `family`.
    pub(crate) fn issue_tokens(
        &mut self,
        family: u64,
        client_id: &str,
        scope: &str,
        with_refresh: bool,
    ) -> Issued {
        let access_token = random_token(40);
        self.issued.push(access_token.clone());
        self.access_tokens.insert(
            access_token.clone(),
            AccessToken {
                family,
                expires_at: Instant::now() + self.access_token_ttl,
            },
        );
        let refresh_token = with_refresh.then(|| {
            let token = random_token(48);
            self.issued.push(token.clone());
            self.accounts.touch(&token);
            self.refresh_tokens.insert(
                token.clone(),
                RefreshToken {
                    family,
                    client_id: client_id.to_owned(),
                    scope: scope.to_owned(),
                    current: true,
                },
            );
            token
        });
        Issued {
            access_token,
            refresh_token,
            expires_in: self.access_token_ttl.as_secs(),
            scope: scope.to_owned(),
        }
    }

    /// Kills every token of `family`; later presentations are invalid.
    pub(crate) fn revoke_family(&mut self, family: u64) {
        self.revoked_families.insert(family);
        self.access_tokens.retain(|_, t| t.family != family);
        self.refresh_tokens.retain(|_, t| t.family != family);
    }

    pub(crate) fn live_refresh_tokens(&self) -> usize {
        self.refresh_tokens
            .values()
            .filter(|t| t.current && !self.revoked_families.contains(&t.family))
            .count()
    }

    pub(crate) fn is_family_revoked(&self, family: u64) -> bool {
        self.revoked_families.contains(&family)
    }

    /// True when `token` is a known, unexpired access token of a live family.
    pub(crate) fn access_token_valid(&self, token: &str) -> bool {
        self.access_tokens.get(token).is_some_and(|t| {
            t.expires_at > Instant::now() && !self.revoked_families.contains(&t.family)
        })
    }

    /// The grant family of a live access token.
    pub(crate) fn access_token_family(&self, token: &str) -> Option<u64> {
        self.access_token_valid(token)
            .then(|| self.access_tokens.get(token).map(|t| t.family))
            .flatten()
    }

    /// Revokes one access token (RFC 7009 2.1: only that token).
    pub(crate) fn revoke_access_token(&mut self, token: &str) -> bool {
        self.access_tokens.remove(token).is_some()
    }

    pub(crate) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for token in self.access_tokens.values_mut() {
            token.expires_at = now;
        }
    }

    pub(crate) fn revoke_all(&mut self) {
        let families: Vec<u64> = self
            .access_tokens
            .values()
            .map(|t| t.family)
            .chain(self.refresh_tokens.values().map(|t| t.family))
            .chain(self.codes.values().map(|c| c.family))
            .collect();
        self.revoked_families.extend(families);
        self.access_tokens.clear();
        self.refresh_tokens.clear();
    }
}

/// The handful of deals `GET /v1/deals` starts with; the same on every run.
fn seed_deals() -> Vec<Deal> {
    const STAGES: &[&str] = &["lead", "qualified", "proposal", "negotiation", "won"];
    let mut rng = SeedRng::new(0x5eed_0a07);
    (1..=5)
        .map(|id| {
            let person = seed_data::person(&mut rng);
            Deal {
                id,
                title: format!("{} for {}", rng.pick(seed_data::DEAL_WORDS), person.company),
                value: rng.range(5, 250) * 1000,
                stage: rng.pick(STAGES).to_owned(),
            }
        })
        .collect()
}
