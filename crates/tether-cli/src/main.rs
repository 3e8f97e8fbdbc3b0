//! The `tether` binary: a thin layer that parses the command line and hands over to the
//! subcommand. Errors end as one line on stderr and a non-zero exit.

#![forbid(unsafe_code)]

mod access;
mod commands;
mod config;
mod demo;
mod log_escape;
mod mcp_settings;
mod reference;
mod serve;
mod settings;
mod tuning;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Connect your users' CRMs: OAuth, sealed credentials, refresh and an authenticated proxy"
)]
struct Cli {
    /// Configuration file (read when present).
    #[arg(
        long,
        global = true,
        env = "TETHER_CONFIG",
        default_value = "tether.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Run the gateway with emulated Redtail CRM, Salesmate and an OAuth CRM, offline.
    Demo(demo::DemoArgs),
    /// The providers in the built-in catalog.
    Providers {
        #[command(subcommand)]
        command: commands::ProvidersCommand,
    },
    /// List the configured integrations.
    Integrations {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Inspect and manage connections.
    Connections {
        #[command(subcommand)]
        command: commands::ConnectionsCommand,
    },
    /// Encryption keys, and the first-run API key.
    Keys {
        #[command(subcommand)]
        command: commands::KeysCommand,
    },
    /// The operator console's sessions.
    Console {
        #[command(subcommand)]
        command: access::ConsoleCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(Subcommand)]
enum ListOnly {
    List,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(config::log_format(&cli.config));
    // One thread: `serve` adds a serving thread per CPU, each with a runtime of its own (see
    // `tether_server::serve_per_core`); the other commands do one thing at a time.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tether: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, each said once (some errors repeat their
            // source's text in their own).
            let mut line = err.to_string();
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !line.ends_with(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
            }
            eprintln!("tether: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, as text (coloured on a terminal) or as one JSON object a line
/// (`[log] format = "json"`), filtered by `RUST_LOG` (default `info`, sqlx at `warn`).
fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Values from requests and providers are escaped: see `log_escape`.
        config::LogFormat::Json => builder
            .with_writer(log_escape::JsonEscaping)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        config::LogFormat::Text => builder
            .fmt_fields(log_escape::EscapedFields)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => serve::run(&cli.config).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Providers { command } => commands::providers(command),
        Command::Integrations { .. } => commands::integrations_list(&cli.config),
        Command::Connections { command } => commands::connections(&cli.config, command).await,
        Command::Keys { command } => commands::keys(&cli.config, command).await,
        Command::Console { command } => access::console(&cli.config, command).await,
        Command::Migrate => commands::migrate(&cli.config).await,
    }
}
