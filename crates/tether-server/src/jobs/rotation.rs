//! Key rotation: re-seals every sealed value in the store under a new key, and proves that
//! none is left under an older one.
//!
//! [`rotate`] first announces the new key in the database (every instance seals under it from
//! then on, or refuses to seal; see `sealing_key`), waits until every instance has heard, then
//! re-seals, and counts what each key seals again after the pass: it reports done only when no
//! value anywhere is left under another key. [`check_keyring`] is the other half, at start-up:
//! a key removed from the configuration while it still seals a value is refused, by name.
//!
//! Sealed values live in four places, each bound to its row by a vault context: connections'
//! credentials, API-managed integrations' configurations, the PKCE verifiers of OAuth flows
//! in progress, and the key that signs MCP authorization requests. Each is rewritten by compare-and-swap (a connection by its version, the others
//! by their old bytes), so a refresh, an integration PUT or a finished flow racing the
//! rotation is never overwritten with a stale value; a lost race is retried on a fresh read.
//! Values already under the primary key are left alone, so an interrupted rotation can simply
//! run again. Once it has finished, the old key can be removed from every instance.
//!
//! What is not in the database needs nothing: a console sign-in cookie sealed under a removed
//! key no longer opens, which signs that operator out.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use tether_core::credentials;
use tether_core::unix_time;
use tether_core::vault::Vault;
use tether_store::{Sealed, Store, TokenHash};

use crate::connect::verifier_context;
use crate::state::integrations::config_context;

/// Passes over every sealed value before a rotation gives up on values that keep appearing
/// under an older key.
const PASSES: usize = 5;

/// Rows read per page.
const PAGE: u32 = 500;

/// Attempts per row before giving up on one that keeps changing.
const RETRIES: usize = 5;

/// What one rotation did, per kind of value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// (re-sealed, already under the primary key)
    pub connections: (u64, u64),
    pub integrations: (u64, u64),
    pub flows: (u64, u64),
    pub mcp_signing_key: (u64, u64),
}

impl Rotated {
    /// Adds what a later pass re-sealed (what was already under the key is the first pass's).
    fn add_resealed(&mut self, later: Rotated) {
        self.connections.0 += later.connections.0;
        self.integrations.0 += later.integrations.0;
        self.flows.0 += later.flows.0;
        self.mcp_signing_key.0 += later.mcp_signing_key.0;
    }
}

/// Announces `vault`'s primary key as the sealing key, waits `grace` for every instance to
/// hear it, and re-seals until no value anywhere remains under another key (counted in the
/// database after each pass). `progress` is called once per value looked at.
///
/// Stamps with the system clock, not a gateway state's `Clock`: `tether keys rotate` runs it
/// once from the command line, with no gateway state, and the stamps decide nothing.
pub async fn rotate<S: Store>(
    store: &S,
    vault: &Vault,
    grace: Duration,
    mut progress: impl FnMut(),
) -> anyhow::Result<Rotated> {
    let key = vault.primary_key_id();
    store
        .announce_sealing_key(&key, unix_time::now())
        .await
        .context("announcing the new sealing key")?;
    vault.announce(&key);
    // Instances hear a NOTIFY at once, and poll in any case; a value one of them sealed under
    // the old key in this moment is caught by the count after the pass.
    tokio::time::sleep(grace).await;
    let mut done: Option<Rotated> = None;
    let mut left = 0;
    for _ in 0..PASSES {
        let pass = reseal_all(store, vault, &mut progress).await?;
        match &mut done {
            Some(done) => done.add_resealed(pass),
            None => done = Some(pass),
        }
        let announced = store.sealing_key().await?;
        if announced.as_deref() != Some(key.as_str()) {
            anyhow::bail!(
                "another rotation announced key {} meanwhile; run tether keys rotate again",
                announced.unwrap_or_default()
            );
        }
        left = under_other_keys(store, &key).await?;
        if left == 0 {
            return Ok(done.unwrap_or_default());
        }
        tokio::time::sleep(grace).await;
    }
    anyhow::bail!(
        "{left} value(s) are still sealed under an older key after {PASSES} passes (instances \
         keep sealing under it: do they all have key {key}?); keep the older keys and run \
         tether keys rotate again"
    )
}

/// How many sealed values name another key than `key_id`.
async fn under_other_keys<S: Store>(store: &S, key_id: &str) -> anyhow::Result<u64> {
    Ok(store
        .sealed_value_counts()
        .await?
        .iter()
        .filter(|c| c.key_id != key_id)
        .map(|c| c.count)
        .sum())
}

/// What `tether keys status` shows: each key id that is configured or seals something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub key_id: String,
    /// Whether this instance's keys include it.
    pub configured: bool,
    /// Whether the database announces it as the sealing key.
    pub sealing: bool,
    /// How many values it seals, all columns together.
    pub sealed_values: u64,
}

/// Every key id configured in `vault` (in its order), then any other the database names.
pub async fn key_status<S: Store>(store: &S, vault: &Vault) -> anyhow::Result<Vec<KeyStatus>> {
    let announced = store.sealing_key().await?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for count in store.sealed_value_counts().await? {
        *counts.entry(count.key_id).or_default() += count.count;
    }
    let configured = vault.key_ids();
    let mut ids = configured.clone();
    for id in counts.keys().chain(announced.iter()) {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    Ok(ids
        .into_iter()
        .map(|key_id| KeyStatus {
            configured: configured.contains(&key_id),
            sealing: announced.as_deref() == Some(key_id.as_str()),
            sealed_values: counts.get(&key_id).copied().unwrap_or(0),
            key_id,
        })
        .collect())
}

/// Refuses keys that cannot serve this database: a key that still seals values and is not
/// configured (removed before a rotation finished), named with its count, in one line.
pub async fn check_keyring<S: Store>(store: &S, vault: &Vault) -> anyhow::Result<()> {
    for status in key_status(store, vault).await? {
        if !status.configured && status.sealed_values > 0 {
            anyhow::bail!(
                "encryption key {} still seals {} value(s) and is not configured: put it back \
                 among the keys (run tether keys rotate, and remove it only once tether keys \
                 status shows 0)",
                status.key_id,
                status.sealed_values
            );
        }
    }
    Ok(())
}

/// How many sealed values there are to look at (for a progress bar).
pub async fn count<S: Store>(store: &S) -> anyhow::Result<u64> {
    let mut total = store.list_integrations().await?.len() as u64;
    let mut cursor: Option<String> = None;
    loop {
        let page = store.connections_after(cursor.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        total += page.len() as u64;
    }
    let mut cursor: Option<TokenHash> = None;
    loop {
        let page = store.flow_states_after(cursor.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.state_hash.clone());
        total += page.len() as u64;
    }
    if store.stored_mcp_signing_key().await?.is_some() {
        total += 1;
    }
    Ok(total)
}

/// Re-seals everything under `vault`'s sealing key (one pass); `progress` is called once per
/// value.
pub async fn reseal_all<S: Store>(
    store: &S,
    vault: &Vault,
    mut progress: impl FnMut(),
) -> anyhow::Result<Rotated> {
    let mut done = Rotated::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.connections_after(cursor.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        for row in page {
            count_into(
                &mut done.connections,
                reseal_connection(store, vault, row).await?,
            );
            progress();
        }
    }
    for (key, sealed) in store.list_integrations().await? {
        count_into(
            &mut done.integrations,
            reseal_integration(store, vault, &key, sealed).await?,
        );
        progress();
    }
    let mut cursor: Option<TokenHash> = None;
    loop {
        let page = store.flow_states_after(cursor.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.state_hash.clone());
        for flow in page {
            count_into(
                &mut done.flows,
                reseal_flow(store, vault, &flow.state_hash, &flow.pkce_verifier).await?,
            );
            progress();
        }
    }
    if let Some(sealed) = store.stored_mcp_signing_key().await? {
        count_into(
            &mut done.mcp_signing_key,
            reseal_mcp_signing_key(store, vault, &sealed).await?,
        );
        progress();
    }
    Ok(done)
}

fn count_into(tally: &mut (u64, u64), resealed: bool) {
    if resealed {
        tally.0 += 1;
    } else {
        tally.1 += 1;
    }
}

async fn reseal_connection<S: Store>(
    store: &S,
    vault: &Vault,
    mut row: tether_store::ConnectionRow,
) -> anyhow::Result<bool> {
    let context = credentials::context(&row.id);
    for _ in 0..RETRIES {
        let Some(sealed) = vault.reseal(&context, &row.credentials).with_context(|| {
            format!(
                "opening connection {} (is every old key still configured?)",
                row.id
            )
        })?
        else {
            return Ok(false);
        };
        let now = unix_time::now();
        if store
            .reseal_credentials(
                &row.id,
                row.credentials_version,
                &Sealed::from_bytes(sealed),
                now,
            )
            .await?
        {
            return Ok(true);
        }
        match store.get_connection(&row.id).await? {
            Some(fresh) => row = fresh,
            None => return Ok(false),
        }
    }
    anyhow::bail!(
        "connection {} kept changing while re-encrypting it; run again",
        row.id
    )
}

async fn reseal_integration<S: Store>(
    store: &S,
    vault: &Vault,
    key: &str,
    mut sealed: Sealed,
) -> anyhow::Result<bool> {
    let context = config_context(key);
    for _ in 0..RETRIES {
        let Some(resealed) = vault.reseal(&context, &sealed).with_context(|| {
            format!("opening integration {key} (is every old key still configured?)")
        })?
        else {
            return Ok(false);
        };
        let resealed = Sealed::from_bytes(resealed);
        if store
            .reseal_integration(key, &sealed, &resealed, unix_time::now())
            .await?
        {
            return Ok(true);
        }
        match store
            .list_integrations()
            .await?
            .into_iter()
            .find(|(k, _)| k == key)
        {
            Some((_, fresh)) => sealed = fresh,
            None => return Ok(false),
        }
    }
    anyhow::bail!("integration {key} kept changing while re-encrypting it; run again")
}

async fn reseal_flow<S: Store>(
    store: &S,
    vault: &Vault,
    state_hash: &TokenHash,
    sealed: &Sealed,
) -> anyhow::Result<bool> {
    // Flows without PKCE have nothing sealed.
    if sealed.is_empty() {
        return Ok(false);
    }
    let context = verifier_context(state_hash);
    let resealed = match vault.reseal(&context, sealed) {
        Ok(Some(resealed)) => Sealed::from_bytes(resealed),
        Ok(None) => return Ok(false),
        Err(err) => {
            return Err(err).context(
                "opening an OAuth flow's PKCE verifier (is every old key still configured?)",
            );
        }
    };
    // A flow is never rewritten, only consumed: a lost race means it finished meanwhile.
    Ok(store
        .reseal_flow_verifier(state_hash, sealed, &resealed)
        .await?)
}

async fn reseal_mcp_signing_key<S: Store>(
    store: &S,
    vault: &Vault,
    sealed: &Sealed,
) -> anyhow::Result<bool> {
    let resealed = match vault.reseal(crate::mcp_auth::SIGNING_KEY_CONTEXT, sealed) {
        Ok(Some(resealed)) => Sealed::from_bytes(resealed),
        Ok(None) => return Ok(false),
        Err(err) => {
            return Err(err).context(
                "opening the MCP request-signing key (is every old key still configured?)",
            );
        }
    };
    // The key itself never changes once written, so a lost race means another rotation
    // re-sealed it meanwhile; the count after the pass tells.
    Ok(store.reseal_mcp_signing_key(sealed, &resealed).await?)
}
