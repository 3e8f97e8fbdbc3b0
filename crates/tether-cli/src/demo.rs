//! `tether demo`: the gateway and emulated CRMs (Redtail CRM, Salesmate, and the seeds' OAuth
//! CRM) on loopback, offline, with an in-memory database, a generated vault key and API key,
//! and integrations already configured. Prints a Connect URL, the demo credentials and curl
//! lines, then runs until Ctrl-C.
//!
//! Everything is throwaway: nothing is written to disk, and this must never listen on
//! anything but loopback nor talk to a real provider. Its outbound policy lets integrations
//! made through the API reach loopback (the emulators), and nothing else that is not public.
//!
//! For scripts (the browser tests in `e2e/`), the flags choose the address, the app's origins
//! and branding, a consent page on the OAuth emulator and the session lifetime, and the demo
//! prints one machine-readable line, `TETHER_DEMO {json}`, before the banner.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::vault::Vault;
use tether_core::{SecretString, random, unix_time};
use tether_emulators::redtail::{self, RedtailConfig};
use tether_emulators::salesmate::{self, SalesmateConfig};
use tether_emulators::seed_oauth::{self, Consent, SeedOAuthConfig};
use tether_server::{ApiKeys, Gateway, GatewayConfig};
use tether_store::{ConnectSessionRow, SqliteStore, Store};
use tokio::net::TcpListener;
use url::Url;

/// The port the demo prefers (the same as `serve`); any free port if it is taken.
const PREFERRED_PORT: u16 = 3003;
/// The demo end user's id.
const END_USER: &str = "demo-user";

/// `tether demo` options; the defaults give the interactive demo.
#[derive(Debug, Default, clap::Args)]
pub struct DemoArgs {
    /// Loopback address to listen on (default 127.0.0.1:3003, or any free port if taken).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// An origin the app sends end users back to and receives popup messages on
    /// (repeatable), such as http://127.0.0.1:3000.
    #[arg(long = "allowed-origin", value_name = "URL")]
    pub allowed_origins: Vec<String>,
    /// Show a consent page (Approve / Deny) on the OAuth CRM instead of approving at once.
    #[arg(long)]
    pub consent_page: bool,
    /// The app's name on the Connect page.
    #[arg(long, value_name = "NAME")]
    pub app_name: Option<String>,
    /// The Connect page's accent colour (#rgb or #rrggbb).
    #[arg(long, value_name = "COLOR")]
    pub accent_color: Option<String>,
    /// The app's logo on the Connect page (https, or http on loopback).
    #[arg(long, value_name = "URL")]
    pub logo_url: Option<String>,
    /// How long connect sessions stay valid, in seconds (default 1800).
    #[arg(long, value_name = "SECONDS")]
    pub session_ttl: Option<u64>,
    /// Deliver webhooks to this loopback URL (signed with a secret made for this run, which
    /// the `TETHER_DEMO` line carries), such as a local receiver for the browser tests.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The app's sign-in page for MCP clients authorizing through OAuth (`[mcp] sign_in_url`),
    /// such as a test app's page on loopback.
    #[arg(long, value_name = "URL")]
    pub mcp_sign_in_url: Option<String>,
    /// A browser origin besides the demo's own that may call `/mcp` (`[mcp] allowed_origins`;
    /// repeatable), such as the origin of a proxy in front of the demo.
    #[arg(long = "mcp-allowed-origin", value_name = "URL")]
    pub mcp_allowed_origins: Vec<String>,
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    tether_core::outbound::install_crypto_provider();
    if let Some(addr) = args.listen
        && !addr.ip().is_loopback()
    {
        anyhow::bail!("--listen {addr}: the demo only listens on loopback (such as 127.0.0.1:0)");
    }
    let mut seed_config = SeedOAuthConfig::default();
    if args.consent_page {
        seed_config.consent = Consent::Page;
    }
    let redtail_config = RedtailConfig::default();
    let salesmate_config = SalesmateConfig::default();
    let seed = seed_oauth::spawn(seed_config.clone())
        .await
        .context("starting the OAuth CRM emulator")?;
    let redtail = redtail::spawn(redtail_config.clone())
        .await
        .context("starting the Redtail CRM emulator")?;
    let salesmate = salesmate::spawn(salesmate_config.clone())
        .await
        .context("starting the Salesmate emulator")?;

    let listener = match args.listen {
        Some(addr) => TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?,
        None => match TcpListener::bind((Ipv4Addr::LOCALHOST, PREFERRED_PORT)).await {
            Ok(listener) => listener,
            Err(_) => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .context("binding a loopback port")?,
        },
    };
    let addr: SocketAddr = listener.local_addr()?;
    let public_url = Url::parse(&["http://", &addr.to_string(), "/"].concat())?;

    let seed_base = seed.base_url();
    let tables: Vec<(&str, Value)> = vec![
        (
            "crm",
            json!({
                "provider": "oauth2",
                "display_name": "Demo OAuth CRM",
                "client_id": seed_config.client_id,
                "client_secret": seed_config.client_secret,
                "authorization_url": seed_base.join("oauth/authorize")?.as_str(),
                "token_url": seed_base.join("oauth/token")?.as_str(),
                "revocation_url": seed_base.join("oauth/revoke")?.as_str(),
                "api_base_url": seed_base.as_str(),
                "scopes": ["read", "write"],
                // The generic provider has no check of its own: the emulator's who-am-I.
                "check": {
                    "path": "/v1/me",
                    "account": {
                        "user_id": "/id",
                        "organization_id": "/company/id",
                        "label": "/email",
                    },
                },
            }),
        ),
        (
            "redtail",
            json!({
                "provider": "redtail",
                "api_key": redtail_config.api_key,
                "api_base_url": redtail.base_url().join("api/public/v1")?.as_str(),
            }),
        ),
        (
            // The emulator picks the account from `x-linkname`, so the link name only
            // travels in the header here, not in the host.
            "salesmate",
            json!({
                "provider": "salesmate",
                "api_base_url": salesmate.base_url().as_str(),
            }),
        ),
    ];
    let catalog = Catalog::embedded().context("loading the catalog")?;
    let integrations = tables
        .iter()
        .map(|(key, table)| {
            let table = table.as_object().expect("tables are objects");
            Integration::from_config(key, table, &catalog).map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .context("opening the in-memory database")?;
    let vault = Vault::from_spec(&Vault::generate_key_entry()).context("generating a key")?;
    let api_key = random::prefixed_token("tether_sk_");
    let api_keys = ApiKeys::from_keys([&SecretString::new(api_key.clone())]);
    let mut config = GatewayConfig::new(public_url.clone());
    configure(&mut config, &args)?;
    // Every CRM of the demo is an emulator on loopback: integrations an app puts through the
    // API (as the walkthroughs and the TypeScript client's tests do) must reach them too. The
    // demo never listens on or talks to anything else, so nothing is opened beyond loopback.
    config.address_policy = tether_core::outbound::AddressPolicy::parse(&["127.0.0.0/8", "::1"])
        .expect("fixed networks parse");
    let webhook_secret = random::prefixed_token("whsec_");
    if let Some(url) = &args.webhook_url {
        let url = Url::parse(url).with_context(|| format!("--webhook-url {url:?} is not a URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if !loopback {
            anyhow::bail!("--webhook-url {url}: the demo only delivers to loopback");
        }
        let mut webhooks =
            tether_server::WebhookConfig::new(url, SecretString::new(webhook_secret.clone()));
        // A receiver that was down gets its retry soon, so a demo shows it.
        webhooks.retry_base = Duration::from_secs(1);
        webhooks.retry_max = Duration::from_secs(2);
        webhooks.max_attempts = 3;
        config.webhooks = Some(webhooks);
    }
    let session_ttl = config.connect_session_ttl;
    let gateway = Gateway::builder(store, vault, config)
        .catalog(catalog)
        .integrations(integrations)
        .api_keys(api_keys)
        .build()?;

    // The session is created directly in the store, as `POST /v1/connect/sessions` would.
    let token = random::prefixed_token("cs_");
    let now = unix_time::now();
    gateway
        .store()
        .insert_connect_session(&ConnectSessionRow {
            token_hash: tether_store::TokenHash::from_hex(random::sha256_hex(&token)),
            end_user_id: END_USER.into(),
            end_user_email: Some("demo@example.com".into()),
            end_user_display_name: Some("Demo User".into()),
            integrations: None,
            return_url: None,
            expires_at: now + session_ttl.as_secs() as i64,
            created_at: now,
            browser_hash: None,
            completed_at: None,
        })
        .await
        .context("creating the demo connect session")?;
    let mut connect_url = public_url.join("connect")?;
    connect_url.query_pairs_mut().append_pair("session", &token);

    let mut integration_keys: Vec<&str> = tables.iter().map(|(key, _)| *key).collect();
    integration_keys.sort_unstable();
    let machine = json!({
        "base_url": public_url.as_str(),
        "api_key": api_key,
        "connect_url": connect_url.as_str(),
        "integrations": integration_keys,
        "end_user_id": END_USER,
        "webhook_secret": args.webhook_url.as_ref().map(|_| webhook_secret.as_str()),
        "dashboard_url": public_url.join("dashboard")?.as_str(),
        "emulators": {
            "oauth": seed_base.as_str(),
            "redtail": redtail.base_url().as_str(),
            "salesmate": salesmate.base_url().as_str(),
        },
    });
    // One line a script can find; the API key is a throwaway made for this run.
    println!("TETHER_DEMO {machine}");
    print_banner(&Banner {
        public_url: &public_url,
        connect_url: &connect_url,
        api_key: &api_key,
        session_minutes: session_ttl.as_secs() / 60,
        redtail: &redtail_config,
        salesmate: &salesmate_config,
        consent_page: args.consent_page,
    })?;

    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let background = gateway.spawn_background(background_stopped);
    let served = tether_server::serve(
        listener,
        gateway.service(),
        tether_server::ServerLimits::default(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await
    .context("serving the demo gateway");
    let _ = stop_background.send(true);
    for task in background {
        let _ = task.await;
    }
    served?;
    println!("\nDemo stopped; everything it held is gone.");
    drop((seed, redtail, salesmate));
    Ok(())
}

/// Applies the command line's gateway settings.
fn configure(config: &mut GatewayConfig, args: &DemoArgs) -> anyhow::Result<()> {
    for origin in &args.allowed_origins {
        let url = Url::parse(origin)
            .with_context(|| format!("--allowed-origin {origin:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("--allowed-origin {origin:?} must be http or https");
        }
        config.allowed_return_origins.push(url.origin());
    }
    if let Some(name) = &args.app_name {
        config.app_name = name.clone();
    }
    if let Some(color) = &args.accent_color {
        config
            .set_accent_color(color)
            .map_err(|m| anyhow::anyhow!("--accent-color: {m}"))?;
    }
    if let Some(logo) = &args.logo_url {
        config
            .set_logo_url(logo)
            .map_err(|m| anyhow::anyhow!("--logo-url: {m}"))?;
    }
    if let Some(url) = &args.mcp_sign_in_url {
        let url =
            Url::parse(url).with_context(|| format!("--mcp-sign-in-url {url:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("--mcp-sign-in-url must be http or https");
        }
        config.mcp_auth.sign_in_url = Some(url);
    }
    for text in &args.mcp_allowed_origins {
        let origin = crate::mcp_settings::browser_origin(text)
            .map_err(|message| anyhow::anyhow!("--mcp-allowed-origin: {message}"))?;
        config.mcp.allowed_origins.push(origin);
    }
    // 0 means the shortest; over the bound is refused (it would overflow the session's expiry).
    crate::settings::secs(
        "--session-ttl",
        args.session_ttl.map(|seconds| seconds.max(1)),
        1,
        &mut config.connect_session_ttl,
    )?;
    Ok(())
}

struct Banner<'a> {
    public_url: &'a Url,
    connect_url: &'a Url,
    api_key: &'a str,
    session_minutes: u64,
    redtail: &'a RedtailConfig,
    salesmate: &'a SalesmateConfig,
    consent_page: bool,
}

fn print_banner(b: &Banner<'_>) -> anyhow::Result<()> {
    let api = |path: &str| -> anyhow::Result<Url> { Ok(b.public_url.join(path)?) };
    let redtail_user = b
        .redtail
        .users
        .first()
        .context("the Redtail emulator has a user")?;
    let salesmate_account = b
        .salesmate
        .accounts
        .first()
        .context("the Salesmate emulator has an account")?;
    let list = api("v1/connections")?;
    let mut proxy_redtail = api("v1/proxy/CONNECTION_ID/contacts")?;
    proxy_redtail.query_pairs_mut().append_pair("page", "2");
    let proxy_salesmate = api("v1/proxy/CONNECTION_ID/apis/deal/v4/search")?;
    println!(
        "\
Tether demo: the gateway, emulated Redtail CRM, Salesmate and an OAuth CRM, on loopback and offline.

1. Open the Connect page as the demo end user \"{END_USER}\" (valid {minutes} minutes):

     {connect}

2. Connect with these demo credentials:

     Redtail CRM      username: {rt_user}    password: {rt_pass}
     Salesmate        access key: {sm_key}    link name: {sm_link}
     Demo OAuth CRM   nothing to type: {oauth_note}

3. Call the CRM through Tether (API key {key}):

     curl -s -H 'Authorization: Bearer {key}' '{list}'

   then, with a connection id from that list:

     curl -s -H 'Authorization: Bearer {key}' '{proxy_redtail}'
     curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
          -d '{{\"displayingFields\":[\"deal.id\",\"deal.title\"],\"moduleId\":4}}' '{proxy_salesmate}'

Press Ctrl-C to stop; the database lives in memory and disappears with the demo.",
        minutes = b.session_minutes,
        connect = b.connect_url,
        rt_user = redtail_user.username,
        rt_pass = redtail_user.password,
        sm_key = salesmate_account.access_key,
        sm_link = salesmate_account.link_name,
        key = b.api_key,
        oauth_note = if b.consent_page {
            "click Approve on its consent page"
        } else {
            "it approves at once"
        },
    );
    Ok(())
}
