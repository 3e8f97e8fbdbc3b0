//! Crash safety of refresh, from outside the process: `tether serve` in front of the seed OAuth
//! emulator (refresh-token rotation with reuse detection on) is SIGKILLed at random moments
//! of a burst of forced refreshes and proxied calls, restarted on the same directory, and
//! after every round each connection must be either working (`active`, a proxied call
//! answers 200) or `needs_reauth` with a `connection.refresh_failed` event for the app.
//!
//! A kill after the provider rotated a refresh token but before Tether stored the new one
//! loses that token; the next refresh presents the old one, the provider sees reuse and
//! revokes the grant, and the connection must end `needs_reauth` with the app told. The test
//! counts how often that happens, then reconnects the connection as an app would.
//!
//! Bounded: `ROUNDS` kills, a fixed number of connections, timeouts on every wait; every
//! process it starts is killed (also on panic, by `kill_on_drop`). The kill moments come from
//! a seeded RNG (`TETHER_CRASH_SEED` overrides the seed).

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_test_support::{Receiver, TetherProcess, tether_command};
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const API_KEY: &str = "crash-test-api-key-0123456789abcdef";
const RETURN_URL: &str = "http://app.localhost:9/app/return";
const CONNECTIONS: usize = 5;
const ROUNDS: usize = 8;
/// Concurrent clients during a burst.
const WORKERS: usize = 16;
const DEFAULT_SEED: u64 = 0x7e7e_c0de;

/// Ids of the `connection.refresh_failed` events the app received for `connection_id`.
fn refresh_failed_ids(receiver: &Receiver, connection_id: &str) -> Vec<String> {
    receiver
        .bodies()
        .iter()
        .filter(|e| e["type"] == "connection.refresh_failed")
        .filter(|e| e["connection_id"] == connection_id)
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// One `tether serve` process.
struct Tether {
    process: TetherProcess,
    base: Url,
    api: reqwest::Client,
}

impl Tether {
    /// Starts `tether serve` in `dir` and waits (bounded) until it says where it listens.
    async fn start(dir: &Path) -> Tether {
        let mut command = tether_command(BIN, dir);
        command
            .arg("serve")
            .env("TETHER_API_KEY", API_KEY)
            .env("RUST_LOG", "error");
        let process = TetherProcess::start(command, Duration::from_secs(30)).await;
        Tether {
            base: process.base().clone(),
            process,
            api: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// SIGKILL by pid, then reap.
    async fn kill(mut self) {
        self.process.kill().await;
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.api
            .get(self.base.join(path).unwrap())
            .bearer_auth(API_KEY)
    }

    async fn status_of(&self, id: &str) -> String {
        let response = self
            .get(&format!("v1/connections/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["status"].as_str().unwrap().to_owned()
    }

    /// `GET /v1/proxy/{id}/v1/deals` with the gateway's own refresh as needed.
    async fn proxy_deals(&self, id: &str) -> u16 {
        self.get(&format!("v1/proxy/{id}/v1/deals"))
            // Long enough for a refresh that waits out a killed instance's lease (30 s).
            .timeout(Duration::from_secs(45))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The `connection.refresh_failed` event ids in the outbox for a connection.
    async fn outbox_refresh_failed(&self, id: &str) -> Vec<String> {
        let response = self
            .get(&format!(
                "v1/webhooks/deliveries?connection_id={id}&limit=1000"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["type"] == "connection.refresh_failed")
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Connects `end_user` through the whole OAuth flow, as a browser would (cookies kept,
    /// redirects followed up to the app's return URL); returns the connection id.
    async fn connect(&self, end_user: &str) -> String {
        let response = self
            .api
            .post(self.base.join("v1/connect/sessions").unwrap())
            .bearer_auth(API_KEY)
            .json(&json!({"end_user": {"id": end_user}, "return_url": RETURN_URL}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let session: Value = response.json().await.unwrap();
        let start = support::start_url(&self.base, &session, "crm");
        let browser = support::browser_to_app();
        let response = browser.get(start).send().await.unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        let location = response.headers()["location"].to_str().unwrap();
        support::returned_connection(&response.url().join(location).unwrap())
    }
}

fn write_config(dir: &Path, emulator: &Url, hooks: &Url) {
    let endpoint = |path: &str| emulator.join(path).unwrap().to_string();
    let toml = format!(
        r#"[connect]
allowed_return_origins = ["http://app.localhost:9"]

[integrations.crm]
provider = "oauth2"
client_id = "seed-client"
client_secret = "seed-secret"
authorization_url = "{}"
token_url = "{}"
revocation_url = "{}"
api_base_url = "{}"
scopes = ["read", "write"]

[webhooks]
url = "{hooks}"
secret = "whsec_crash_test"
"#,
        endpoint("oauth/authorize"),
        endpoint("oauth/token"),
        endpoint("oauth/revoke"),
        emulator,
    );
    std::fs::write(dir.join("tether.toml"), toml).unwrap();
}

/// What the burst's clients saw, by outcome.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    needs_reauth: AtomicU64,
    unavailable: AtomicU64,
    other: Mutex<Vec<u16>>,
    cut: AtomicU64,
}

/// Forced credential reads and proxied calls from `WORKERS` clients, until `stop` or until
/// the gateway is gone.
fn burst(
    tether: &Tether,
    ids: &[String],
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WORKERS)
        .map(|worker| {
            let client = tether.api.clone();
            let base = tether.base.clone();
            let ids = ids.to_vec();
            let stop = stop.clone();
            let tally = tally.clone();
            tokio::spawn(async move {
                let mut n = worker;
                while !stop.load(Ordering::SeqCst) {
                    let id = &ids[n % ids.len()];
                    let path = if (n / ids.len()).is_multiple_of(2) {
                        format!("v1/connections/{id}/credentials?force_refresh=true")
                    } else {
                        format!("v1/proxy/{id}/v1/deals")
                    };
                    n += 1;
                    let sent = client
                        .get(base.join(&path).unwrap())
                        .bearer_auth(API_KEY)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(200) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        Ok(409) => tally.needs_reauth.fetch_add(1, Ordering::Relaxed),
                        Ok(503) => tally.unavailable.fetch_add(1, Ordering::Relaxed),
                        Ok(code) => {
                            tally.other.lock().unwrap().push(code);
                            0
                        }
                        // Killed under us (or waiting on a killed instance's lease).
                        Err(_) => {
                            tally.cut.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    };
                }
            })
        })
        .collect()
}

/// How the app learnt that a connection needs reauthorization.
enum Told {
    /// The receiver got the event.
    Delivered,
    /// The event is in the outbox, committed with the status change, and not delivered yet
    /// (a killed worker's claim holds it, and the events behind it, until the claim expires).
    Queued(String),
}

/// Finds a `connection.refresh_failed` event for `id` not accounted for before: received
/// within a short wait, or else committed in the outbox.
async fn told(
    tether: &Tether,
    receiver: &Receiver,
    id: &str,
    accounted: &mut HashSet<String>,
) -> Told {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(event) = refresh_failed_ids(receiver, id)
            .into_iter()
            .find(|e| !accounted.contains(e))
        {
            accounted.insert(event);
            return Told::Delivered;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued = tether
        .outbox_refresh_failed(id)
        .await
        .into_iter()
        .find(|e| !accounted.contains(e))
        .unwrap_or_else(|| {
            panic!("{id} is needs_reauth but no connection.refresh_failed event was written")
        });
    accounted.insert(queued.clone());
    Told::Queued(queued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_refresh_never_leaves_a_connection_broken_and_untold() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let seed = std::env::var("TETHER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let emulator = seed_oauth::spawn(SeedOAuthConfig {
        rotate_refresh_tokens: true,
        // Inside the 5 min read margin, so every read refreshes too; outlives the test.
        access_token_ttl: Duration::from_secs(120),
        ..SeedOAuthConfig::default()
    })
    .await
    .unwrap();
    let receiver = Receiver::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), emulator.base_url(), receiver.url());

    let mut tether = Tether::start(dir.path()).await;
    let mut ids = Vec::new();
    for user in 0..CONNECTIONS {
        ids.push(tether.connect(&format!("crash-user-{user}")).await);
    }

    let mut accounted = HashSet::new();
    let mut queued = Vec::new();
    let mut lost = 0;
    let tally = Arc::new(Tally::default());
    for round in 1..=ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = burst(&tether, &ids, &stop, &tally);
        let kill_after = Duration::from_millis(rng.random_range(50..600));
        tokio::time::sleep(kill_after).await;
        tether.kill().await;
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            tokio::time::timeout(Duration::from_secs(10), worker)
                .await
                .expect("burst clients stop once tether is gone")
                .unwrap();
        }

        tether = Tether::start(dir.path()).await;
        let mut lost_this_round = 0;
        for id in &ids {
            let mut status = tether.status_of(id).await;
            if status == "active" {
                match tether.proxy_deals(id).await {
                    200 => continue,
                    // The refresh this read made found the grant gone.
                    409 => status = tether.status_of(id).await,
                    code => panic!("round {round}: {id} is active but the proxy answered {code}"),
                }
            }
            assert_eq!(
                status, "needs_reauth",
                "round {round}: {id} is neither working nor needs_reauth"
            );
            if let Told::Queued(event) = told(&tether, &receiver, id, &mut accounted).await {
                queued.push(event);
            }
            lost_this_round += 1;
            // The app, told, sends its user through Connect again: same connection id.
            let user = format!("crash-user-{}", ids.iter().position(|i| i == id).unwrap());
            assert_eq!(&tether.connect(&user).await, id);
            assert_eq!(tether.status_of(id).await, "active");
            assert_eq!(tether.proxy_deals(id).await, 200);
        }
        lost += lost_this_round;
        println!(
            "round {round}: killed after {kill_after:?}; {lost_this_round} of {CONNECTIONS} connections needed reauthorization"
        );
    }

    // Events still queued behind a killed worker's claim go out once it expires; wait a
    // little for them, without stretching the test past its bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued.iter().any(|e| !receiver.has_id(e)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let undelivered = queued.iter().filter(|e| !receiver.has_id(e)).count();
    let other = tally.other.lock().unwrap().clone();
    println!(
        "seed {seed:#x}: {ROUNDS} kills, {lost} connections lost a rotated refresh token \
         (provider saw {} reuses) and were marked needs_reauth with the app told \
         ({} delivered within 2 s, {} committed to the outbox first, {undelivered} of those \
         still waiting on a killed worker's claim at the end); burst answers: {} ok, {} \
         needs_reauth, {} unavailable, {} cut by the kill, other {other:?}; \
         {} refresh calls at the provider; {:?} in all",
        emulator.control.reuse_events(),
        lost - queued.len(),
        queued.len(),
        tally.ok.load(Ordering::Relaxed),
        tally.needs_reauth.load(Ordering::Relaxed),
        tally.unavailable.load(Ordering::Relaxed),
        tally.cut.load(Ordering::Relaxed),
        emulator.control.token_calls_by_grant("refresh_token"),
        started.elapsed(),
    );
    assert!(
        other.iter().all(|code| *code < 500),
        "server errors during the bursts: {other:?}"
    );

    tether.kill().await;
}
