//! The commands that take access away: `tether keys revoke-first-run` (the API key made on
//! first run is never accepted again) and `tether console sign-out-all` (every console session
//! ends). Both act on the database, so they reach every instance that serves it.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use tether_store::AuthStore;

use crate::config;
use crate::serve::{end_sessions_of, open_store};

#[derive(Subcommand)]
pub enum ConsoleCommand {
    /// End every console session, on every instance (operators must sign in again).
    SignOutAll,
}

pub async fn console(config_path: &Path, command: ConsoleCommand) -> anyhow::Result<()> {
    match command {
        ConsoleCommand::SignOutAll => {
            let file = config::load(config_path)?;
            let store = open_store(&file).await?;
            let ended = store
                .end_all_console_sessions()
                .await
                .context("ending the console sessions")?;
            println!("ended {ended} console session(s); operators must sign in again");
            Ok(())
        }
    }
}

/// Revokes the first-run API key (marked, never deleted, so no restart re-creates or accepts
/// it) and ends the console sessions it signed in.
pub async fn revoke_first_run(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    let store = open_store(&file).await?;
    let revoked = store
        .revoke_stored_api_keys(tether_core::unix_time::now())
        .await
        .context("revoking the first-run API key")?;
    if revoked.is_empty() {
        let stored = store.stored_api_keys().await.context("reading API keys")?;
        if stored.is_empty() {
            anyhow::bail!("this database has no first-run API key");
        }
        println!("the first-run API key was already revoked");
        return Ok(());
    }
    end_sessions_of(&store, &revoked).await?;
    println!(
        "revoked the first-run API key: it is never accepted again. Restart running instances \
         (they hold API keys in memory); they need [api] keys to start."
    );
    Ok(())
}
