//! The refresh storm: N OAuth connections whose access tokens all expired at the same moment,
//! refreshed by the background refresher against the seed OAuth emulator (in a process of its
//! own, this example run again with `--serve-emulator`, on loopback), on a SQLite database in a temporary directory, or on PostgreSQL with
//! `--database postgres://...` (in a fresh schema of that database, dropped at the end), by
//! one gateway or, with `--instances N`, by N gateways in this process, each with its own pool
//! and instance id, sharing the database as separate processes would.
//!
//! ```sh
//! cargo run --release -p tether-server --example refresh_storm -- --connections 10000
//! cargo run --release -p tether-server --example refresh_storm -- --connections 10000 --concurrency 32
//! cargo run --release -p tether-server --example refresh_storm -- --connections 10000 \
//!     --database postgres://postgres@127.0.0.1:5432/test --instances 3
//! ```
//!
//! Each connection holds a real refresh token the emulator minted for it (as if its user had
//! authorized the app; see `SeedOAuthControl::issue_refresh_token`) and an access token that
//! expired a second ago, written directly through the store. The gateway's refresher then runs
//! with its default settings except where a flag says otherwise. Printed: N, the time until
//! every stored access token is in the future again, the refresh-grant calls the token
//! endpoint saw (must equal N: no connection refreshed twice, none skipped), refreshes per
//! second, and the peak resident memory of the gateways' process and, apart, of the emulator's
//! (which keeps every token it issued, so its memory grows with N and is not the gateway's).
//!
//! The emulator process is driven over its standard input and output, a line per request:
//! `issue N` answers N new refresh tokens, a line each; `calls` the count of refresh-grant
//! calls its token endpoint answered; `rss` its peak resident memory. It prints its base URL
//! first, and exits when its input closes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tether_core::catalog::Catalog;
use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::ids::ConnectionId;
use tether_core::unix_time;
use tether_core::vault::Vault;
use tether_core::{AccessToken, RefreshToken};
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_server::{Gateway, GatewayConfig, RefresherConfig};
use tether_store::{AnyStore, ConnectionRow, ConnectionStatus, PgStore, Store, StoreOptions};
use url::Url;

/// Connections written per transaction while setting up.
const INSERT_BATCH: usize = 5_000;

/// Connections read per query when checking that every one was refreshed.
const VERIFY_PAGE: u32 = 1_000;

struct Args {
    connections: usize,
    concurrency: usize,
    interval: Duration,
    /// A PostgreSQL URL; `None` for a SQLite file in a temporary directory.
    database: Option<String>,
    instances: usize,
}

fn args() -> anyhow::Result<Args> {
    let defaults = RefresherConfig::default();
    let mut parsed = Args {
        connections: 10_000,
        concurrency: defaults.concurrency,
        interval: defaults.interval,
        database: None,
        instances: 1,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connections" => parsed.connections = value.parse()?,
            "--concurrency" => parsed.concurrency = value.parse()?,
            "--interval-ms" => parsed.interval = Duration::from_millis(value.parse()?),
            "--database" => parsed.database = Some(value),
            "--instances" => parsed.instances = value.parse()?,
            _ => {
                bail!(
                    "unknown flag {flag}; use --connections N, --concurrency N, --interval-ms MS, \
                     --database postgres://..., --instances N"
                )
            }
        }
    }
    if parsed.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if parsed.instances == 0 {
        bail!("--instances must be at least 1");
    }
    if parsed
        .database
        .as_deref()
        .is_some_and(|url| !url.starts_with("postgres://") && !url.starts_with("postgresql://"))
    {
        bail!("--database takes a postgres:// URL (without it, SQLite in a temporary directory)");
    }
    Ok(parsed)
}

/// This process's peak resident set size, from `/proc/self/status` (Linux).
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} MiB", kib as f64 / 1024.0))
}

/// The machine's load averages over 1, 5 and 15 minutes, from `/proc/loadavg` (Linux): the
/// benchmark shares its cores with whatever else runs.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve-emulator") {
        return serve_emulator().await;
    }
    let args = args()?;
    tether_core::outbound::install_crypto_provider();

    let emulator = EmulatorProcess::start()?;
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let database = Database::open(args.database.as_deref(), &dir).await?;
    let store = database.store().await?;
    // Every instance opens the same keys, as TETHER_ENCRYPTION_KEYS gives them.
    let keys = Vault::generate_key_entry();
    let vault = Vault::from_spec(&keys)?;

    let catalog = Catalog::embedded()?;
    let base = emulator.base_url.clone();
    let table = json!({
        "provider": "oauth2",
        "client_id": "seed-client",
        "client_secret": "seed-secret",
        "authorization_url": base.join("oauth/authorize")?.as_str(),
        "token_url": base.join("oauth/token")?.as_str(),
        "api_base_url": base.as_str(),
        "scopes": ["read", "write"],
    });

    // Every connection expired a second ago. Written in batches, each one transaction:
    // bounded memory, and one commit per batch rather than per row.
    let expired = unix_time::now() - 1;
    let inserting = Instant::now();
    let mut batch = Vec::with_capacity(INSERT_BATCH);
    let mut refresh_tokens = Vec::new().into_iter();
    for user in 0..args.connections {
        if refresh_tokens.as_slice().is_empty() {
            let wanted = INSERT_BATCH.min(args.connections - user);
            refresh_tokens = emulator.issue_refresh_tokens(wanted).await?.into_iter();
        }
        let id = ConnectionId::generate().as_str().to_owned();
        let credentials = Credentials::Oauth2(OAuth2Tokens {
            access_token: AccessToken::new(format!("expired-{user}")),
            refresh_token: Some(RefreshToken::new(
                refresh_tokens
                    .next()
                    .context("the emulator issued too few tokens")?,
            )),
            token_type: "Bearer".into(),
            scope: Some("read write".into()),
            expires_at: Some(expired),
            extra: Default::default(),
        });
        batch.push(ConnectionRow {
            credentials: tether_store::Sealed::from_bytes(
                credentials.seal(&vault, &id).expect("a fresh vault seals"),
            ),
            id,
            integration: "crm".into(),
            end_user_id: format!("storm-user-{user}"),
            end_user_email: None,
            end_user_display_name: None,
            status: ConnectionStatus::Active,
            credentials_version: 1,
            access_expires_at: Some(expired),
            metadata: "{}".into(),
            last_error: None,
            refresh_failures: 0,
            next_refresh_at: None,
            created_at: expired,
            updated_at: expired,
            provider_account: None,
        });
        if batch.len() == INSERT_BATCH || user + 1 == args.connections {
            store.insert_connections(&batch).await?;
            batch.clear();
        }
    }
    println!(
        "inserted {} expired connections in {:.2?}",
        args.connections,
        inserting.elapsed()
    );

    let mut config = GatewayConfig::new(Url::parse("http://127.0.0.1:9/")?);
    config.refresher.concurrency = args.concurrency;
    config.refresher.interval = args.interval;
    // One gateway per instance, each with its own pool and (random) instance id.
    let mut gateways = Vec::new();
    for _ in 0..args.instances {
        gateways.push(
            Gateway::builder(
                database.store().await?,
                Vault::from_spec(&keys)?,
                config.clone(),
            )
            .catalog(catalog.clone())
            .integration_tables([("crm", table.clone())])?
            .build()?,
        );
    }

    let load_before = load_average();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background: Vec<_> = gateways
        .iter()
        .flat_map(|gateway| gateway.spawn_background(stopped.clone()))
        .collect();

    // Cheap to poll: the emulator's count. Then the store, for the connections not yet seen
    // with a future expiry (each is read until it is, then never again).
    let target = args.connections as u64;
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    let mut last_report = Instant::now();
    loop {
        let calls = emulator.refresh_calls().await?;
        if calls >= target {
            break;
        }
        if Instant::now() > deadline {
            bail!("gave up after 30 minutes");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  {:>6.1?}: {calls} refreshed", started.elapsed());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every row, a page at a time: active, its access token in the future again. A page
    // with a row not yet written (its token call is counted before its write commits) is
    // read again.
    let mut after: Option<String> = None;
    loop {
        let page = store
            .connections_after(after.as_deref(), VERIFY_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        let now = unix_time::now();
        let mut pending = false;
        for row in &page {
            if row.status != ConnectionStatus::Active {
                bail!("{} is {:?}: {:?}", row.id, row.status, row.last_error);
            }
            pending |= row.access_expires_at.is_none_or(|at| at <= now);
        }
        if pending {
            if Instant::now() > deadline {
                bail!("a connection after {after:?} was never refreshed");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        after = Some(last.id.clone());
    }
    let elapsed = started.elapsed();
    let calls = emulator.refresh_calls().await?;

    let _ = stop.send(true);
    for task in background {
        let _ = task.await;
    }
    println!(
        "database:             {}, {} instance(s)",
        database.describe(),
        args.instances
    );
    println!("connections:          {}", args.connections);
    println!(
        "refresher:            concurrency {}, interval {:?}",
        args.concurrency, args.interval
    );
    println!("all refreshed after:  {elapsed:.2?}");
    println!("token-endpoint calls: {calls} (refresh_token grant)");
    println!(
        "refreshes per second: {:.0}",
        args.connections as f64 / elapsed.as_secs_f64()
    );
    println!(
        "load average:         {load_before} before, {} after",
        load_average()
    );
    println!(
        "peak RSS:             {} (gateways), {} (emulator, its own process)",
        peak_rss().unwrap_or_else(|| "unknown (no /proc/self/status)".into()),
        emulator.peak_rss().await?
    );
    drop(gateways);
    database.close(store).await;
    if calls != target {
        bail!("expected exactly {target} refresh calls, the token endpoint saw {calls}");
    }
    Ok(())
}

/// The emulator's side: serves the seed OAuth emulator and answers the parent's requests on
/// standard input, until it closes.
async fn serve_emulator() -> anyhow::Result<()> {
    let emulator = seed_oauth::spawn(SeedOAuthConfig::default())
        .await
        .context("starting the seed OAuth emulator")?;
    println!("{}", emulator.base_url());
    let control = emulator.control.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let mut out = stdout.lock();
            match line.split_once(' ') {
                Some(("issue", count)) => {
                    for _ in 0..count.parse::<usize>()? {
                        writeln!(out, "{}", control.issue_refresh_token("read write"))?;
                    }
                }
                _ if line == "calls" => {
                    writeln!(out, "{}", control.token_calls_by_grant("refresh_token"))?
                }
                _ if line == "rss" => {
                    writeln!(out, "{}", peak_rss().unwrap_or_else(|| "unknown".into()))?
                }
                _ => bail!("unknown request {line:?}"),
            }
            out.flush()?;
        }
        Ok(())
    })
    .await?
}

/// The emulator in its own process (this example run with `--serve-emulator`), killed when
/// dropped.
struct EmulatorProcess {
    child: Child,
    pipes: Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
    base_url: Url,
}

impl EmulatorProcess {
    fn start() -> anyhow::Result<EmulatorProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-emulator")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the emulator process")?;
        let stdin = child.stdin.take().context("the emulator's input")?;
        let mut stdout = BufReader::new(child.stdout.take().context("the emulator's output")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let base_url = Url::parse(first.trim()).context("the emulator's base URL")?;
        Ok(EmulatorProcess {
            child,
            pipes: Arc::new(Mutex::new((stdin, stdout))),
            base_url,
        })
    }

    /// Sends `request` and reads `lines` lines of answer, off the async threads.
    async fn ask(&self, request: String, lines: usize) -> anyhow::Result<Vec<String>> {
        let pipes = self.pipes.clone();
        tokio::task::spawn_blocking(move || {
            let mut pipes = pipes.lock().expect("emulator pipes");
            let (stdin, stdout) = &mut *pipes;
            writeln!(stdin, "{request}")?;
            stdin.flush()?;
            let mut answer = Vec::with_capacity(lines);
            for _ in 0..lines {
                let mut line = String::new();
                if stdout.read_line(&mut line)? == 0 {
                    bail!("the emulator process ended");
                }
                answer.push(line.trim_end().to_owned());
            }
            Ok(answer)
        })
        .await?
    }

    async fn issue_refresh_tokens(&self, count: usize) -> anyhow::Result<Vec<String>> {
        self.ask(format!("issue {count}"), count).await
    }

    async fn refresh_calls(&self) -> anyhow::Result<u64> {
        let answer = self.ask("calls".into(), 1).await?;
        Ok(answer[0].parse()?)
    }

    async fn peak_rss(&self) -> anyhow::Result<String> {
        Ok(self.ask("rss".into(), 1).await?.remove(0))
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the benchmark's data lives: a SQLite file, or a fresh schema on PostgreSQL.
enum Database {
    Sqlite(String),
    Postgres {
        options: Box<PgConnectOptions>,
        schema: String,
    },
}

impl Database {
    async fn open(url: Option<&str>, dir: &tempfile::TempDir) -> anyhow::Result<Database> {
        let Some(url) = url else {
            return Ok(Database::Sqlite(format!(
                "sqlite://{}",
                dir.path().join("tether.db").display()
            )));
        };
        let options = PgConnectOptions::from_str(url).context("--database")?;
        let schema = format!("tether_bench_{:08x}", rand::random::<u32>());
        let mut admin = PgConnection::connect_with(&options)
            .await
            .context("connecting to --database")?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await?;
        Ok(Database::Postgres {
            options: Box::new(options),
            schema,
        })
    }

    /// A new store (its own pool) on this database.
    async fn store(&self) -> anyhow::Result<AnyStore> {
        Ok(match self {
            Database::Sqlite(url) => AnyStore::connect(url, &StoreOptions::default()).await?,
            Database::Postgres { options, schema } => AnyStore::Postgres(
                PgStore::connect_with(
                    PgConnectOptions::clone(options).options([("search_path", schema.as_str())]),
                    &StoreOptions::default(),
                )
                .await?,
            ),
        })
    }

    fn describe(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "SQLite (WAL file)",
            Database::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Drops the benchmark's schema (PostgreSQL); the SQLite file goes with its directory.
    async fn close(self, store: AnyStore) {
        if let (Database::Postgres { options, schema }, AnyStore::Postgres(pg)) = (self, store) {
            pg.pool().close().await;
            if let Ok(mut admin) = PgConnection::connect_with(&options).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}
