//! The administrative subcommands: catalog and integration listings, connection inspection,
//! key generation and migrations. They read the same configuration as `serve`.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use tether_core::catalog::Catalog;
use tether_core::unix_time::rfc3339;
use tether_core::vault::Vault;
use tether_store::{ConnectionFilter, Store};

use crate::config;
use crate::serve::open_store;

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// List connections (no secrets).
    List {
        /// Only this end user's connections.
        #[arg(long)]
        end_user: Option<String>,
    },
    /// Show one connection (no secrets).
    Show { id: String },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new encryption key entry (`id:base64`) for TETHER_ENCRYPTION_KEYS.
    Generate,
}

pub fn providers_list() -> anyhow::Result<()> {
    let catalog = Catalog::embedded().context("loading the built-in catalog")?;
    println!("{:<20} {:<28} AUTH MODE", "ID", "NAME");
    for provider in catalog.iter() {
        println!(
            "{:<20} {:<28} {}",
            provider.id,
            provider.display_name,
            provider.auth_mode.as_str()
        );
    }
    Ok(())
}

pub fn integrations_list(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    let catalog = Catalog::embedded().context("loading the built-in catalog")?;
    let integrations = file.integrations(&catalog)?;
    if integrations.is_empty() {
        println!("No integrations configured (add [integrations.NAME] to tether.toml).");
        return Ok(());
    }
    println!("{:<20} {:<20} AUTH MODE", "KEY", "PROVIDER");
    for integration in integrations {
        println!(
            "{:<20} {:<20} {}",
            integration.key,
            integration.provider.id,
            integration.auth_mode().as_str()
        );
    }
    Ok(())
}

pub async fn connections(config_path: &Path, command: ConnectionsCommand) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    let store = open_store(&file).await?;
    match command {
        ConnectionsCommand::List { end_user } => {
            let rows = store
                .list_connections(&ConnectionFilter {
                    end_user_id: end_user,
                    limit: 1000,
                    ..ConnectionFilter::default()
                })
                .await?;
            println!(
                "{:<38} {:<16} {:<24} {:<13} EXPIRES",
                "ID", "INTEGRATION", "END USER", "STATUS"
            );
            for row in rows {
                println!(
                    "{:<38} {:<16} {:<24} {:<13} {}",
                    row.id,
                    row.integration,
                    row.end_user_id,
                    row.status.as_str(),
                    row.access_expires_at
                        .map(rfc3339)
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        ConnectionsCommand::Show { id } => {
            let row = store
                .get_connection(&id)
                .await?
                .with_context(|| format!("no connection has id {id}"))?;
            let view = serde_json::json!({
                "id": row.id,
                "integration": row.integration,
                "end_user_id": row.end_user_id,
                "status": row.status.as_str(),
                "expires_at": row.access_expires_at.map(rfc3339),
                "metadata": serde_json::from_str::<serde_json::Value>(&row.metadata).unwrap_or_default(),
                "last_error": row.last_error,
                "created_at": rfc3339(row.created_at),
                "updated_at": rfc3339(row.updated_at),
            });
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
    }
    Ok(())
}

pub async fn keys(_config_path: &Path, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => println!("{}", Vault::generate_key_entry()),
    }
    Ok(())
}

pub async fn migrate(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    open_store(&file).await?;
    println!("database is up to date: {}", file.database.url);
    Ok(())
}
