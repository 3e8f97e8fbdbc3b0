//! `tether keys rotate`: every credential ends up under a new key, still opens to the same
//! secret, and a second run has nothing left to do.

use std::process::Command;

use tether_test_support::{TetherProcess, eventually, tether_command};

use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::vault::Vault;
use tether_core::{AccessToken, RefreshToken};
use tether_store::{ConnectionRow, ConnectionStatus, SqliteStore, Store};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

fn rotate(dir: &std::path::Path) -> String {
    let output = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env("RUST_LOG", "warn")
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn tokens(access: &str) -> Credentials {
    Credentials::Oauth2(OAuth2Tokens {
        access_token: AccessToken::new(access),
        refresh_token: Some(RefreshToken::new("refresh")),
        token_type: "Bearer".into(),
        scope: None,
        expires_at: Some(4_000_000_000),
        extra: Default::default(),
    })
}

#[tokio::test]
async fn rotation_reseals_every_connection_under_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tether.db").display());
    Vault::load_or_create_key_file(&dir.path().join("tether.keys")).unwrap();
    // The old keyring as it is now, held inline so it cannot re-read the file later.
    let old = Vault::from_spec(&std::fs::read_to_string(dir.path().join("tether.keys")).unwrap())
        .unwrap();
    {
        let store = SqliteStore::connect(&url).await.unwrap();
        for n in 0..3 {
            let id = format!("conn_{n:032x}");
            let credentials = tokens(&format!("access-{n}"));
            store
                .insert_connection(&ConnectionRow {
                    id: id.clone(),
                    integration: "crm".into(),
                    end_user_id: format!("user-{n}"),
                    end_user_email: None,
                    end_user_display_name: None,
                    status: ConnectionStatus::Active,
                    credentials: tether_store::Sealed::from_bytes(
                        credentials.seal(&old, &id).unwrap(),
                    ),
                    credentials_version: 1,
                    access_expires_at: credentials.expires_at(),
                    metadata: "{}".into(),
                    last_error: None,
                    refresh_failures: 0,
                    next_refresh_at: None,
                    created_at: 1,
                    updated_at: 1,
                    provider_account: None,
                })
                .await
                .unwrap();
        }
    }

    let said = rotate(dir.path());
    assert!(
        said.starts_with("3 connection(s), 0 integration(s), 0 OAuth flow(s) and 0 MCP signing key(s) re-encrypted"),
        "{said}"
    );
    let new = Vault::load_or_create_key_file(&dir.path().join("tether.keys")).unwrap();
    assert_ne!(new.primary_key_id(), old.primary_key_id());
    let store = SqliteStore::connect(&url).await.unwrap();
    for n in 0..3 {
        let id = format!("conn_{n:032x}");
        let row = store.get_connection(&id).await.unwrap().unwrap();
        assert_eq!(
            Vault::key_id_of(&row.credentials).unwrap(),
            new.primary_key_id()
        );
        let opened = Credentials::open(&new, &id, &row.credentials).unwrap();
        assert_eq!(
            opened.get("access_token"),
            Some(format!("access-{n}").as_str())
        );
        // The old key alone no longer opens it.
        assert!(Credentials::open(&old, &id, &row.credentials).is_err());
    }
    drop(store);

    let said = rotate(dir.path());
    assert!(
        said.starts_with("3 connection(s), 0 integration(s), 0 OAuth flow(s) and 0 MCP signing key(s) re-encrypted"),
        "a second rotation adds another key: {said}"
    );
}

/// A running `tether serve` whose key file gains a new key from `tether keys rotate` opens
/// what was re-sealed under it without a restart, and SIGHUP reloads the file on demand.
#[tokio::test]
async fn a_running_instance_picks_up_a_rotated_key() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let api_key = "rotation-test-api-key-0123456789abcdef";
    let mut command = tether_command(BIN, dir.path());
    command
        .arg("serve")
        .env("TETHER_API_KEY", api_key)
        .env("RUST_LOG", "info");
    let mut served = TetherProcess::start(command, std::time::Duration::from_secs(30)).await;
    let url = served.base().clone();
    let http = reqwest::Client::new();
    // An integration and a connection, sealed under the first key.
    let put = http
        .put(format!("{url}v1/integrations/crm"))
        .bearer_auth(api_key)
        .json(&serde_json::json!({
            "provider": "oauth2", "client_id": "c", "client_secret": "s",
            "authorization_url": "https://crm.example.com/authorize",
            "token_url": "https://crm.example.com/token",
            "api_base_url": "https://crm.example.com/api",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let imported: serde_json::Value = http
        .post(format!("{url}v1/connections"))
        .bearer_auth(api_key)
        .json(
            &serde_json::json!({"integration": "crm", "end_user": {"id": "u"},
            "credentials": {"access_token": "token-before-rotation", "expires_in": 86400}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = imported["id"].as_str().unwrap().to_owned();

    let said = rotate(dir.path());
    assert!(
        said.starts_with("1 connection(s), 1 integration(s)"),
        "{said}"
    );
    // The running instance has never seen the new key; reading the re-sealed row makes it
    // re-read its key file.
    let credentials = http
        .get(format!("{url}v1/connections/{id}/credentials"))
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(credentials.status(), 200);
    let body: serde_json::Value = credentials.json().await.unwrap();
    assert_eq!(body["access_token"], "token-before-rotation");

    // SIGHUP reloads on demand.
    served.signal("HUP");
    eventually(
        std::time::Duration::from_secs(10),
        "a reload logged after SIGHUP",
        || async { served.stderr().contains("SIGHUP: encryption keys reloaded") },
    )
    .await;
    served.kill().await;
}

// ----- rotation while serving, key status, a key removed too early ---------------------------

const API_KEY: &str = "rotation-test-api-key-0123456789abcdef";

/// `tether serve` in `dir` (SQLite, the key file there), listening on loopback.
async fn serve(dir: &std::path::Path) -> (TetherProcess, url::Url) {
    serve_with(dir, &[]).await
}

/// [`serve`] with more environment (inline keys).
async fn serve_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (TetherProcess, url::Url) {
    let mut command = tether_command(BIN, dir);
    command
        .arg("serve")
        .envs(env.iter().copied())
        .env("TETHER_API_KEY", API_KEY)
        .env("RUST_LOG", "error");
    let served = TetherProcess::start(command, std::time::Duration::from_secs(30)).await;
    let base = served.base().clone();
    (served, base)
}

/// A `tether` command in `dir`: (success, stdout, stderr).
fn tether(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    tether_with(dir, args, &[])
}

/// [`tether`] with more environment (inline keys).
fn tether_with(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let output = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The `keys status` line of `key_id`, split into its columns.
fn status_of(status: &str, key_id: &str) -> Vec<String> {
    status
        .lines()
        .find(|l| l.starts_with(key_id))
        .unwrap_or_else(|| panic!("no line for {key_id} in:\n{status}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn key_id(entry: &str) -> String {
    entry.trim().split_once(':').unwrap().0.to_owned()
}

/// Imports a connection for `user` (a write that seals); returns the HTTP status and id.
async fn import(http: &reqwest::Client, base: &url::Url, user: &str) -> (u16, Option<String>) {
    let response = http
        .post(base.join("v1/connections").unwrap())
        .bearer_auth(API_KEY)
        .json(
            &serde_json::json!({"integration": "crm", "end_user": {"id": user},
            "credentials": {"access_token": format!("token-{user}"), "expires_in": 86400}}),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["id"].as_str().map(str::to_owned))
}

/// On SQLite, `tether keys rotate` runs while `tether serve` keeps importing connections and
/// replacing an integration: the rotation announces the new key, the instance follows it at
/// once, and the rotation ends only when nothing is left under the old key. `keys status` then
/// says so; with the old key removed from the key file, a restarted instance opens every
/// connection (none answers 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_while_serving_and_writing_loses_nothing_on_sqlite() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (mut served, base) = serve(dir.path()).await;
    let old_entry = std::fs::read_to_string(dir.path().join("tether.keys")).unwrap();
    let old_id = key_id(&old_entry);
    let http = reqwest::Client::new();
    let integration = serde_json::json!({
        "provider": "oauth2", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://crm.example.com/authorize",
        "token_url": "https://crm.example.com/token",
        "api_base_url": "https://crm.example.com/api",
    });
    let put = http
        .put(base.join("v1/integrations/crm").unwrap())
        .bearer_auth(API_KEY)
        .json(&integration)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    // Writes before, during and after the rotation.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        let integration = integration.clone();
        tokio::spawn(async move {
            let (mut ids, mut failures) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || n < 10 {
                let (status, id) = import(&http, &base, &format!("user-{n}")).await;
                match id {
                    Some(id) if status == 201 => ids.push(id),
                    _ => failures.push(status),
                }
                if n % 5 == 0 {
                    let put = http
                        .put(base.join("v1/integrations/crm").unwrap())
                        .bearer_auth(API_KEY)
                        .json(&integration)
                        .send()
                        .await
                        .unwrap();
                    if !put.status().is_success() {
                        failures.push(put.status().as_u16());
                    }
                }
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            (ids, failures)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dir_path = dir.path().to_owned();
    let said = tokio::task::spawn_blocking(move || rotate(&dir_path))
        .await
        .unwrap();
    assert!(
        said.contains("No stored value is sealed under an older key"),
        "{said}"
    );
    // A moment of writes after the rotation too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ids, failures) = writer.await.unwrap();
    assert!(failures.is_empty(), "every write succeeded: {failures:?}");
    assert!(ids.len() >= 10, "{} connections written", ids.len());

    let keys = std::fs::read_to_string(dir.path().join("tether.keys")).unwrap();
    let new_entry = keys.lines().next().unwrap().to_owned();
    let new_id = key_id(&new_entry);
    let (ok, status, err) = tether(dir.path(), &["keys", "status"]);
    assert!(ok, "{err}");
    assert_eq!(
        status_of(&status, &old_id)[1..],
        ["yes", "no", "0"],
        "{status}"
    );
    let expected = (ids.len() + 1).to_string();
    assert_eq!(
        status_of(&status, &new_id)[1..],
        ["yes", "yes", expected.as_str()],
        "every connection and the integration under the new key: {status}"
    );

    // The old key goes; a restart opens everything.
    served.kill().await;
    std::fs::remove_file(dir.path().join("tether.keys")).unwrap();
    tether_core::vault::write_key_file(&dir.path().join("tether.keys"), &new_entry).unwrap();
    let (mut served, base) = serve(dir.path()).await;
    for id in &ids {
        let read = http
            .get(
                base.join(&format!("v1/connections/{id}/credentials"))
                    .unwrap(),
            )
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "{id}");
    }
    served.kill().await;
}

/// A key removed from the configuration while it still seals a value: `tether serve` refuses
/// to start, in one line naming the key and the count; `keys status` shows the key as needed
/// and not configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_key_that_still_seals_values() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (mut served, base) = serve(dir.path()).await;
    let old_id = key_id(&std::fs::read_to_string(dir.path().join("tether.keys")).unwrap());
    let http = reqwest::Client::new();
    let put = http
        .put(base.join("v1/integrations/crm").unwrap())
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({
            "provider": "oauth2", "client_id": "c", "client_secret": "s",
            "authorization_url": "https://crm.example.com/authorize",
            "token_url": "https://crm.example.com/token",
            "api_base_url": "https://crm.example.com/api",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    for user in ["a", "b"] {
        assert_eq!(import(&http, &base, user).await.0, 201);
    }
    served.kill().await;

    // The operator replaces the key instead of rotating.
    std::fs::remove_file(dir.path().join("tether.keys")).unwrap();
    let other = Vault::generate_key_entry();
    tether_core::vault::write_key_file(&dir.path().join("tether.keys"), &other).unwrap();
    let (ok, _, stderr) = tether(dir.path(), &["serve"]);
    assert!(!ok, "serve must not start");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("encryption key {old_id} still seals 3 value(s)")),
        "{stderr}"
    );
    let (ok, status, err) = tether(dir.path(), &["keys", "status"]);
    assert!(ok, "{err}");
    assert_eq!(
        status_of(&status, &old_id)[1..],
        ["no", "yes", "3"],
        "{status}"
    );
    assert_eq!(
        status_of(&status, &key_id(&other))[1..],
        ["yes", "no", "0"],
        "{status}"
    );
}

/// An instance that does not hold the key a rotation announced (its keys are inline, and it
/// was not given the new one) refuses to seal: an import answers 503
/// `sealing_key_unavailable` (problem+json) and stores nothing, rather than storing a value
/// under the old key that the finished rotation would leave unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_the_announced_key_refuses_to_seal() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let old = Vault::generate_key_entry();
    let (mut served, base) = serve_with(dir.path(), &[("TETHER_ENCRYPTION_KEYS", &old)]).await;
    let http = reqwest::Client::new();
    let put = http
        .put(base.join("v1/integrations/crm").unwrap())
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({
            "provider": "oauth2", "client_id": "c", "client_secret": "s",
            "authorization_url": "https://crm.example.com/authorize",
            "token_url": "https://crm.example.com/token",
            "api_base_url": "https://crm.example.com/api",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(import(&http, &base, "before").await.0, 201);

    let both = format!("{},{old}", Vault::generate_key_entry());
    let (ok, said, err) = tether_with(
        dir.path(),
        &["keys", "rotate"],
        &[("TETHER_ENCRYPTION_KEYS", &both)],
    );
    assert!(ok, "{err}");
    assert!(
        said.starts_with("1 connection(s), 1 integration(s)"),
        "{said}"
    );

    // The rotation waited until every instance had polled: this one knows the new key is
    // announced, and does not hold it.
    let response = http
        .post(base.join("v1/connections").unwrap())
        .bearer_auth(API_KEY)
        .json(
            &serde_json::json!({"integration": "crm", "end_user": {"id": "after"},
            "credentials": {"access_token": "t", "expires_in": 86400}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "sealing_key_unavailable", "{problem}");
    let (ok, status, err) = tether_with(
        dir.path(),
        &["keys", "status"],
        &[("TETHER_ENCRYPTION_KEYS", &both)],
    );
    assert!(ok, "{err}");
    assert_eq!(
        status_of(&status, &key_id(&old))[1..],
        ["yes", "no", "0"],
        "{status}"
    );
    served.kill().await;
}
