//! Key rotation: re-seals every sealed value in the store under the vault's primary key.
//!
//! Sealed values live in three places, each bound to its row by a vault context: connections'
//! credentials, API-managed integrations' configurations, and the PKCE verifiers of OAuth flows
//! in progress. Each is rewritten by compare-and-swap (a connection by its version, the others
//! by their old bytes), so a refresh, an integration PUT or a finished flow racing the
//! rotation is never overwritten with a stale value; a lost race is retried on a fresh read.
//! Values already under the primary key are left alone, so an interrupted rotation can simply
//! run again. Once it has finished, the old key can be removed from every instance.

use anyhow::Context;
use tether_core::credentials;
use tether_core::unix_time;
use tether_core::vault::Vault;
use tether_store::Store;

use crate::connect::verifier_context;
use crate::integrations::config_context;

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
    let mut cursor: Option<String> = None;
    loop {
        let page = store.flow_states_after(cursor.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.state_hash.clone());
        total += page.len() as u64;
    }
    Ok(total)
}

/// Re-seals everything under `vault`'s primary key; `progress` is called once per value.
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
    let mut cursor: Option<String> = None;
    loop {
        let page = store.flow_states_after(cursor.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.state_hash.clone());
        for flow in page {
            count_into(
                &mut done.flows,
                reseal_flow(store, vault, &flow.state_hash, flow.pkce_verifier).await?,
            );
            progress();
        }
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
            .reseal_credentials(&row.id, row.credentials_version, &sealed, now)
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
    mut sealed: Vec<u8>,
) -> anyhow::Result<bool> {
    let context = config_context(key);
    for _ in 0..RETRIES {
        let Some(resealed) = vault.reseal(&context, &sealed).with_context(|| {
            format!("opening integration {key} (is every old key still configured?)")
        })?
        else {
            return Ok(false);
        };
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
    state_hash: &str,
    sealed: Vec<u8>,
) -> anyhow::Result<bool> {
    // Flows without PKCE have nothing sealed.
    if sealed.is_empty() {
        return Ok(false);
    }
    let context = verifier_context(state_hash);
    let resealed = match vault.reseal(&context, &sealed) {
        Ok(Some(resealed)) => resealed,
        Ok(None) => return Ok(false),
        Err(err) => {
            return Err(err).context(
                "opening an OAuth flow's PKCE verifier (is every old key still configured?)",
            );
        }
    };
    // A flow is never rewritten, only consumed: a lost race means it finished meanwhile.
    Ok(store
        .reseal_flow_verifier(state_hash, &sealed, &resealed)
        .await?)
}
