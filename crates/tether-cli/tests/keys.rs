//! `tether keys rotate`: every credential ends up under a new key, still opens to the same
//! secret, and a second run has nothing left to do.

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
    let old = Vault::load_or_create_key_file(&dir.path().join("tether.keys")).unwrap();
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
                    credentials: credentials.seal(&old, &id),
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
    assert!(said.starts_with("3 connection(s) re-encrypted"), "{said}");
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
        said.starts_with("3 connection(s) re-encrypted"),
        "a second rotation adds another key: {said}"
    );
}
