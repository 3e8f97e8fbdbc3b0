//! `tether keys rotate`: every credential ends up under a new key, still opens to the same
//! secret, and a second run has nothing left to do.

mod support;

use std::process::Command;

use tether_core::SecretString;
use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::vault::Vault;
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
        access_token: SecretString::new(access),
        refresh_token: Some(SecretString::new("refresh")),
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
                    credentials: credentials.seal(&old, &id).unwrap(),
                    credentials_version: 1,
                    access_expires_at: credentials.expires_at(),
                    metadata: "{}".into(),
                    last_error: None,
                    refresh_failures: 0,
                    next_refresh_at: None,
                    created_at: 1,
                    updated_at: 1,
                })
                .await
                .unwrap();
        }
    }

    let said = rotate(dir.path());
    assert!(
        said.starts_with("3 connection(s), 0 integration(s) and 0 OAuth flow(s) re-encrypted"),
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
        said.starts_with("3 connection(s), 0 integration(s) and 0 OAuth flow(s) re-encrypted"),
        "a second rotation adds another key: {said}"
    );
}

/// A running `tether serve` whose key file gains a new key from `tether keys rotate` opens
/// what was re-sealed under it without a restart, and SIGHUP reloads the file on demand.
#[tokio::test]
async fn a_running_instance_picks_up_a_rotated_key() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let api_key = "rotation-test-api-key-0123456789abcdef";
    let mut child = tokio::process::Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("TETHER_SERVER__LISTEN", "127.0.0.1:0")
        .env("TETHER_API_KEY", api_key)
        .env("RUST_LOG", "info")
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = support::wait_listening(&mut child, std::time::Duration::from_secs(30)).await;
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let http = reqwest::Client::new();
    // An integration and a connection, sealed under the first key.
    let put = http
        .put(format!("{url}v1/integrations/crm"))
        .bearer_auth(api_key)
        .json(&serde_json::json!({
            "provider": "oauth2", "client_id": "c", "client_secret": "s",
            "authorization_url": "http://127.0.0.1:9/authorize",
            "token_url": "http://127.0.0.1:9/token",
            "api_base_url": "http://127.0.0.1:9/api",
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
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let reloaded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("SIGHUP: encryption keys reloaded") {
                return;
            }
        }
    })
    .await;
    assert!(reloaded.is_ok(), "no reload was logged after SIGHUP");
    child.kill().await.unwrap();
}
