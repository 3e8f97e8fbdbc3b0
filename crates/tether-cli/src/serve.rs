//! `tether serve`: opens the database, the vault and the API keys (creating what a first run
//! needs), and serves the gateway until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tether_core::catalog::Catalog;
use tether_core::vault::Vault;
use tether_server::{ApiKeys, Gateway};
use tether_store::{AnyStore, AuthStore, Store};

use crate::config::{self, FileConfig};

/// The key file used when `TETHER_ENCRYPTION_KEYS` is not set.
pub const KEY_FILE: &str = "tether.keys";

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    let store = open_store(&file).await?;
    let vault = open_vault(true)?;
    // Before anything is served: a key removed while it still seals something is refused.
    tether_server::rotation::check_keyring(&store, &vault).await?;
    let catalog = Catalog::embedded().context("loading the built-in catalog")?;
    let integrations = file.integrations(&catalog)?;
    let api_keys = api_keys(&file, &store).await?;
    let limits = file.server.limits()?;
    let threads = file.server.threads()?;
    let listeners = tether_server::bind_listeners(file.server.listen, threads)
        .with_context(|| format!("cannot listen on {}", file.server.listen))?;
    let bound = listeners[0]
        .local_addr()
        .context("reading the bound address")?;
    let mut gateway_config = file.gateway(bound)?;
    if gateway_config.proxy_shared_budgets && store.backend() == tether_store::Backend::Sqlite {
        anyhow::bail!(
            "[proxy] shared_budgets = true needs PostgreSQL (budgets shared by instances live \
             in their one database); on SQLite, with one instance, leave it out"
        );
    }
    // Held (locked) until serve returns; see instance_identity.
    let (instance_id, _instance_lock) = instance_identity();
    gateway_config.instance_id = Some(instance_id);
    let public_url = gateway_config.public_url.clone();
    let configured = integrations.len();
    let gateway = Gateway::builder(store, vault, gateway_config)
        .catalog(catalog)
        .integrations(integrations)
        .api_keys(api_keys)
        .build()?;
    let sealing = gateway
        .follow_sealing_key()
        .await
        .context("reading the announced sealing key")?;
    if !gateway.holds_key(&sealing) {
        anyhow::bail!(
            "the database names encryption key {sealing} as the sealing key and it is not \
             configured here: add it (first) to the keys"
        );
    }
    let integration_count = configured
        + gateway
            .load_stored_integrations()
            .await
            .context("loading the integrations created through the API")?;
    tracing::info!(listen = %bound, %public_url, integrations = integration_count, threads, "tether is serving");
    println!("Tether is listening on {public_url}");
    if integration_count == 0 {
        tracing::warn!(
            "no integrations are configured; add [integrations.NAME] to tether.toml or PUT /v1/integrations/NAME"
        );
    }
    // The refresher, the purge and the webhook worker run beside the server and stop after it.
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let mut background = gateway.spawn_background(background_stopped.clone());
    #[cfg(unix)]
    let background_stopped_for_keys = background_stopped.clone();
    if let Some(address) = file.server.metrics_listen {
        background.push(serve_metrics(&gateway, address, background_stopped).await?);
    }
    #[cfg(unix)]
    background.push(reload_keys_on_sighup(
        &gateway,
        background_stopped_for_keys,
    )?);
    let served =
        tether_server::serve_per_core(listeners, gateway.service(), limits, shutdown_signal())
            .await
            .context("serving");
    let _ = stop_background.send(true);
    for task in background {
        let _ = task.await;
    }
    // Only now: connections the background work used may belong to a serving thread.
    served?.finish().await;
    tracing::info!("tether stopped");
    Ok(())
}

/// Re-reads the key file on SIGHUP, so a rotated key is used without a restart.
#[cfg(unix)]
fn reload_keys_on_sighup<S: Store>(
    gateway: &Gateway<S>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let gateway = gateway.clone();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        break;
                    }
                    match gateway.reload_keys() {
                        Ok(ids) => tracing::info!(keys = ?ids, "SIGHUP: encryption keys reloaded"),
                        Err(err) => tracing::warn!(error = %err, "SIGHUP: encryption keys not reloaded"),
                    }
                }
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
    }))
}

/// Serves `GET /metrics` (no token) on the operator's private address until `stop` turns true.
async fn serve_metrics<S: Store>(
    gateway: &Gateway<S>,
    address: std::net::SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on server.metrics_listen {address}"))?;
    tracing::info!(listen = %address, "metrics are served on their own address");
    let router = gateway.metrics_router();
    let limits = tether_server::ServerLimits::default();
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(err) = tether_server::serve(listener, router, limits, stopped).await {
            tracing::error!(error = %err, "the metrics listener failed");
        }
    }))
}

/// Opens the database named by the configuration (SQLite or PostgreSQL, by the URL's
/// scheme) and applies migrations. A malformed URL, an unreachable server or a database a
/// newer Tether migrated fails here, with the cause; the URL is shown without its password.
pub async fn open_store(file: &FileConfig) -> anyhow::Result<AnyStore> {
    let url = &file.database.url;
    AnyStore::connect(url, &file.database.store_options())
        .await
        .with_context(|| format!("opening the database {}", config::redacted_url(url)))
}

/// The gateway as configured, without listening: for maintenance commands, which must find
/// the existing keys rather than create new ones.
pub async fn gateway_for_commands(file: &FileConfig) -> anyhow::Result<Gateway<AnyStore>> {
    let store = open_store(file).await?;
    let vault = open_vault(false)?;
    let catalog = Catalog::embedded().context("loading the built-in catalog")?;
    let integrations = file.integrations(&catalog)?;
    let config = file.gateway(file.server.listen)?;
    let gateway = Gateway::builder(store, vault, config)
        .catalog(catalog)
        .integrations(integrations)
        .build()?;
    // A command that writes (a refresh) seals under the announced key, as `serve` does.
    gateway
        .follow_sealing_key()
        .await
        .context("reading the announced sealing key")?;
    gateway
        .load_stored_integrations()
        .await
        .context("loading the integrations created through the API")?;
    Ok(gateway)
}

/// The vault: `TETHER_ENCRYPTION_KEYS`, or the key file (created with mode 0600 on first run
/// when `create` is set).
pub fn open_vault(create: bool) -> anyhow::Result<Vault> {
    match std::env::var("TETHER_ENCRYPTION_KEYS") {
        Ok(spec) if !spec.trim().is_empty() => Vault::from_spec(&spec)
            .context("TETHER_ENCRYPTION_KEYS (make one with `tether keys generate`)"),
        _ => {
            let path = PathBuf::from(KEY_FILE);
            let existed = path.exists();
            if !existed && !create {
                anyhow::bail!(
                    "no key file {KEY_FILE} here and TETHER_ENCRYPTION_KEYS is not set: run this where tether serve runs"
                );
            }
            let vault = Vault::load_or_create_key_file(&path)?;
            if !existed {
                tracing::info!(
                    path = KEY_FILE,
                    "created a new encryption key file (mode 0600); back it up: without it stored credentials cannot be opened"
                );
            }
            Ok(vault)
        }
    }
}

/// Configured keys, else keys made earlier, else a new key printed once.
///
/// Configured keys replace the first-run key for good: it is revoked (kept, marked) here, so
/// removing `[api] keys` later does not bring it back. With no key configured and every stored
/// key revoked, serving refuses to start rather than mint a key nobody asked for.
///
/// Runs before the gateway state (and its clock) exists; its times are stamps, not decisions.
async fn api_keys(file: &FileConfig, store: &AnyStore) -> anyhow::Result<ApiKeys> {
    let configured = file.api_keys()?;
    if !configured.is_empty() {
        let revoked = store
            .revoke_stored_api_keys(tether_core::unix_time::now())
            .await
            .context("revoking the first-run API key")?;
        if !revoked.is_empty() {
            end_sessions_of(store, &revoked).await?;
            tracing::warn!(
                "[api] keys is set: the first-run API key was revoked and will never be accepted again"
            );
        }
        return Ok(ApiKeys::from_keys(configured.iter()));
    }
    let stored = store.stored_api_keys().await.context("reading API keys")?;
    let live: Vec<&str> = stored
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.key_hash.as_str())
        .collect();
    if !live.is_empty() {
        return Ok(ApiKeys::default().with_hex_hashes(live));
    }
    if !stored.is_empty() {
        anyhow::bail!(
            "the first-run API key was revoked and no API key is configured: set [api] keys in tether.toml (or TETHER_API_KEY)"
        );
    }
    let key = tether_core::random::prefixed_token("tether_sk_");
    let hash = tether_store::TokenHash::of(&key);
    store
        .insert_api_key_hash(&hash, "first run", tether_core::unix_time::now())
        .await
        .context("storing the new API key")?;
    // Printed once, on stdout, so it can be captured; only its hash is kept.
    println!("Created an API key (shown only this once; store it in your app's secrets):");
    println!("TETHER_API_KEY={key}");
    Ok(ApiKeys::default().with_hex_hashes([hash.as_str()]))
}

/// Ends the console sessions signed in with the stored keys of these hashes.
pub async fn end_sessions_of(
    store: &AnyStore,
    key_hashes: &[tether_store::TokenHash],
) -> anyhow::Result<()> {
    for hash in key_hashes {
        if let Some(fingerprint) = ApiKeys::fingerprint_of_hex_hash(hash) {
            store
                .end_console_sessions_of_key(&fingerprint)
                .await
                .context("ending the revoked key's console sessions")?;
        }
    }
    Ok(())
}

/// Where this instance keeps its owner id for refresh leases and webhook claims.
pub const INSTANCE_FILE: &str = "tether.instance";

/// This instance's owner id, and the locked file that holds it (keep it open while serving).
///
/// The id lives in `tether.instance` under an exclusive lock held for the life of the process,
/// so it is reused only once the process that held it has died (the kernel drops the lock
/// even on SIGKILL): a restarted instance then takes back at once the refresh leases and
/// webhook claims it held, instead of waiting for them to expire. A second instance in the
/// same directory cannot take the lock and runs under a fresh random id instead.
fn instance_identity() -> (String, Option<std::fs::File>) {
    let random = || tether_core::random::prefixed_token("inst_");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let Ok(mut file) = options.open(INSTANCE_FILE) else {
        return (random(), None);
    };
    if file.try_lock().is_err() {
        tracing::warn!("another tether runs in this directory; using a fresh instance id");
        return (random(), None);
    }
    use std::io::{Read, Seek, Write};
    let mut id = String::new();
    let _ = file.read_to_string(&mut id);
    let id = id.trim().to_owned();
    let valid = id.starts_with("inst_") && id.len() <= 80;
    if valid {
        return (id, Some(file));
    }
    let id = random();
    let written = file.set_len(0).is_ok()
        && file.rewind().is_ok()
        && file.write_all(id.as_bytes()).is_ok()
        && file.sync_all().is_ok();
    if !written {
        tracing::warn!(path = INSTANCE_FILE, "could not record the instance id");
    }
    (id, Some(file))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
