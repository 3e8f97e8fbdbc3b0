//! The API-key edge from outside, with the built `tether` binary: the first-run key revoked
//! for good (by `tether keys revoke-first-run`, or by configuring `[api] keys`), and, with
//! several instances on one PostgreSQL database, wrong-key windows and console sign-outs that
//! hold on every instance (`tether console sign-out-all` included).
//!
//! The PostgreSQL tests need the server `.ci/run` starts (or `TETHER_TEST_DATABASE_URL`);
//! each makes a database of its own and drops it after. Every process is killed by its pid
//! (`kill_on_drop`, also on panic); every wait is bounded.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::redirect::Policy;
use support::TestDatabase;
use tether_test_support::{TetherProcess, eventually, tether_command};
use tokio::process::Command;
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
/// An API key of the minimum length (32 characters).
const CONFIGURED_KEY: &str = "configured-key-for-auth-edge-0123";

/// `tether` with a clean environment in `dir`, on a free port.
fn tether(dir: &Path) -> Command {
    tether_command(BIN, dir)
}

/// Starts `tether serve` and waits (bounded) until it says where it listens.
async fn serve(mut command: Command) -> TetherProcess {
    command.arg("serve");
    TetherProcess::start(command, Duration::from_secs(60)).await
}

/// Runs `tether serve` expecting it to refuse to start: returns its one-line error.
async fn serve_fails(mut command: Command) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), command.arg("serve").output())
        .await
        .expect("tether exits within 60 s")
        .unwrap();
    assert!(!output.status.success(), "tether served");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

/// Runs a maintenance command; returns (success, stdout, stderr).
async fn run(mut command: Command, args: &[&str]) -> (bool, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), command.args(args).output())
        .await
        .expect("the command ends within 60 s")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn status_with_key(base: &Url, key: &str) -> u16 {
    client()
        .get(base.join("v1/connections").unwrap())
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ----- the first-run key ----------------------------------------------------------------------

#[tokio::test]
async fn the_first_run_key_is_refused_for_good_after_revoke_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(tether(dir.path())).await;
    let key = served.printed_key().expect("a first-run key");
    assert_eq!(status_with_key(served.base(), &key).await, 200);
    let cookie = sign_in(served.base(), &key).await;
    assert_eq!(console_status(served.base(), &cookie).await, 200);

    let (ok, said, _) = run(tether(dir.path()), &["keys", "revoke-first-run"]).await;
    assert!(ok);
    assert!(said.contains("revoked the first-run API key"), "{said}");
    // The running server stops accepting it (it rechecks the store every few seconds), and
    // the console session it signed in has ended.
    assert_eq!(console_status(served.base(), &cookie).await, 303);
    eventually(
        Duration::from_secs(20),
        "the running server to refuse the revoked key",
        || async { status_with_key(served.base(), &key).await == 401 },
    )
    .await;
    let refused = client()
        .post(served.base().join("dashboard/sign-in").unwrap())
        .header("origin", served.base().origin().ascii_serialization())
        .form(&[("api_key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "no new console session either");
    drop(served);
    let (ok, said, _) = run(tether(dir.path()), &["keys", "revoke-first-run"]).await;
    assert!(ok, "running it again is harmless");
    assert!(said.contains("already revoked"), "{said}");

    // No key configured and the only one revoked: no new key is minted, serving refuses.
    let refused = serve_fails(tether(dir.path())).await;
    assert!(refused.contains("revoked"), "{refused}");
    // With a configured key, the revoked one stays refused.
    let mut configured = tether(dir.path());
    configured.env("TETHER_API_KEY", CONFIGURED_KEY);
    let served = serve(configured).await;
    assert!(served.printed_key().is_none());
    assert_eq!(status_with_key(served.base(), &key).await, 401);
    assert_eq!(status_with_key(served.base(), CONFIGURED_KEY).await, 200);
}

#[tokio::test]
async fn configuring_api_keys_revokes_the_first_run_key_even_once_they_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(tether(dir.path())).await;
    let key = served.printed_key().expect("a first-run key");
    drop(served);

    let mut configured = tether(dir.path());
    configured.env("TETHER_API_KEY", CONFIGURED_KEY);
    let mut served = serve(configured).await;
    assert_eq!(status_with_key(served.base(), &key).await, 401);
    assert_eq!(status_with_key(served.base(), CONFIGURED_KEY).await, 200);
    served.kill().await;
    let logged = served.stderr();
    assert!(
        logged.contains("the first-run API key was revoked"),
        "{logged}"
    );

    // The keys removed again: the first-run key does not come back, and none is minted.
    let refused = serve_fails(tether(dir.path())).await;
    assert!(refused.contains("[api] keys"), "{refused}");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tether(dir.path());
    command.env("TETHER_API_KEY", CONFIGURED_KEY);
    let mut served = serve(command).await;
    let base = served.base().clone();
    // As a TLS proxy left out of server.trusted_proxies would send them.
    for (header, value) in [
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-for", "198.51.100.8"),
        ("forwarded", "for=198.51.100.9"),
    ] {
        let status = client()
            .get(base.join("v1/connections").unwrap())
            .bearer_auth("wrong-key-0123456789abcdef0123456789")
            .header(header, value)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    served.kill().await;
    let logged = served.stderr();
    let warnings = logged.matches("not in server.trusted_proxies").count();
    assert_eq!(warnings, 1, "once per peer: {logged}");
    assert!(
        !logged.contains("198.51.100.7"),
        "the header is not believed: {logged}"
    );
}

// ----- several instances on PostgreSQL ----------------------------------------------------------

/// Instances sharing one database and one encryption key, each in a directory of its own.
struct Deployment {
    dir: tempfile::TempDir,
    database: TestDatabase,
    keys: String,
}

impl Deployment {
    async fn new() -> Deployment {
        Deployment {
            dir: tempfile::tempdir().unwrap(),
            database: TestDatabase::create("authedge").await,
            keys: tether_core::vault::Vault::generate_key_entry(),
        }
    }

    fn command(&self, workdir: &str) -> Command {
        let workdir = self.dir.path().join(workdir);
        std::fs::create_dir_all(&workdir).unwrap();
        let mut command = tether(&workdir);
        command
            .env("TETHER_DATABASE__URL", &self.database.url)
            .env("TETHER_ENCRYPTION_KEYS", &self.keys)
            .env("TETHER_API_KEY", CONFIGURED_KEY);
        command
    }

    async fn instance(&self, n: usize) -> TetherProcess {
        serve(self.command(&format!("instance-{n}"))).await
    }
}

/// Signs in to the console of `base` with `key`; returns the session cookie (`name=value`).
async fn sign_in(base: &Url, key: &str) -> String {
    let response = client()
        .post(base.join("dashboard/sign-in").unwrap())
        .header("origin", base.origin().ascii_serialization())
        .form(&[("api_key", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The status of a console page with this cookie (200 signed in, 303 to the sign-in page).
async fn console_status(base: &Url, cookie: &str) -> u16 {
    client()
        .get(base.join("dashboard/connections").unwrap())
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The session's CSRF token, from the sign-out form of a console page.
async fn csrf(base: &Url, cookie: &str) -> String {
    let html = client()
        .get(base.join("dashboard").unwrap())
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_through_one_instance_count_on_another() {
    let deployment = Deployment::new().await;
    let a = deployment.instance(0).await;
    let b = deployment.instance(1).await;
    // The default limit: 10 wrong keys a minute. All ten through A...
    for n in 0..10 {
        let guess = format!("guess-{n:02}-0123456789abcdef0123456789");
        assert_eq!(status_with_key(a.base(), &guess).await, 401);
    }
    // ... and B refuses the next one: it counted A's.
    assert_eq!(
        status_with_key(b.base(), "guess-10-0123456789abcdef0123456789").await,
        429
    );
    // The right key passes on both.
    assert_eq!(status_with_key(a.base(), CONFIGURED_KEY).await, 200);
    assert_eq!(status_with_key(b.base(), CONFIGURED_KEY).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sign_outs_hold_on_every_instance() {
    let deployment = Deployment::new().await;
    let a = deployment.instance(0).await;
    let b = deployment.instance(1).await;
    let first = sign_in(a.base(), CONFIGURED_KEY).await;
    let second = sign_in(b.base(), CONFIGURED_KEY).await;
    assert_eq!(console_status(b.base(), &first).await, 200);
    assert_eq!(console_status(a.base(), &second).await, 200);

    // Signing out on A ends the session on B too, though its cookie was copied before.
    let token = csrf(a.base(), &first).await;
    let signed_out = client()
        .post(a.base().join("dashboard/sign-out").unwrap())
        .header("origin", a.base().origin().ascii_serialization())
        .header("cookie", &first)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    assert_eq!(console_status(b.base(), &first).await, 303);
    assert_eq!(
        console_status(a.base(), &second).await,
        200,
        "only that one"
    );

    // The operator ends every session from the command line.
    let (ok, said, err) = run(deployment.command("cli"), &["console", "sign-out-all"]).await;
    assert!(ok, "{err}");
    assert!(said.contains("ended 1 console session"), "{said}");
    assert_eq!(console_status(a.base(), &second).await, 303);
    assert_eq!(console_status(b.base(), &second).await, 303);
}
