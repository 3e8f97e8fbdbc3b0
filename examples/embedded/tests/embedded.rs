//! The embedding example, run for real: the app and Tether in one process on one runtime,
//! Tether's routes under `/tether`, an end user connecting through them (a cookie-keeping
//! client following the redirects, as a browser would), and the app's own handler reading the
//! credentials through the library to call the CRM (the seed OAuth emulator on loopback).

use std::net::SocketAddr;

use tether_core::SecretString;
use tether_core::vault::Vault;
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_example_embedded::{AppState, router};
use tether_server::{ApiKeys, Gateway, GatewayConfig};
use tether_store::AnyStore;
use url::Url;

const API_KEY: &str = "embedded-example-api-key-0123456789abcdef";

#[tokio::test]
async fn the_app_serves_its_routes_and_tethers_and_reads_credentials_itself() {
    tether_core::outbound::install_crypto_provider();
    let crm = seed_oauth::spawn(SeedOAuthConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let tether_url = base.join("tether").unwrap();
    let mut config = GatewayConfig::new(tether_url.clone());
    config.allowed_return_origins = vec![base.origin()];
    let db = format!("sqlite://{}", dir.path().join("example.db").display());
    let store = AnyStore::connect(&db, &Default::default()).await.unwrap();
    let vault = Vault::from_spec(&Vault::generate_key_entry()).unwrap();
    let emu = crm.base_url();
    let gateway = Gateway::builder(store, vault, config)
        .integration_tables([(
            "crm",
            serde_json::json!({
                "provider": "oauth2",
                "client_id": "seed-client",
                "client_secret": "seed-secret",
                "authorization_url": emu.join("oauth/authorize").unwrap().as_str(),
                "token_url": emu.join("oauth/token").unwrap().as_str(),
                "api_base_url": emu.as_str(),
            }),
        )])
        .unwrap()
        .api_keys(ApiKeys::from_keys([&SecretString::new(API_KEY)]))
        .build()
        .unwrap();
    let state = AppState::new(gateway);
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    // The app's own route and Tether's, side by side.
    let home = http.get(base.clone()).send().await.unwrap();
    assert_eq!(home.text().await.unwrap(), "Acme CRM sync");
    let health = http
        .get(base.join("tether/health").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let openapi = http
        .get(base.join("tether/openapi.json").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(openapi.status(), 200);

    // Alice connects her CRM through the mounted Connect flow.
    let mut return_url = base.join("connected").unwrap();
    return_url.query_pairs_mut().append_pair("user", "alice");
    let session: serde_json::Value = http
        .post(base.join("tether/v1/connect/sessions").unwrap())
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"end_user": {"id": "alice"}, "return_url": return_url.as_str()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connect_url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    assert!(
        connect_url.path().starts_with("/tether/connect"),
        "{connect_url}"
    );
    let mut start = connect_url.clone();
    start.path_segments_mut().unwrap().push("crm");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let landed = browser.get(start).send().await.unwrap();
    assert_eq!(landed.status(), 200);
    assert_eq!(landed.url().path(), "/connected");
    assert!(state.connections.lock().unwrap().contains_key("alice"));

    // The app's own handler: credentials through the library, the CRM called by the app.
    let deals = http
        .get(base.join("users/alice/deals").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deals.status(), 200);
    let body: serde_json::Value = deals.json().await.unwrap();
    assert!(body.to_string().contains("deal"), "{body}");
    assert_eq!(crm.control.api_calls(), 1, "the app called the CRM itself");
    let unknown = http
        .get(base.join("users/bob/deals").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    server.abort();
}
