//! `[proxy] shared_budgets = true`, proven from outside: two real `tether serve` processes on
//! one fresh PostgreSQL database, with one integration's budget of 10 calls per 10 seconds (a
//! burst of 10, then one a second). A burst of 60 proxied GETs spread over both instances
//! reaches the emulator at most as often as the budget allows over the time the burst took
//! (with a slack of one call, for the rounding of that time), where two instances each
//! keeping its own budget would let 20 through at once; the app gets only 2xx, or 429 with
//! `Retry-After`. And on SQLite the setting is refused at start with one line.
//!
//! Needs PostgreSQL (`TETHER_TEST_DATABASE_URL`, by default the local server). Bounded:
//! fixed counts, a timeout on every wait; every process is killed by its pid.

mod support;

use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use serde_json::{Value, json};
use support::TestDatabase;
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_test_support::{TetherProcess, tether_command};
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const API_KEY: &str = "shared-budgets-test-api-key-0123456789";
const RETURN_URL: &str = "http://app.localhost:9/app/return";
/// The integration's budget: this many calls per `PER_SECS`.
const BUDGET: u64 = 10;
const PER_SECS: u64 = 10;

fn config(emulator: &Url) -> String {
    let endpoint = |path: &str| emulator.join(path).unwrap().to_string();
    format!(
        r#"[connect]
allowed_return_origins = ["http://app.localhost:9"]

[proxy]
shared_budgets = true

[integrations.crm]
provider = "oauth2"
client_id = "seed-client"
client_secret = "seed-secret"
authorization_url = "{}"
token_url = "{}"
api_base_url = "{}"
scopes = ["read", "write"]
budget = {{ per_integration = {BUDGET}, per_secs = {PER_SECS} }}
"#,
        endpoint("oauth/authorize"),
        endpoint("oauth/token"),
        emulator,
    )
}

async fn serve(dir: &std::path::Path, n: usize, database: &str, keys: &str) -> TetherProcess {
    let workdir = dir.join(format!("instance-{n}"));
    std::fs::create_dir_all(&workdir).unwrap();
    let mut command = tether_command(BIN, &workdir);
    command
        .arg("serve")
        .arg("--config")
        .arg(dir.join("tether.toml"))
        .env("TETHER_DATABASE__URL", database)
        .env("TETHER_ENCRYPTION_KEYS", keys)
        .env("TETHER_API_KEY", API_KEY)
        .env("RUST_LOG", "error");
    TetherProcess::start(command, Duration::from_secs(60)).await
}

/// A whole connect flow through `base`; returns the connection id.
async fn connect(api: &reqwest::Client, base: &Url, end_user: &str) -> String {
    let session: Value = api
        .post(base.join("v1/connect/sessions").unwrap())
        .bearer_auth(API_KEY)
        .json(&json!({"end_user": {"id": end_user}, "return_url": RETURN_URL}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let start = support::start_url(base, &session, "crm");
    let landed = support::browser_to_app().get(start).send().await.unwrap();
    let location = landed.headers()["location"].to_str().unwrap().to_owned();
    support::returned_connection(&landed.url().join(&location).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_together_keep_one_budget() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = seed_oauth::spawn(SeedOAuthConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tether.toml"), config(emulator.base_url())).unwrap();
    let database = TestDatabase::create("budgets").await;
    let keys = tether_core::vault::Vault::generate_key_entry();
    let first = serve(dir.path(), 0, &database.url, &keys).await;
    let second = serve(dir.path(), 1, &database.url, &keys).await;
    let bases = [first.base().clone(), second.base().clone()];
    let api = reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let id = connect(&api, &bases[0], "burst").await;

    let before = emulator.control.api_arrivals().len();
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..60usize {
        let url = bases[n % 2]
            .join(&format!("v1/proxy/{id}/v1/deals"))
            .unwrap();
        let api = api.clone();
        calls.spawn(async move {
            let response = api.get(url).bearer_auth(API_KEY).send().await.unwrap();
            let after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), after)
        });
    }
    let answers: Vec<(u16, Option<String>)> = calls.join_all().await;
    let took = started.elapsed();
    let arrivals = emulator.control.api_arrivals().len() - before;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    eprintln!(
        "a burst of 60 over two instances in {took:?}: {ok} answered 200, {} refused with 429; \
         the provider saw {arrivals}",
        answers.len() - ok
    );
    for (status, after) in &answers {
        assert!(
            *status == 200 || (*status == 429 && after.as_deref().is_some_and(|a| a != "0")),
            "the app gets 2xx or 429 with Retry-After, not {status} ({after:?})"
        );
    }
    // What the budget allows over the burst's time: the burst, one more call per interval
    // passed, and one for the rounding of the time measured.
    let interval = Duration::from_secs(PER_SECS) / BUDGET as u32;
    let allowed = BUDGET + (took.as_micros() / interval.as_micros()) as u64 + 1;
    assert!(
        (arrivals as u64) <= allowed,
        "{arrivals} calls reached the provider; the shared budget allows {allowed} in {took:?}"
    );
    assert!(arrivals as u64 >= BUDGET, "the budget's burst went through");
    assert_eq!(
        ok, arrivals,
        "every call that reached the provider was answered 200"
    );
}

#[tokio::test]
async fn shared_budgets_are_refused_on_sqlite_in_one_line() {
    let emulator = seed_oauth::spawn(SeedOAuthConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tether.toml"), config(emulator.base_url())).unwrap();
    let database = format!("sqlite://{}", dir.path().join("tether.db").display());
    let keys = tether_core::vault::Vault::generate_key_entry();
    let output = tether_command(BIN, dir.path())
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("tether.toml"))
        .env("TETHER_DATABASE__URL", &database)
        .env("TETHER_ENCRYPTION_KEYS", &keys)
        .env("TETHER_API_KEY", API_KEY)
        .env("RUST_LOG", "error")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("refused within 60 s")
        .unwrap();
    assert!(
        !output.status.success(),
        "tether serve must refuse to start"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tether:"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("shared_budgets") && lines[0].contains("PostgreSQL"),
        "{stderr}"
    );
}
