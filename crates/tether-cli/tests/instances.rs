//! Several instances on one PostgreSQL database behave as one gateway, proven from outside:
//! three real `tether serve` processes (the built binary) share a fresh database (made for the
//! run, dropped after it) in front of the seed OAuth emulator (rotating refresh tokens, reuse
//! detection on), and the test talks to them over loopback HTTP only, as a load balancer with
//! nothing sticky would spread an app's calls.
//!
//! - A connect flow started on one instance finishes (the callback) on another.
//! - After every access token expired, hundreds of concurrent proxied calls spread over the
//!   three make exactly one token call per connection, and every call answers 200.
//! - A connection deleted through one instance answers 404 on the others within a second, even
//!   where it was cached, and even when the database has just dropped every connection (the
//!   notification may be lost; the instances resubscribe and flush); an integration created
//!   through one is listed by another within a second.
//! - One instance SIGKILLed in the middle of a refresh storm loses nothing: every connection
//!   ends `active` (and works) or `needs_reauth` with the app told by webhook, every event is
//!   delivered, and no event is delivered by two instances at once.
//! - An agent token revoked through one instance is refused by another within a second.
//! - Every maintenance command (`migrate`, `connections ...`, `keys rotate`) works on the
//!   database the instances serve, and what it changes reaches the running instance.
//! - A key rotation while three instances serve and write (connects, imports, refreshes)
//!   leaves nothing under the old key: with it removed, restarted instances read every
//!   connection; an instance without the new key refuses to start.
//!
//! Needs PostgreSQL (`TETHER_TEST_DATABASE_URL`, by default the local server `.ci/run`
//! starts); without it the tests fail saying so. Bounded: fixed counts, a timeout on every
//! wait; every process is killed by its pid (`kill_on_drop`, also on panic).

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use support::TestDatabase;
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_test_support::{Receiver, TetherProcess, eventually, tether_command};
use tokio::process::Command;
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const API_KEY: &str = "instances-test-api-key-0123456789";
const RETURN_URL: &str = "http://app.localhost:9/app/return";

// ----- one `tether serve` ---------------------------------------------------------------------

/// What every instance shares: one configuration file, the database, the encryption keys.
struct Deployment {
    dir: tempfile::TempDir,
    database: TestDatabase,
    keys: String,
}

impl Deployment {
    /// A maintenance command (`tether connections list`, ...) against this deployment, with
    /// `keys` as its TETHER_ENCRYPTION_KEYS; returns its stdout, or panics with its stderr.
    async fn command(&self, args: &[&str], keys: &str) -> String {
        let output = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("tether.toml"))
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TETHER_DATABASE__URL", &self.database.url)
            .env("TETHER_ENCRYPTION_KEYS", keys)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("the command ends within 60 s")
            .unwrap();
        assert!(
            output.status.success(),
            "tether {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    async fn new(emulator: &Url, hooks: Option<&Url>) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = |path: &str| emulator.join(path).unwrap().to_string();
        let mut toml = format!(
            r#"[connect]
allowed_return_origins = ["http://app.localhost:9"]

# Integrations put through the API point at the emulator on this machine too.
[outbound]
allowed_private_networks = ["127.0.0.0/8", "::1"]

[integrations.crm]
provider = "oauth2"
client_id = "seed-client"
client_secret = "seed-secret"
authorization_url = "{}"
token_url = "{}"
api_base_url = "{}"
scopes = ["read", "write"]
"#,
            endpoint("oauth/authorize"),
            endpoint("oauth/token"),
            emulator,
        );
        if let Some(hooks) = hooks {
            // Quick retries: on a loaded CI machine an attempt can time out, and the default
            // back-off (5 s doubling to an hour) would outlast the test's bounded waits.
            toml.push_str(&format!(
                "\n[webhooks]\nurl = \"{hooks}\"\nsecret = \"whsec_instances_test\"\n\
                 request_timeout_secs = 3\nretry_base_secs = 1\nretry_max_secs = 2\n\
                 poll_interval_secs = 1\n"
            ));
        }
        std::fs::write(dir.path().join("tether.toml"), toml).unwrap();
        Deployment {
            dir,
            database: TestDatabase::create("instances").await,
            keys: tether_core::vault::Vault::generate_key_entry(),
        }
    }

    /// Starts `count` instances at once (their migrations race, as in a real deployment).
    async fn start(&self, count: usize) -> Vec<Instance> {
        let starts: Vec<_> = (0..count).map(|n| self.spawn(n)).collect();
        let mut instances = Vec::new();
        for start in starts {
            instances.push(start.await);
        }
        instances
    }

    fn spawn(&self, n: usize) -> impl std::future::Future<Output = Instance> + use<> {
        self.spawn_with_keys(n, &self.keys)
    }

    /// [`Deployment::spawn`] with other encryption keys than the deployment's (a key rotation).
    fn spawn_with_keys(
        &self,
        n: usize,
        keys: &str,
    ) -> impl std::future::Future<Output = Instance> + use<> {
        // Each instance has a working directory of its own (its instance id file), and reads
        // the one shared configuration file.
        let workdir = self.dir.path().join(format!("instance-{n}"));
        std::fs::create_dir_all(&workdir).unwrap();
        let mut command = tether_command(BIN, &workdir);
        command
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("tether.toml"))
            .env("TETHER_DATABASE__URL", &self.database.url)
            .env("TETHER_ENCRYPTION_KEYS", keys)
            .env("TETHER_API_KEY", API_KEY)
            .env("RUST_LOG", "error");
        // Started at once, not when awaited: instances started together start together.
        let started = tokio::spawn(TetherProcess::start(command, Duration::from_secs(60)));
        async move {
            let process = started
                .await
                .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()));
            Instance {
                base: process.base().clone(),
                process,
                api: reqwest::Client::builder()
                    .redirect(Policy::none())
                    .build()
                    .unwrap(),
            }
        }
    }
}

struct Instance {
    process: TetherProcess,
    base: Url,
    api: reqwest::Client,
}

impl Instance {
    /// SIGKILL by pid, then reap (once).
    async fn kill(&mut self) {
        self.process.kill().await;
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, self.base.join(path).unwrap())
            .bearer_auth(API_KEY)
            .timeout(Duration::from_secs(90))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn proxy_deals(&self, id: &str) -> u16 {
        self.get(&format!("v1/proxy/{id}/v1/deals"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Starts a connect flow here as a browser would: the session, the Connect page's start
    /// URL, and the redirect to the provider, whose consent answers at once with a redirect to
    /// this instance's callback. Returns the browser (its cookies) and that callback URL.
    async fn start_connect(&self, end_user: &str) -> (reqwest::Client, Url) {
        let response = self
            .request(reqwest::Method::POST, "v1/connect/sessions")
            .json(&json!({"end_user": {"id": end_user}, "return_url": RETURN_URL}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let session: Value = response.json().await.unwrap();
        let start = support::start_url(&self.base, &session, "crm");

        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .unwrap();
        let to_provider = location(&browser.get(start).send().await.unwrap());
        let to_callback = location(&browser.get(to_provider).send().await.unwrap());
        assert_eq!(to_callback.path(), "/oauth/callback", "{to_callback}");
        (browser, to_callback)
    }

    /// A whole connect flow on this instance; returns the connection id.
    async fn connect(&self, end_user: &str) -> String {
        let (browser, callback) = self.start_connect(end_user).await;
        finish_connect(&browser, callback).await
    }
}

/// The `Location` of a redirect, resolved against the request's URL.
fn location(response: &reqwest::Response) -> Url {
    assert!(
        response.status().is_redirection(),
        "expected a redirect from {}, got {}",
        response.url(),
        response.status()
    );
    let location = response.headers()["location"].to_str().unwrap();
    response.url().join(location).unwrap()
}

/// Sends the browser to the callback and returns the connection id the app is given.
async fn finish_connect(browser: &reqwest::Client, callback: Url) -> String {
    support::returned_connection(&location(&browser.get(callback).send().await.unwrap()))
}

/// Waits (bounded, by `eventually`) until `check` holds; returns how long it took.
async fn within(limit: Duration, what: &str, check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    eventually(limit, what, check).await;
    started.elapsed()
}

/// Waits until every stored access token of `ids` has expired.
async fn until_expired(instance: &Instance, ids: &[String]) {
    within(Duration::from_secs(10), "tokens expire", async || {
        for id in ids {
            let connection = instance.json(&format!("v1/connections/{id}")).await;
            let expires = connection["expires_at"].as_str().unwrap_or_default();
            let expires = time::OffsetDateTime::parse(
                expires,
                &time::format_description::well_known::Rfc3339,
            )
            .expect("expires_at is RFC 3339");
            if expires >= time::OffsetDateTime::now_utc() {
                return false;
            }
        }
        true
    })
    .await;
}

// ----- the tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_behave_as_one_gateway() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = seed_oauth::spawn(SeedOAuthConfig {
        rotate_refresh_tokens: true,
        access_token_ttl: Duration::from_secs(3600),
        ..SeedOAuthConfig::default()
    })
    .await
    .unwrap();
    let deployment = Deployment::new(emulator.base_url(), None).await;
    let instances = deployment.start(3).await;
    let [a, b, c] = &instances[..] else {
        unreachable!()
    };
    for instance in &instances {
        within(
            Duration::from_secs(5),
            "each instance hears the others",
            async || {
                let ready: Value = instance
                    .get("ready")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ready["workers"]["changes"] == "listening"
            },
        )
        .await;
    }

    // A connect flow started on A finishes on B: the load balancer sent the provider's
    // redirect back to another instance. Nothing of the flow lives in A's memory.
    let (browser, callback) = a.start_connect("flow-user").await;
    let mut on_b = callback.clone();
    on_b.set_port(b.base.port()).unwrap();
    let id = finish_connect(&browser, on_b).await;
    assert_eq!(
        c.json(&format!("v1/connections/{id}")).await["status"],
        "active"
    );

    // The refresh storm: connections whose tokens all expired, then hundreds of concurrent
    // proxied calls over the three instances. One token call per connection, every call 200.
    const STORM_CONNECTIONS: usize = 40;
    const CALLS_PER_CONNECTION: usize = 8;
    emulator
        .control
        .set_access_token_ttl(Duration::from_secs(1));
    let mut ids = Vec::new();
    for n in 0..STORM_CONNECTIONS {
        ids.push(instances[n % 3].connect(&format!("storm-user-{n}")).await);
    }
    emulator
        .control
        .set_access_token_ttl(Duration::from_secs(3600));
    until_expired(c, &ids).await;
    let refreshes_before = emulator.control.token_calls_by_grant("refresh_token");
    let calls: Vec<_> = (0..STORM_CONNECTIONS * CALLS_PER_CONNECTION)
        .map(|n| {
            let instance = &instances[n % 3];
            let request = instance.get(&format!("v1/proxy/{}/v1/deals", ids[n % ids.len()]));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut statuses = HashMap::<String, usize>::new();
    for call in calls {
        let status = match call.await.unwrap() {
            Ok(code) => code.to_string(),
            Err(err) => format!("error: {err}"),
        };
        *statuses.entry(status).or_default() += 1;
    }
    let refreshes = emulator.control.token_calls_by_grant("refresh_token") - refreshes_before;
    println!(
        "storm: {} proxied calls over 3 instances for {STORM_CONNECTIONS} expired connections: \
         {statuses:?}; {refreshes} refresh calls at the provider",
        STORM_CONNECTIONS * CALLS_PER_CONNECTION
    );
    assert_eq!(
        statuses.get("200"),
        Some(&(STORM_CONNECTIONS * CALLS_PER_CONNECTION)),
        "every call answers 200: {statuses:?}"
    );
    assert_eq!(
        refreshes, STORM_CONNECTIONS as u64,
        "one token call per connection"
    );
    assert_eq!(
        emulator.control.reuse_events(),
        0,
        "no refresh token used twice"
    );

    // A delete through A: B and C, which both hold the connection in their caches, answer 404
    // within a second.
    let doomed = &ids[0];
    for instance in [b, c] {
        assert_eq!(instance.proxy_deals(doomed).await, 200);
    }
    let response = a
        .request(reqwest::Method::DELETE, &format!("v1/connections/{doomed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for (name, instance) in [("B", b), ("C", c)] {
        let took = within(
            Duration::from_secs(1),
            &format!("{name} stops serving the deleted connection"),
            async || instance.proxy_deals(doomed).await == 404,
        )
        .await;
        println!("{name} answered 404 for the deleted connection after {took:?}");
    }

    // An integration created through A is listed by C within a second; deleted, it goes.
    let table = json!({
        "provider": "oauth2",
        "client_id": "second-client",
        "client_secret": "second-secret",
        "authorization_url": emulator.base_url().join("oauth/authorize").unwrap().as_str(),
        "token_url": emulator.base_url().join("oauth/token").unwrap().as_str(),
        "api_base_url": emulator.base_url().as_str(),
    });
    let lists = async |instance: &Instance, key: &str| {
        instance.json("v1/integrations").await["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["key"] == key)
    };
    assert!(!lists(c, "crm-two").await);
    let response = a
        .request(reqwest::Method::PUT, "v1/integrations/crm-two")
        .json(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let took = within(
        Duration::from_secs(1),
        "C lists the new integration",
        async || lists(c, "crm-two").await,
    )
    .await;
    println!("C listed the integration created on A after {took:?}");
    let response = a
        .request(reqwest::Method::DELETE, "v1/integrations/crm-two")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    within(
        Duration::from_secs(1),
        "C drops the deleted integration",
        async || !lists(c, "crm-two").await,
    )
    .await;

    // The database drops every connection (a restart, a failover, a network cut): each
    // instance's listener is among them, so notifications sent meanwhile would be lost. A
    // connection deleted through A right then must still not be served by B, which had it
    // cached, and every instance works again once its pool reconnects.
    let cached = &ids[1];
    assert_eq!(b.proxy_deals(cached).await, 200);
    let dropped = drop_database_connections(&deployment.database).await;
    assert!(
        dropped >= 3,
        "every instance had connections ({dropped} dropped)"
    );
    within(Duration::from_secs(10), "A works again", async || {
        a.get("health")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let response = a
        .request(reqwest::Method::DELETE, &format!("v1/connections/{cached}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    within(
        Duration::from_secs(1),
        "B stops serving a connection deleted while its listener was down",
        async || b.proxy_deals(cached).await == 404,
    )
    .await;
    for instance in [a, b, c] {
        assert_eq!(instance.proxy_deals(&ids[2]).await, 200, "working again");
    }

    for mut instance in instances {
        instance.kill().await;
    }
}

/// Terminates every session of the test database, as a database restart would; the shared
/// server and other databases are left alone. Returns how many were cut.
async fn drop_database_connections(database: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database.name)
    .fetch_one(&mut support::admin().await)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_in_a_refresh_storm_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    const CONNECTIONS: usize = 24;
    const WORKERS: usize = 24;
    let seed = std::env::var("TETHER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e7e_c0de_u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let emulator = seed_oauth::spawn(SeedOAuthConfig {
        rotate_refresh_tokens: true,
        access_token_ttl: Duration::from_secs(1),
        ..SeedOAuthConfig::default()
    })
    .await
    .unwrap();
    // The app takes a moment over each event: a second delivery of the same event by another
    // instance in that moment is counted as overlapping.
    let receiver = Receiver::spawn_handling_for(Duration::from_millis(20)).await;
    let deployment = Deployment::new(emulator.base_url(), Some(receiver.url())).await;
    let mut instances = deployment.start(3).await;

    let mut ids = Vec::new();
    for n in 0..CONNECTIONS {
        ids.push(instances[n % 3].connect(&format!("kill-user-{n}")).await);
    }
    emulator
        .control
        .set_access_token_ttl(Duration::from_secs(3600));
    until_expired(&instances[0], &ids).await;

    // The storm: forced refreshes and proxied calls for every connection, spread over the
    // three instances, until B is killed and a moment after.
    let stop = Arc::new(AtomicBool::new(false));
    let server_errors = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let instance = &instances[worker % 3];
            let (client, base) = (instance.api.clone(), instance.base.clone());
            let (ids, stop, server_errors) = (ids.clone(), stop.clone(), server_errors.clone());
            tokio::spawn(async move {
                let mut n = worker;
                while !stop.load(Ordering::SeqCst) {
                    let id = &ids[n % ids.len()];
                    let path = if n % 2 == 0 {
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
                    match sent {
                        Ok(response) if response.status().as_u16() == 500 => {
                            server_errors.lock().unwrap().push(path);
                        }
                        Ok(_) => {}
                        // Its instance was killed, or it waited on the killed one's lease.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let kill_after = Duration::from_millis(rng.random_range(100..800));
    tokio::time::sleep(kill_after).await;
    instances[1].kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .expect("storm clients stop")
            .unwrap();
    }
    let (a, c) = (&instances[0], &instances[2]);

    // Every connection works, or needs reauthorization and the app was told.
    let mut needs_reauth = Vec::new();
    for id in &ids {
        let status = a.json(&format!("v1/connections/{id}")).await["status"]
            .as_str()
            .unwrap()
            .to_owned();
        let status = if status == "active" {
            // Long enough to wait out a refresh lease the killed instance held.
            match c.proxy_deals(id).await {
                200 => continue,
                409 => a.json(&format!("v1/connections/{id}")).await["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                code => panic!("{id} is active but the proxy answered {code}"),
            }
        } else {
            status
        };
        assert_eq!(
            status, "needs_reauth",
            "{id} is neither working nor needs_reauth"
        );
        needs_reauth.push(id.clone());
    }

    // Every event committed with a change is delivered, by the survivors if the killed
    // instance held it (once its claim expires), and the app has it.
    let pending = async || {
        let log = a.json("v1/webhooks/deliveries?limit=1000").await;
        log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] != "delivered" || !receiver.has_id(d["id"].as_str().unwrap()))
            .count()
    };
    within(
        Duration::from_secs(180),
        "every webhook event is delivered",
        async || pending().await == 0,
    )
    .await;
    for id in &needs_reauth {
        let log = a
            .json(&format!(
                "v1/webhooks/deliveries?connection_id={id}&limit=1000"
            ))
            .await;
        let told = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["type"] == "connection.refresh_failed");
        assert!(told, "{id} needs reauthorization and the app was told");
    }
    let server_errors = server_errors.lock().unwrap().clone();
    println!(
        "seed {seed:#x}: B killed after {kill_after:?} of the storm; {} of {CONNECTIONS} \
         connections needed reauthorization (provider saw {} reuses); {} refreshed and {} \
         refresh_failed events delivered; {} refresh calls at the provider; 500s: {server_errors:?}",
        needs_reauth.len(),
        emulator.control.reuse_events(),
        receiver.count_of_type("connection.refreshed"),
        receiver.count_of_type("connection.refresh_failed"),
        emulator.control.token_calls_by_grant("refresh_token"),
    );
    assert!(server_errors.is_empty(), "no 500 during the storm");
    assert_eq!(
        receiver.overlapping(),
        0,
        "an event was delivered by two instances at once"
    );

    for instance in &mut instances {
        instance.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_works_on_postgres() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = seed_oauth::spawn(SeedOAuthConfig {
        rotate_refresh_tokens: true,
        ..SeedOAuthConfig::default()
    })
    .await
    .unwrap();
    let deployment = Deployment::new(emulator.base_url(), None).await;
    let keys = deployment.keys.clone();

    // Migrations first, from a deploy job, twice (idempotent); then an instance.
    for _ in 0..2 {
        let out = deployment.command(&["migrate"], &keys).await;
        assert!(out.contains("database is up to date"), "{out}");
    }
    let mut instances = deployment.start(1).await;
    let a = &instances[0];
    let id = a.connect("cli-user").await;
    let other = a.connect("cli-other").await;

    let out = deployment.command(&["connections", "list"], &keys).await;
    assert!(out.contains(&id) && out.contains(&other), "{out}");
    let out = deployment
        .command(&["connections", "list", "--end-user", "cli-user"], &keys)
        .await;
    assert!(out.contains(&id) && !out.contains(&other), "{out}");
    let shown: Value = serde_json::from_str(
        &deployment
            .command(&["connections", "show", &id], &keys)
            .await,
    )
    .unwrap();
    assert_eq!(shown["status"], "active");
    let out = deployment.command(&["integrations", "list"], &keys).await;
    assert!(out.contains("crm"), "{out}");

    // A refresh by the CLI: one token call, and the running instance drops its cached copy.
    assert_eq!(a.proxy_deals(&id).await, 200);
    let before = emulator.control.token_calls_by_grant("refresh_token");
    deployment
        .command(&["connections", "refresh", &id], &keys)
        .await;
    assert_eq!(
        emulator.control.token_calls_by_grant("refresh_token"),
        before + 1
    );
    assert_eq!(
        a.proxy_deals(&id).await,
        200,
        "the instance uses the new tokens"
    );

    // Key rotation: a new key first, the old one after it.
    let rotated = format!("{},{keys}", tether_core::vault::Vault::generate_key_entry());
    let out = deployment.command(&["keys", "rotate"], &rotated).await;
    assert!(out.contains("2 connection(s)"), "{out}");
    let out = deployment.command(&["keys", "rotate"], &rotated).await;
    assert!(
        out.contains("0 connection(s)"),
        "a second run has nothing to do: {out}"
    );
    let shown: Value = serde_json::from_str(
        &deployment
            .command(&["connections", "refresh", &other], &rotated)
            .await,
    )
    .unwrap();
    assert_eq!(
        shown["status"], "active",
        "re-sealed credentials open and refresh"
    );

    // A delete by the CLI: the running instance, which had the connection cached, stops
    // serving it within a second.
    deployment
        .command(&["connections", "delete", &id], &rotated)
        .await;
    within(
        Duration::from_secs(1),
        "the instance forgets the deleted connection",
        async || a.proxy_deals(&id).await == 404,
    )
    .await;
    let out = deployment.command(&["connections", "list"], &rotated).await;
    assert!(!out.contains(&id) && out.contains(&other), "{out}");

    for instance in &mut instances {
        instance.kill().await;
    }
}

/// The operator console and the connection history on PostgreSQL, across instances: the
/// history written by one instance is read through another, and a console session signed in
/// on one instance is accepted by the other (the cookie is sealed by the shared vault key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_and_history_work_across_instances() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = seed_oauth::spawn(SeedOAuthConfig::default()).await.unwrap();
    let deployment = Deployment::new(emulator.base_url(), None).await;
    let instances = deployment.start(2).await;
    let [a, b] = &instances[..] else {
        unreachable!()
    };
    let id = a.connect("console-pg").await;
    let refreshed = a
        .get(&format!(
            "v1/connections/{id}/credentials?force_refresh=true"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let events = b.json(&format!("v1/connections/{id}/events")).await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["refreshed", "created"], "{events}");

    // Sign in on one instance...
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let signed_in = browser
        .post(a.base.join("dashboard/sign-in").unwrap())
        .header("origin", a.base.origin().ascii_serialization())
        .form(&[("api_key", API_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // ... and use the console on the other: search, counts, the timeline.
    let mut search = b.base.join("dashboard/connections").unwrap();
    search.query_pairs_mut().append_pair("q", "console-pg");
    let page = browser
        .get(search)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&id));
    let overview = browser
        .get(b.base.join("dashboard").unwrap())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(overview.contains("1 connections by status"), "{overview}");
    assert!(
        overview.contains("crm: 1 refreshed, 0 failed"),
        "{overview}"
    );
    let detail = browser
        .get(b.base.join(&format!("dashboard/connections/{id}")).unwrap())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains("Refreshed") && detail.contains("Connected"));
    assert!(!detail.contains(API_KEY) && !detail.contains("seed-secret"));
}

/// An agent token revoked through one instance is refused by another within a second: every
/// `/mcp` request looks the token's hash up in the shared database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_token_revoked_on_one_instance_is_refused_on_another() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = seed_oauth::spawn(SeedOAuthConfig::default()).await.unwrap();
    let deployment = Deployment::new(emulator.base_url(), None).await;
    let instances = deployment.start(2).await;
    let [a, b] = &instances[..] else {
        unreachable!()
    };
    let created: Value = a
        .request(reqwest::Method::POST, "v1/agent-tokens")
        .json(&json!({"end_user_id": "agent-pg", "access": "read"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let list_tools = || {
        let token = token.clone();
        let url = b.base.join("mcp").unwrap();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(list_tools().await, 200);
    let revoked = a
        .request(
            reqwest::Method::DELETE,
            &format!("v1/agent-tokens/{}", created["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    within(
        Duration::from_secs(1),
        "instance B refuses the revoked token",
        async || list_tools().await == 401,
    )
    .await;
}

/// Key rotation on PostgreSQL while three instances serve and write. The instances are
/// restarted one by one with the new key added after the old (they keep sealing under the
/// announced old key meanwhile), then `tether keys rotate` runs while every instance keeps
/// connecting, importing and refreshing. It announces the new key (every instance hears it at
/// once), re-seals, and ends only when nothing is left under the old key, which `keys status`
/// confirms. With the old key removed, restarted instances read every connection (no 500),
/// and an instance given only the old key refuses to start, naming the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_while_three_instances_write_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = seed_oauth::spawn(SeedOAuthConfig {
        rotate_refresh_tokens: true,
        access_token_ttl: Duration::from_secs(3600),
        ..SeedOAuthConfig::default()
    })
    .await
    .unwrap();
    let deployment = Deployment::new(emulator.base_url(), None).await;
    let old = deployment.keys.clone();
    let new = tether_core::vault::Vault::generate_key_entry();
    let key_id = |entry: &str| entry.split_once(':').unwrap().0.to_owned();
    let (old_id, new_id) = (key_id(&old), key_id(&new));
    let both = format!("{new},{old}");

    let mut instances = deployment.start(3).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(instances[n % 3].connect(&format!("before-{n}")).await);
    }
    // A rolling restart with both keys: the announced (old) key still seals.
    for (n, instance) in instances.iter_mut().enumerate() {
        instance.kill().await;
        *instance = deployment.spawn_with_keys(n, &both).await;
        ids.push(instance.connect(&format!("restarted-{n}")).await);
    }
    let status = deployment.command(&["keys", "status"], &both).await;
    assert_eq!(
        status_line(&status, &new_id),
        [new_id.as_str(), "yes", "no", "0"],
        "nothing under the new key before the rotation: {status}"
    );

    // Every instance writes while the rotation runs: a connect flow, an import, a refresh.
    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::<String>::new());
    let written = Mutex::new(Vec::<String>::new());
    let write = async |instance: &Instance, worker: usize| {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) || n < 3 {
            let id = instance.connect(&format!("during-{worker}-{n}")).await;
            written.lock().unwrap().push(id.clone());
            let imported = instance
                .request(reqwest::Method::POST, "v1/connections")
                .json(&json!({"integration": "crm", "end_user": {"id": format!("imported-{worker}-{n}")},
                    "credentials": {"access_token": "imported", "expires_in": 86400}}))
                .send()
                .await
                .unwrap();
            match imported.status().as_u16() {
                201 => {
                    let body: Value = imported.json().await.unwrap();
                    written
                        .lock()
                        .unwrap()
                        .push(body["id"].as_str().unwrap().to_owned());
                }
                code => failures.lock().unwrap().push(format!("import: {code}")),
            }
            let refreshed = instance
                .get(&format!(
                    "v1/connections/{id}/credentials?force_refresh=true"
                ))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if refreshed != 200 {
                failures
                    .lock()
                    .unwrap()
                    .push(format!("refresh: {refreshed}"));
            }
            n += 1;
        }
    };
    let rotation = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = deployment.command(&["keys", "rotate"], &both).await;
        // Writes go on a moment after the rotation ended, under the new key.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        out
    };
    let (said, (), (), ()) = tokio::join!(
        rotation,
        write(&instances[0], 0),
        write(&instances[1], 1),
        write(&instances[2], 2)
    );
    assert!(
        said.contains("No stored value is sealed under an older key"),
        "{said}"
    );
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "every write succeeded: {failures:?}");
    ids.extend(written.into_inner().unwrap());
    println!(
        "rotation with {} connections written meanwhile: {said}",
        ids.len()
    );

    let status = deployment.command(&["keys", "status"], &both).await;
    assert_eq!(
        status_line(&status, &old_id),
        [old_id.as_str(), "yes", "no", "0"],
        "nothing under the old key: {status}"
    );
    assert_eq!(
        status_line(&status, &new_id)[..3],
        [new_id.as_str(), "yes", "yes"],
        "the new key is configured and announced: {status}"
    );

    // The old key leaves every instance's configuration.
    for instance in &mut instances {
        instance.kill().await;
    }
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(deployment.spawn_with_keys(n, &new).await);
    }
    for (n, id) in ids.iter().enumerate() {
        let response = instances[n % 3]
            .get(&format!("v1/connections/{id}/credentials"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{id} reads after the old key went");
    }

    // An instance that was never given the new key cannot start, and says why in one line.
    let output = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(deployment.dir.path().join("tether.toml"))
        .current_dir(deployment.dir.path())
        .env_clear()
        .env("TETHER_SERVER__LISTEN", "127.0.0.1:0")
        .env("TETHER_DATABASE__URL", &deployment.database.url)
        .env("TETHER_ENCRYPTION_KEYS", &old)
        .env("TETHER_API_KEY", API_KEY)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("a refused start ends")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("encryption key {new_id} still seals")),
        "{stderr}"
    );

    for instance in &mut instances {
        instance.kill().await;
    }
}

/// The columns of the line of `tether keys status` about `key_id`.
fn status_line<'a>(status: &'a str, key_id: &str) -> Vec<&'a str> {
    status
        .lines()
        .find(|l| l.starts_with(key_id))
        .unwrap_or_else(|| panic!("no line for {key_id}: {status}"))
        .split_whitespace()
        .collect()
}
