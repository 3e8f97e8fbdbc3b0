//! The administrative subcommands: catalog and integration listings, connection inspection,
//! key generation and migrations. They read the same configuration as `serve`.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use tether_core::catalog::Catalog;
use tether_core::unix_time::rfc3339;
use tether_core::vault::Vault;
use tether_server::rotation;
use tether_store::{ConnectionFilter, Store};

use crate::config;
use crate::serve::{KEY_FILE, gateway_for_commands, open_store, open_vault};

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
    /// Refresh a connection's tokens now.
    Refresh { id: String },
    /// Revoke a connection at the provider where possible, then delete it.
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new encryption key entry (`id:base64`) for TETHER_ENCRYPTION_KEYS.
    Generate,
    /// Re-encrypt every sealed value (credentials, integrations, flows) under a new key. With
    /// the key file, a new key is added at its top; a running `tether serve` that uses the same
    /// file picks it up by itself. With TETHER_ENCRYPTION_KEYS, give every instance the new key
    /// first (old keys after it), restart them, then run this with the same keys. The new key
    /// is announced in the database first (every instance seals under it from then on), and
    /// this ends only once no value is left under an older key.
    Rotate,
    /// Revoke the API key made on first run, for good (also when `[api] keys` is removed
    /// later); its console sessions end. Set `[api] keys` first: without a key, serve refuses
    /// to start.
    RevokeFirstRun,
    /// Which keys are configured, which one the database names as the sealing key, and how
    /// many stored values each key still seals (a key that seals none can be removed).
    Status,
}

#[derive(Subcommand)]
pub enum ProvidersCommand {
    /// List every provider: id, name, auth mode.
    List,
    /// What one provider needs: the operator's settings, the end user's fields, the quirks
    /// Tether handles, and where its facts come from.
    Show { id: String },
}

pub fn providers(command: ProvidersCommand) -> anyhow::Result<()> {
    let catalog = Catalog::embedded().context("loading the built-in catalog")?;
    match command {
        ProvidersCommand::List => {
            let mut out = format!("{:<24} {:<42} AUTH MODE\n", "ID", "NAME");
            for provider in catalog.iter() {
                out.push_str(&format!(
                    "{:<24} {:<42} {}\n",
                    provider.id,
                    provider.display_name,
                    provider.auth_mode.as_str()
                ));
            }
            write_out(&out)
        }
        ProvidersCommand::Show { id } => {
            let Some(provider) = catalog.get(&id) else {
                anyhow::bail!(
                    "no provider {id:?} in the catalog (tether providers list shows them)"
                );
            };
            write_out(&provider_details(provider))
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// `providers show`: plain text, one section per audience.
fn provider_details(provider: &tether_core::catalog::ProviderDef) -> String {
    use tether_core::catalog::describe::Item;
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(
        &[
            &provider.id,
            ": ",
            &provider.display_name,
            " (",
            provider.auth_mode.as_str(),
            ")",
        ]
        .concat(),
    );
    if !provider.description.is_empty() {
        line(&provider.description);
    }
    let show = |items: Vec<Item>, none: &str| -> Vec<String> {
        if items.is_empty() {
            return vec![["  ", none].concat()];
        }
        items
            .into_iter()
            .map(|i| {
                let mut text = ["  ", &i.name].concat();
                if !i.label.is_empty() {
                    text.push_str(": ");
                    text.push_str(&i.label);
                }
                if let Some(default) = &i.default {
                    text.push_str(" (default ");
                    text.push_str(default);
                    text.push(')');
                } else if !i.required {
                    text.push_str(" (optional)");
                }
                if i.secret {
                    text.push_str(" [secret]");
                }
                text
            })
            .collect()
    };
    line("");
    line("The operator configures ([integrations.KEY], with provider = this id):");
    for text in show(provider.operator_items(), "nothing else") {
        line(&text);
    }
    line("");
    line("The end user enters on the Connect page:");
    let none = match provider.auth_mode {
        tether_core::catalog::AuthMode::Oauth2 => "nothing: they sign in at the provider",
        tether_core::catalog::AuthMode::Oauth2ClientCredentials => {
            "nothing: the integration's own client connects"
        }
        _ => "nothing",
    };
    for text in show(provider.end_user_items(), none) {
        line(&text);
    }
    line("");
    line("Quirks handled:");
    let quirks = provider.quirks();
    if quirks.is_empty() {
        line("  none");
    }
    for quirk in quirks {
        line(&["  - ", &quirk.replace('`', "")].concat());
    }
    line("");
    line(
        &[
            "Documentation: ",
            provider.docs_url.as_deref().unwrap_or("none given"),
        ]
        .concat(),
    );
    line("");
    for text in verification_lines(provider) {
        line(&text);
    }
    out
}

/// The file's `[verified]` record and what the dated catalog check finds today (a sunset
/// endpoint, a stale record), so an operator sees how far to trust the facts above.
fn verification_lines(provider: &tether_core::catalog::ProviderDef) -> Vec<String> {
    use tether_core::catalog::documented::{self, Severity};
    let mut lines = Vec::new();
    match &provider.verified {
        None => lines.push("Verified: never".to_owned()),
        Some(v) => {
            lines.push(["Verified: ", &v.on, ", against:"].concat());
            lines.extend(v.sources.iter().map(|s| ["  ", s.as_str()].concat()));
            if !v.cross_checked.is_empty() {
                lines.push("Cross-checked with:".to_owned());
                lines.extend(
                    v.cross_checked
                        .iter()
                        .map(|s| ["  - ", s.as_str()].concat()),
                );
            }
            if !v.unverified.is_empty() {
                lines.push("Not confirmed (an integration can override these):".to_owned());
                lines.extend(v.unverified.iter().map(|s| ["  - ", s.as_str()].concat()));
            }
        }
    }
    for finding in documented::findings(provider, documented::today()) {
        let label = match finding.severity {
            Severity::Error => "Problem: ",
            Severity::Warning => "Note: ",
        };
        // The missing record is already said above.
        if provider.verified.is_some() {
            lines.push([label, &finding.message].concat());
        }
    }
    lines
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
    match command {
        ConnectionsCommand::List { end_user } => list_connections(&file, end_user).await,
        ConnectionsCommand::Show { id } => show_connection(&file, &id).await,
        ConnectionsCommand::Refresh { id } => {
            let gateway = gateway_for_commands(&file).await?;
            let view = gateway.refresh_connection(&id).await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
        ConnectionsCommand::Delete { id } => {
            let gateway = gateway_for_commands(&file).await?;
            gateway.delete_connection(&id).await?;
            println!("deleted {id}");
            Ok(())
        }
    }
}

async fn list_connections(
    file: &config::FileConfig,
    end_user: Option<String>,
) -> anyhow::Result<()> {
    let store = open_store(file).await?;
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
    Ok(())
}

async fn show_connection(file: &config::FileConfig, id: &str) -> anyhow::Result<()> {
    let store = open_store(file).await?;
    let row = store
        .get_connection(id)
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
    Ok(())
}

pub async fn keys(config_path: &Path, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => println!("{}", Vault::generate_key_entry()),
        KeysCommand::Rotate => rotate_keys(config_path).await?,
        KeysCommand::RevokeFirstRun => crate::access::revoke_first_run(config_path).await?,
        KeysCommand::Status => key_status(config_path).await?,
    }
    Ok(())
}

/// `keys status`: one line per key id, configured or found in the database.
async fn key_status(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    let store = open_store(&file).await?;
    let vault = open_vault(false)?;
    let mut out = format!(
        "{:<28} {:<11} {:<8} SEALED VALUES\n",
        "KEY ID", "CONFIGURED", "SEALING"
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for key in rotation::key_status(&store, &vault).await? {
        out.push_str(&format!(
            "{:<28} {:<11} {:<8} {}\n",
            key.key_id,
            yes_no(key.configured),
            yes_no(key.sealing),
            key.sealed_values
        ));
    }
    write_out(&out)
}

/// Announces the primary key as the sealing key, then re-seals every sealed value
/// (connections' credentials, API-managed integrations, PKCE verifiers of flows in progress)
/// under it, with a progress bar on a terminal, until none is left under another key. Values
/// already under the key are left alone, so an interrupted rotation can simply be run again.
async fn rotate_keys(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    let store = open_store(&file).await?;
    let vault = match std::env::var("TETHER_ENCRYPTION_KEYS") {
        Ok(spec) if !spec.trim().is_empty() => {
            Vault::from_spec(&spec).context("TETHER_ENCRYPTION_KEYS")?
        }
        _ => {
            let path = Path::new(KEY_FILE);
            if !path.exists() {
                anyhow::bail!(
                    "no key file {KEY_FILE} here and TETHER_ENCRYPTION_KEYS is not set: nothing to rotate"
                );
            }
            Vault::rotate_key_file(path).context("adding a new key to the key file")?
        }
    };
    let primary = vault.primary_key_id();
    let total = rotation::count(&store).await?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta} left)")
            .expect("static progress template"),
    );
    bar.set_message("re-encrypting");
    let done = rotation::rotate(
        &store,
        &vault,
        tether_server::sealing_key::ANNOUNCE_GRACE,
        || bar.inc(1),
    )
    .await?;
    bar.finish_and_clear();
    println!(
        "{} connection(s), {} integration(s), {} OAuth flow(s) and {} MCP signing key(s) \
         re-encrypted under key {primary}; {} already were. No stored value is sealed under an older key any more: the older keys \
         can be removed (tether keys status shows what each key seals).",
        done.connections.0,
        done.integrations.0,
        done.flows.0,
        done.mcp_signing_key.0,
        done.connections.1 + done.integrations.1 + done.flows.1 + done.mcp_signing_key.1,
    );
    Ok(())
}

pub async fn migrate(config_path: &Path) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    open_store(&file).await?;
    println!(
        "database is up to date: {}",
        config::redacted_url(&file.database.url)
    );
    Ok(())
}
