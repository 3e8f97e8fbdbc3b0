//! The test harness: `spawn_app()` starts a gateway (port 0, temp SQLite file, fresh vault
//! key and API key) in front of a seed OAuth emulator, and drives the connect flow like a
//! browser would (a cookie-keeping client that follows redirects).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tempfile::TempDir;
use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::vault::Vault;
use tether_emulators::Running;
use tether_emulators::seed_oauth::{self, SeedOAuthConfig, SeedOAuthControl};
use tether_server::{ApiKeys, Gateway, GatewayConfig, ServerLimits};
use tether_store::SqliteStore;
use tokio::sync::oneshot;
use url::Url;

/// The origin the tests' "app" lives at; its return URL is never actually served.
pub const APP_ORIGIN: &str = "http://app.localhost:9";
pub const RETURN_URL: &str = "http://app.localhost:9/app/return";

/// How long a test waits for something in the background (`tether_test_support::eventually`):
/// generous, as two cores run many tests at once; a test that passes waits only as long as
/// it must.
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A change to the gateway configuration before it starts.
pub type Configure = Arc<dyn Fn(&mut GatewayConfig) + Send + Sync>;

/// Integrations that point at the seed emulator, given its base URL once it runs.
pub type EmulatorIntegrations = Arc<dyn Fn(&Url) -> Vec<(String, Value)> + Send + Sync>;

/// Knobs for one test's gateway.
pub struct AppOptions {
    pub seed: SeedOAuthConfig,
    /// Extra keys merged into the `crm` integration's table (e.g. `client_auth`).
    pub crm: serde_json::Map<String, Value>,
    /// Extra integrations, by key (tables as in tether.toml).
    pub integrations: Vec<(String, Value)>,
    /// Adjusts the gateway configuration before start.
    pub configure: Option<Configure>,
    /// Extra integrations built from the emulator's base URL.
    pub emulator_integrations: Option<EmulatorIntegrations>,
    /// The HTTP server's limits.
    pub limits: ServerLimits,
    /// The gateway's clock, when not the system's.
    pub clock: Option<Arc<dyn tether_server::Clock>>,
    /// The provider catalog, when not the embedded one.
    pub catalog: Option<Catalog>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            seed: SeedOAuthConfig::default(),
            crm: serde_json::Map::new(),
            integrations: Vec::new(),
            configure: None,
            emulator_integrations: None,
            limits: ServerLimits::default(),
            clock: None,
            catalog: None,
        }
    }
}

struct RunningServer {
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A gateway under test, its emulator, and clients.
pub struct TestApp {
    pub base: Url,
    pub addr: SocketAddr,
    pub api_key: String,
    /// Talks to the API; follows no redirects.
    pub http: reqwest::Client,
    pub seed: Running<SeedOAuthControl>,
    pub db_url: String,
    pub key_spec: String,
    pub dir: TempDir,
    options: AppOptions,
    server: Option<RunningServer>,
    /// The gateway itself, for library-level calls.
    pub gateway: Option<Arc<Gateway<SqliteStore>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A gateway whose guarded calls (API-made integrations, imported or provider-given URLs)
/// may reach loopback (`[outbound] allowed_private_networks = ["127.0.0.0/8", "::1"]`), for
/// tests that put such an integration in front of the emulators on this machine.
pub async fn spawn_app_allowing_loopback() -> TestApp {
    spawn_app_with(AppOptions {
        configure: Some(allow_loopback()),
        ..AppOptions::default()
    })
    .await
}

/// The configuration change of [`spawn_app_allowing_loopback`].
pub fn allow_loopback() -> Configure {
    Arc::new(|config: &mut GatewayConfig| {
        config.address_policy =
            tether_core::outbound::AddressPolicy::parse(&["127.0.0.0/8", "::1"]).unwrap();
    })
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    tether_core::outbound::install_crypto_provider();
    let seed = seed_oauth::spawn(options.seed.clone())
        .await
        .expect("seed emulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}", dir.path().join("tether.db").display());
    let key_spec = Vault::generate_key_entry();
    let api_key = tether_core::random::prefixed_token("tether_sk_");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = Url::parse(&format!("http://{addr}/")).unwrap();
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let mut app = TestApp {
        base,
        addr,
        api_key,
        http,
        seed,
        db_url,
        key_spec,
        dir,
        options,
        server: None,
        gateway: None,
    };
    app.start(listener).await;
    app
}

impl TestApp {
    /// The integrations every test has: `crm` on the generic OAuth provider, pointed at the
    /// seed emulator, plus the options' extras.
    pub fn integration_tables(&self) -> Vec<(String, Value)> {
        let emu = self.seed.base_url();
        let mut crm = json!({
            "provider": "oauth2",
            "client_id": "seed-client",
            "client_secret": "seed-secret",
            "authorization_url": emu.join("oauth/authorize").unwrap().as_str(),
            "token_url": emu.join("oauth/token").unwrap().as_str(),
            "revocation_url": emu.join("oauth/revoke").unwrap().as_str(),
            "api_base_url": emu.as_str(),
            "scopes": ["read", "write"],
        });
        for (k, v) in &self.options.crm {
            crm[k] = v.clone();
        }
        let mut all = vec![("crm".to_owned(), crm)];
        all.extend(self.options.integrations.iter().cloned());
        if let Some(build) = &self.options.emulator_integrations {
            all.extend(build(emu));
        }
        all
    }

    async fn start(&mut self, listener: tokio::net::TcpListener) {
        let store = SqliteStore::connect(&self.db_url)
            .await
            .expect("store opens");
        let vault = Vault::from_spec(&self.key_spec).unwrap();
        let mut config = GatewayConfig::new(self.base.clone());
        config.allowed_return_origins = vec![Url::parse(APP_ORIGIN).unwrap().origin()];
        if let Some(configure) = &self.options.configure {
            configure(&mut config);
        }
        let catalog = match &self.options.catalog {
            Some(catalog) => catalog.clone(),
            None => Catalog::embedded().unwrap(),
        };
        let integrations: Vec<Integration> = self
            .integration_tables()
            .iter()
            .map(|(key, table)| {
                Integration::from_config(key, table.as_object().unwrap(), &catalog).unwrap()
            })
            .collect();
        let keys = ApiKeys::from_keys([&tether_core::SecretString::new(self.api_key.clone())]);
        let mut builder = Gateway::builder(store, vault, config)
            .catalog(catalog)
            .integrations(integrations)
            .api_keys(keys);
        if let Some(clock) = &self.options.clock {
            builder = builder.clock(clock.clone());
        }
        let gateway = builder.build().unwrap();
        gateway.load_stored_integrations().await.unwrap();
        // What `tether serve` serves: the router with the proxy route ahead of it.
        let router = gateway.service();
        self.gateway = Some(Arc::new(gateway));
        let (tx, rx) = oneshot::channel();
        let limits = self.options.limits.clone();
        let task = tokio::spawn(async move {
            // The server `tether serve` runs: its timeouts, connection cap and peer addresses.
            tether_server::serve(listener, router, limits, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        self.server = Some(RunningServer { shutdown: tx, task });
    }

    /// Stops the gateway and starts a new one on the same port, database and key: a restart.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            let _ = server.task.await;
        }
        self.gateway = None;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.start(listener).await;
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    /// An API request with the app's key.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
    }

    /// `POST /v1/connect/sessions` for an end user; returns the response body.
    pub async fn create_session(&self, end_user: &str, return_url: Option<&str>) -> Value {
        let mut body = json!({"end_user": {"id": end_user, "email": "user@example.com"}});
        if let Some(url) = return_url {
            body["return_url"] = json!(url);
        }
        let response = self
            .api(reqwest::Method::POST, "v1/connect/sessions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "session creation failed");
        response.json().await.unwrap()
    }

    /// Connects `end_user` to `crm` through the whole OAuth flow; returns the connection id.
    pub async fn connect(&self, end_user: &str) -> String {
        let browser = Browser::new();
        let session = self.create_session(end_user, Some(RETURN_URL)).await;
        let start = self.connect_start_url(&session, "crm");
        let landed = browser.follow(start).await;
        let location = landed.expect("the flow ends at the app's return URL");
        assert_eq!(location.path(), "/app/return");
        let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(pairs.get("integration").map(String::as_str), Some("crm"));
        pairs["connection_id"].clone()
    }

    /// Connects `end_user` to `integration` like a browser: the Connect start URL, then (when
    /// `form` is given) the form the provider needs first, then whatever redirects follow
    /// until the app's return URL. Returns the connection id.
    pub async fn connect_through(
        &self,
        end_user: &str,
        integration: &str,
        form: Option<&[(&str, &str)]>,
    ) -> String {
        let browser = Browser::new();
        let session = self.create_session(end_user, Some(RETURN_URL)).await;
        let start = self.connect_start_url(&session, integration);
        let landed = match form {
            None => browser.follow(start).await,
            Some(fields) => {
                let page = browser.get(start.clone()).await;
                assert_eq!(page.status(), 200, "the form is shown first");
                let response = browser
                    .client
                    .post(start)
                    .form(fields)
                    .send()
                    .await
                    .unwrap();
                redirect_target(&response)
            }
        };
        let location = landed.expect("the flow ends at the app's return URL");
        assert_eq!(location.path(), "/app/return");
        let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(
            pairs.get("integration").map(String::as_str),
            Some(integration)
        );
        pairs["connection_id"].clone()
    }

    /// `/connect/{integration}?session=T` for a session response.
    pub fn connect_start_url(&self, session: &Value, integration: &str) -> Url {
        let connect_url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
        let token = connect_url
            .query_pairs()
            .find(|(k, _)| k == "session")
            .unwrap()
            .1
            .into_owned();
        let mut url = self.url("connect/");
        url.path_segments_mut()
            .unwrap()
            .pop_if_empty()
            .push(integration);
        url.query_pairs_mut().append_pair("session", &token);
        url
    }

    pub async fn get_connection(&self, id: &str) -> Value {
        let mut path = String::from("v1/connections/");
        path.push_str(id);
        let response = self.api(reqwest::Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `POST /v1/connections` for end user `u` with an access token valid for an hour (and a
    /// refresh token when given); asserts 201 and returns the new connection's id.
    pub async fn import_token(
        &self,
        integration: &str,
        access_token: &str,
        refresh_token: Option<&str>,
    ) -> String {
        let mut credentials = serde_json::json!({"access_token": access_token, "expires_in": 3600});
        if let Some(refresh_token) = refresh_token {
            credentials["refresh_token"] = refresh_token.into();
        }
        let response = self
            .api(reqwest::Method::POST, "v1/connections")
            .json(
                &serde_json::json!({"integration": integration, "end_user": {"id": "u"},
                                      "credentials": credentials}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "importing into {integration}");
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// `GET /v1/connections/{id}/credentials` (optionally forced), as JSON; asserts 200.
    pub async fn credentials_json(&self, id: &str, force_refresh: bool) -> Value {
        let mut path = format!("v1/connections/{id}/credentials");
        if force_refresh {
            path.push_str("?force_refresh=true");
        }
        let response = self.api(reqwest::Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), 200, "credentials of {id}");
        response.json().await.unwrap()
    }

    /// A proxied `GET {path}` for a connection (path relative to the provider's base URL).
    pub async fn proxy_get(&self, id: &str, path: &str) -> reqwest::Response {
        let full = format!("v1/proxy/{id}/{path}");
        self.api(reqwest::Method::GET, &full).send().await.unwrap()
    }

    /// `GET /v1/connections?...` count.
    pub async fn connection_count(&self) -> usize {
        let body: Value = self
            .api(reqwest::Method::GET, "v1/connections")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["connections"].as_array().unwrap().len()
    }
}

/// A browser: keeps cookies, follows redirects, and stops at the app's return URL.
pub struct Browser {
    pub client: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        let policy = Policy::custom(|attempt| {
            if attempt.url().path().starts_with("/app/") || attempt.previous().len() > 10 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(policy)
                .build()
                .unwrap(),
        }
    }

    /// Follows redirects from `url`; returns the app URL it was sent to, if it got there.
    pub async fn follow(&self, url: Url) -> Option<Url> {
        let response = self.client.get(url).send().await.unwrap();
        redirect_target(&response)
    }

    /// GET without the app-URL stop, returning the final response.
    pub async fn get(&self, url: Url) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }
}

/// Where a stopped redirect pointed.
pub fn redirect_target(response: &reqwest::Response) -> Option<Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get("location")?.to_str().ok()?;
    response.url().join(location).ok()
}

/// The `Location` of a response as a URL (relative locations resolved).
pub fn location(response: &reqwest::Response) -> Url {
    redirect_target(response).expect("a redirect")
}
