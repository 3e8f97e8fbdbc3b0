//! Runs the embedding example: `cargo run -p tether-example-embedded`. Listens on
//! 127.0.0.1:8080 (`EXAMPLE_LISTEN` to change), keeps its data in `example.db` and
//! `example.keys`, and reads its Tether API key from `TETHER_API_KEY`.
//!
//! It configures one integration on the generic OAuth 2.0 provider from the environment
//! (`CRM_AUTHORIZATION_URL`, `CRM_TOKEN_URL`, `CRM_API_BASE_URL`, `CRM_CLIENT_ID`,
//! `CRM_CLIENT_SECRET`); point them at `cargo run -p tether-emulators --bin tether-emulators`
//! to try it offline.

use std::net::SocketAddr;

use anyhow::Context;
use tether_core::SecretString;
use tether_core::vault::Vault;
use tether_example_embedded::{AppState, router};
use tether_server::{ApiKeys, Gateway, GatewayConfig};
use tether_store::AnyStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_core::outbound::install_crypto_provider();
    let listen: SocketAddr = std::env::var("EXAMPLE_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("EXAMPLE_LISTEN")?;
    let env = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let mut public_url: url::Url = ["http://", &listener.local_addr()?.to_string(), "/tether"]
        .concat()
        .parse()?;
    public_url.set_query(None);
    let mut config = GatewayConfig::new(public_url.clone());
    config.allowed_return_origins = vec![public_url.origin()];
    let store = AnyStore::connect("sqlite://example.db", &Default::default()).await?;
    let vault = Vault::load_or_create_key_file("example.keys".as_ref())?;
    let gateway = Gateway::builder(store, vault, config)
        .integration_tables([(
            "crm",
            serde_json::json!({
                "provider": "oauth2",
                "client_id": env("CRM_CLIENT_ID")?,
                "client_secret": env("CRM_CLIENT_SECRET")?,
                "authorization_url": env("CRM_AUTHORIZATION_URL")?,
                "token_url": env("CRM_TOKEN_URL")?,
                "api_base_url": env("CRM_API_BASE_URL")?,
            }),
        )])?
        .api_keys(ApiKeys::from_keys([&SecretString::new(env(
            "TETHER_API_KEY",
        )?)]))
        .build()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = gateway.spawn_background(stopped);
    println!("Listening on http://{listen}/ (Tether under {public_url})");
    // The peer address is recorded for Tether's per-address limits.
    let app = router(AppState::new(gateway)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = stop.send(true);
    for task in background {
        let _ = task.await;
    }
    Ok(())
}
