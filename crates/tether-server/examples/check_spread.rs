//! The background checks of many connections: N OAuth connections (100,000 by default) that
//! were never checked, on a SQLite database in a temporary directory, checked by the gateway's
//! background worker against the seed OAuth emulator's `GET /v1/me` (in this process, on
//! loopback), with a clock that runs `--speed` times faster than the wall clock so that a whole
//! check interval passes in minutes.
//!
//! ```sh
//! cargo run --release -p tether-server --example check_spread
//! cargo run --release -p tether-server --example check_spread -- --connections 20000 \
//!     --interval-secs 3600 --speed 60 --concurrency 8
//! ```
//!
//! Each connection holds a real access token the emulator minted for it, written directly
//! through the store. The worker first gives each connection its place in the interval (a hash
//! of its id), then checks each when its time comes, at most `--concurrency` at once. It stops
//! by itself when the interval is over (by its clock), saying how many were checked. Printed: how the checks spread over the tenths of the interval (from each
//! connection's `last_checked_at`), the most checks the emulator answered at once, the checks
//! per second, and the peak resident memory of the whole process (gateway and emulator).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tether_core::catalog::Catalog;
use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::ids::ConnectionId;
use tether_core::vault::Vault;
use tether_core::{AccessToken, unix_time};
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_server::{Clock, Gateway, GatewayConfig};
use tether_store::{ConnectionRow, ConnectionStatus, LifecycleStore, SqliteStore, Store};
use url::Url;

struct Args {
    connections: usize,
    interval: Duration,
    speed: i64,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        connections: 100_000,
        interval: Duration::from_secs(3600),
        speed: 30,
        concurrency: 4,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connections" => parsed.connections = value.parse()?,
            "--interval-secs" => parsed.interval = Duration::from_secs(value.parse()?),
            "--speed" => parsed.speed = value.parse()?,
            "--concurrency" => parsed.concurrency = value.parse()?,
            _ => bail!(
                "unknown flag {flag}; use --connections N, --interval-secs S, --speed X, \
                 --concurrency N"
            ),
        }
    }
    if parsed.connections == 0 || parsed.speed < 1 || parsed.concurrency == 0 {
        bail!("--connections, --speed and --concurrency must be at least 1");
    }
    if parsed.interval < Duration::from_secs(60) {
        bail!("--interval-secs must be at least 60");
    }
    Ok(parsed)
}

/// The wall clock, `speed` times faster from `start`.
struct FastClock {
    start: i64,
    started: Instant,
    speed: i64,
}

impl Clock for FastClock {
    fn now(&self) -> i64 {
        let elapsed = self.started.elapsed().as_millis() as i64 * self.speed / 1000;
        self.start + elapsed
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The process's peak resident set size, from `/proc/self/status` (Linux).
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} MiB", kib as f64 / 1024.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    tether_core::outbound::install_crypto_provider();
    let emulator = seed_oauth::spawn(SeedOAuthConfig::default())
        .await
        .context("starting the seed OAuth emulator")?;
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let url = format!("sqlite://{}", dir.path().join("tether.db").display());
    let store = SqliteStore::connect(&url).await?;
    let vault = Vault::from_spec(&Vault::generate_key_entry())?;
    let base = emulator.base_url();
    let table = json!({
        "provider": "oauth2",
        "client_id": "seed-client",
        "client_secret": "seed-secret",
        "authorization_url": base.join("oauth/authorize")?.as_str(),
        "token_url": base.join("oauth/token")?.as_str(),
        "api_base_url": base.as_str(),
        "scopes": ["read"],
        "check": {"path": "/v1/me", "account": {"user_id": "/id", "label": "/email"}},
    });

    let inserting = Instant::now();
    let now = unix_time::now();
    let valid_for = args.interval * 3;
    let mut ids = Vec::with_capacity(args.connections);
    for user in 0..args.connections {
        let id = ConnectionId::generate().as_str().to_owned();
        let credentials = Credentials::Oauth2(OAuth2Tokens {
            access_token: AccessToken::new(emulator.control.issue_access_token("read", valid_for)),
            refresh_token: None,
            token_type: "Bearer".into(),
            scope: Some("read".into()),
            expires_at: None,
            extra: Default::default(),
        });
        store
            .insert_connection(&ConnectionRow {
                id: id.clone(),
                integration: "crm".into(),
                end_user_id: format!("spread-user-{user}"),
                end_user_email: None,
                end_user_display_name: None,
                status: ConnectionStatus::Active,
                credentials: tether_store::Sealed::from_bytes(credentials.seal(&vault, &id)?),
                credentials_version: 1,
                access_expires_at: None,
                metadata: "{}".into(),
                last_error: None,
                refresh_failures: 0,
                next_refresh_at: None,
                created_at: now,
                updated_at: now,
                provider_account: None,
            })
            .await?;
        ids.push(id);
    }
    println!(
        "inserted {} never-checked connections in {:.2?}",
        args.connections,
        inserting.elapsed()
    );

    let clock = Arc::new(FastClock {
        start: unix_time::now(),
        started: Instant::now(),
        speed: args.speed,
    });
    let mut config = GatewayConfig::new(Url::parse("http://127.0.0.1:9/")?);
    config.lifecycle.check_interval = args.interval;
    config.lifecycle.check_concurrency = args.concurrency;
    config.lifecycle.tick = Duration::from_millis(100);
    // No jitter: a connection's second check then comes a whole interval after its first,
    // after the end of this run, so each `last_checked_at` is its first check.
    config.lifecycle.check_jitter_percent = 0;
    let gateway = Gateway::builder(store.clone(), vault, config)
        .catalog(Catalog::embedded()?)
        .integration_tables([("crm", table)])?
        .clock(clock.clone())
        .build()?;
    let scheduled_from = clock.now();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = gateway.spawn_background(stopped);

    let target = args.connections as u64;
    let real_interval = args.interval.as_secs_f64() / args.speed as f64;
    let deadline = Instant::now() + Duration::from_secs_f64(real_interval * 1.5 + 60.0);
    let mut last_report = Instant::now();
    // Until the interval is over (by the gateway's clock), and 3% more for the checks due at
    // its very end: every first check falls in it, and with no jitter no second check does.
    let interval_secs = i64::try_from(args.interval.as_secs())?;
    let end = scheduled_from + interval_secs + interval_secs * 3 / 100;
    while clock.now() < end && Instant::now() < deadline {
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  {:>6.1?}: {} checked, {:.0}% of the interval",
                started.elapsed(),
                emulator.control.me_calls(),
                100.0 * (clock.now() - scheduled_from) as f64 / args.interval.as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    for task in background {
        let _ = task.await;
    }

    // How the checks spread: each connection's last check, by tenth of the interval.
    let mut buckets = [0_u64; 10];
    let mut checked = 0_u64;
    let mut ok = 0_u64;
    for chunk in ids.chunks(500) {
        for lifecycle in store.connection_lifecycles(chunk).await? {
            let Some(at) = lifecycle.last_checked_at else {
                continue;
            };
            checked += 1;
            ok += u64::from(lifecycle.last_check.as_deref() == Some("ok"));
            let offset = (at - scheduled_from).max(0) as f64 / args.interval.as_secs_f64();
            buckets[((offset * 10.0) as usize).min(9)] += 1;
        }
    }
    println!("connections:          {}", args.connections);
    println!(
        "interval:             {:?} at {}x ({:.0} s of wall time); concurrency {}",
        args.interval, args.speed, real_interval, args.concurrency
    );
    println!("checked:              {checked} ({ok} ok) in {elapsed:.2?}");
    println!("spread over the interval, by tenth:");
    for (n, count) in buckets.iter().enumerate() {
        let share = *count as f64 / checked.max(1) as f64;
        println!(
            "  {:>3}%-{:>3}%: {:>7} {}",
            n * 10,
            n * 10 + 10,
            count,
            "#".repeat((share * 200.0).round() as usize)
        );
    }
    println!(
        "peak checks at once:  {} (the emulator's count; the bound is {})",
        emulator.control.me_peak_in_flight(),
        args.concurrency
    );
    println!(
        "checks per second:    {:.0} (wall time)",
        checked as f64 / elapsed.as_secs_f64()
    );
    println!(
        "peak memory:          {}",
        peak_rss().unwrap_or_else(|| "unknown".into())
    );
    if checked < target {
        bail!("{} of {} connections were checked in time", checked, target);
    }
    Ok(())
}
