//! Where Tether's outbound calls may go (issue 17): an integration made through the API, a
//! value from a token response or an import cannot point the proxy or the token call at
//! this machine or the operator's network unless `[outbound] allowed_private_networks` says
//! so; allowed hosts pin their port; a malformed instance URL in a token response stores
//! nothing; imported metadata is bounded; a trickling provider is cut off at the total
//! deadline, and one that stops sending its body at the read timeout. A local "admin
//! service" on loopback stands for what an attacker would read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tether_core::outbound::{AddressPolicy, PinnedResolver, SystemResolver};
use tether_emulators::seed_oauth::SeedOAuthConfig;
use tether_test_support::Loopback;
use url::Url;

use crate::helpers::*;

/// A service on loopback that answers every GET with a secret and counts the requests.
struct AdminService {
    server: Loopback,
    hits: Arc<AtomicUsize>,
}

impl AdminService {
    async fn spawn() -> AdminService {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let router = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "admin-secret" }
        });
        AdminService {
            server: Loopback::serve(router).await,
            hits,
        }
    }

    fn url(&self, host: &str) -> String {
        let mut url = Url::parse("http://placeholder/").unwrap();
        url.set_host(Some(host)).unwrap();
        url.set_port(Some(self.server.port())).unwrap();
        url.to_string()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn put_integration(app: &TestApp, key: &str, table: &Value) -> (u16, Value) {
    let response = app
        .api(reqwest::Method::PUT, &["v1/integrations/", key].concat())
        .json(table)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A generic OAuth integration table whose endpoints are given.
fn oauth_table(authorization_url: &str, token_url: &str, api_base_url: &str) -> Value {
    json!({
        "provider": "oauth2",
        "client_id": "seed-client",
        "client_secret": "seed-secret",
        "authorization_url": authorization_url,
        "token_url": token_url,
        "api_base_url": api_base_url,
    })
}

#[tokio::test]
async fn api_made_integrations_on_private_ip_literals_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let public = "https://crm.example.com/oauth/authorize";
    let cases = [
        ("api_base_url", "https://169.254.169.254/latest"),
        ("api_base_url", "https://10.0.0.1:8443/"),
        ("api_base_url", "https://[fd00::1]/"),
        ("api_base_url", "https://0.0.0.0/"),
        ("api_base_url", "https://[::ffff:169.254.169.254]/"),
        ("api_base_url", "http://127.0.0.1:9464/"),
        ("token_url", "https://100.64.0.1/token"),
        ("token_url", "https://192.168.1.10/token"),
        ("authorization_url", "https://172.16.0.1/auth"),
        ("revocation_url", "https://[fe80::1]/revoke"),
    ];
    for (field, address) in cases {
        let mut table = oauth_table(
            public,
            "https://crm.example.com/oauth/token",
            "https://crm.example.com/api",
        );
        table[field] = json!(address);
        let (status, problem) = put_integration(&app, "sneaky", &table).await;
        assert_eq!(status, 422, "{field} = {address}: {problem}");
        assert_eq!(problem["code"], "address_not_allowed", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with(&[field, ": "].concat()), "{detail}");
        assert!(detail.contains("allowed_private_networks"), "{detail}");
    }
    // Nothing of it was kept.
    let listed: Value = app
        .api(reqwest::Method::GET, "v1/integrations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed.to_string().contains("sneaky"), "{listed}");
    // A public integration is still accepted.
    let table = oauth_table(
        public,
        "https://crm.example.com/oauth/token",
        "https://crm.example.com/api",
    );
    assert_eq!(put_integration(&app, "public", &table).await.0, 201);
}

/// The attack: an integration made through the API points at a service on this
/// machine by a name (`localhost`), an imported connection uses it, and the proxy would read
/// the service in full. The name passes the PUT; the proxy's resolver refuses the address.
#[tokio::test]
async fn the_proxy_of_an_api_made_integration_cannot_reach_a_name_that_resolves_to_loopback() {
    let admin = AdminService::spawn().await;
    let app = spawn_app().await;
    let table = oauth_table(
        "https://crm.example.com/oauth/authorize",
        "https://crm.example.com/oauth/token",
        &admin.url("localhost"),
    );
    assert_eq!(put_integration(&app, "internal", &table).await.0, 201);
    let id = app.import_token("internal", "imported-token", None).await;
    let response = app.proxy_get(&id, "admin/users").await;
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(body.contains("provider_error"), "{body}");
    assert!(!body.contains("admin-secret"), "{body}");
    assert_eq!(admin.hits(), 0, "nothing reached the service");

    // The same gateway with loopback allowed reaches it: the policy, not the setup, refused.
    let allowed = spawn_app_allowing_loopback().await;
    assert_eq!(put_integration(&allowed, "internal", &table).await.0, 201);
    let id = allowed
        .import_token("internal", "imported-token", None)
        .await;
    let response = allowed.proxy_get(&id, "admin/users").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "admin-secret");
    assert_eq!(admin.hits(), 1);
}

/// Tether's own calls (the token exchange) are held to the policy too: the code from the
/// callback is never sent to a token endpoint on loopback that the API named.
#[tokio::test]
async fn the_token_call_of_an_api_made_integration_never_reaches_loopback() {
    let app = spawn_app().await;
    let mut seed = app.seed.base_url().clone();
    seed.set_host(Some("localhost")).unwrap();
    let table = oauth_table(
        seed.join("oauth/authorize").unwrap().as_str(),
        seed.join("oauth/token").unwrap().as_str(),
        seed.as_str(),
    );
    assert_eq!(put_integration(&app, "inside", &table).await.0, 201);
    let browser = Browser::new();
    let session = app.create_session("inside-user", Some(RETURN_URL)).await;
    let response = browser.get(app.connect_start_url(&session, "inside")).await;
    assert_eq!(
        response.status(),
        502,
        "the callback page reports a failure"
    );
    assert_eq!(app.connection_count().await, 0, "nothing stored");
    assert_eq!(app.seed.control.token_calls(), 0, "no token call was made");
}

/// A configured integration on loopback (the emulators, the README walkthrough) keeps working,
/// but an import cannot use that to point its instance URL at another loopback service.
#[tokio::test]
async fn an_imported_instance_url_on_loopback_is_refused_even_for_a_loopback_integration() {
    let admin = AdminService::spawn().await;
    let app = spawn_app_with(salesforce_options()).await;
    // The operator's integration connects through its loopback token endpoint as before.
    let id = app.connect_through("sf-user", "salesforce", None).await;
    assert_eq!(app.proxy_get(&id, "v1/echo").await.status(), 200);
    for host in ["127.0.0.1", "localhost"] {
        let user = ["imported-", host].concat();
        let response = app
            .api(reqwest::Method::POST, "v1/connections")
            .json(&json!({
                "integration": "salesforce",
                "end_user": {"id": user},
                "credentials": {"access_token": "at", "refresh_token": "rt"},
                "metadata": {"instance_url": admin.url(host)},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{host}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "address_not_allowed", "{problem}");
    }
    assert_eq!(admin.hits(), 0);
}

fn salesforce_options() -> AppOptions {
    AppOptions {
        seed: SeedOAuthConfig::salesforce_like(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "salesforce".into(),
                json!({
                    "provider": "salesforce",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": emu.join("oauth/authorize").unwrap().as_str(),
                    "token_url": emu.join("oauth/token").unwrap().as_str(),
                }),
            )]
        })),
        ..AppOptions::default()
    }
}

/// Starts a Salesforce connect whose token response names `instance`; returns the status of
/// the page the browser lands on.
async fn connect_with_instance(app: &TestApp, end_user: &str, instance: Value) -> u16 {
    app.seed.control.set_instance_value(Some(instance));
    let browser = Browser::new();
    let session = app.create_session(end_user, Some(RETURN_URL)).await;
    let status = browser
        .get(app.connect_start_url(&session, "salesforce"))
        .await
        .status()
        .as_u16();
    app.seed.control.set_instance_value(None);
    status
}

#[tokio::test]
async fn allowed_hosts_pin_the_port() {
    let app = spawn_app_with(salesforce_options()).await;
    for (index, port) in [6379, 22, 8443].into_iter().enumerate() {
        let instance = ["https://acme.my.salesforce.com:", &port.to_string()].concat();
        let user = ["sf-port-", &index.to_string()].concat();
        let status = connect_with_instance(&app, &user, json!(instance)).await;
        assert_eq!(status, 502, "{instance}");
        let imported = app
            .api(reqwest::Method::POST, "v1/connections")
            .json(&json!({
                "integration": "salesforce",
                "end_user": {"id": user},
                "credentials": {"access_token": "at", "refresh_token": "rt"},
                "metadata": {"instance_url": instance},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(imported.status(), 400, "{instance}");
    }
    assert_eq!(app.connection_count().await, 0, "nothing stored");
}

#[tokio::test]
async fn a_malformed_instance_url_in_a_token_response_stores_nothing() {
    let app = spawn_app_with(salesforce_options()).await;
    let malformed = [
        json!(42),
        json!({"url": "https://acme.my.salesforce.com"}),
        Value::Null,
        json!(["https://acme.my.salesforce.com"]),
        json!("https://acme.my.salesforce.com\r\nX-Injected: 1"),
        json!("http://acme.my.salesforce.com"),
        json!("https://evil.example"),
        json!(""),
    ];
    for (index, value) in malformed.iter().enumerate() {
        let user = ["sf-bad-", &index.to_string()].concat();
        let status = connect_with_instance(&app, &user, value.clone()).await;
        assert_eq!(status, 502, "{value}");
    }
    assert_eq!(app.connection_count().await, 0, "nothing stored as active");

    // A refresh that answers one fails clearly and keeps the connection's instance.
    let id = app.connect_through("sf-good", "salesforce", None).await;
    let before = app.get_connection(&id).await["metadata"]["instance_url"].clone();
    app.seed.control.set_instance_value(Some(json!(42)));
    app.seed.control.expire_access_tokens();
    // The provider refuses the expired token, the refresh answer is refused as a whole, and
    // the app gets the provider's 401 (the old token stays in place).
    let response = app.proxy_get(&id, "v1/echo").await;
    assert_eq!(response.status(), 401);
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["instance_url"], before);
    assert_eq!(connection["last_error"], "invalid_response");
}

#[tokio::test]
async fn imported_metadata_is_bounded() {
    let app = spawn_app().await;
    let mut deep = json!("leaf");
    for _ in 0..6 {
        deep = json!({ "n": deep });
    }
    let many: serde_json::Map<String, Value> = (0..100)
        .map(|i| (["k", &i.to_string()].concat(), json!(i)))
        .collect();
    let cases = [
        json!({"blob": "x".repeat(200 * 1024)}),
        json!({"blob": "x".repeat(17 * 1024)}),
        deep,
        Value::Object(many),
        json!({"note": "line\r\nbreak"}),
        json!({"bad\u{0}key": "v"}),
    ];
    for (index, metadata) in cases.iter().enumerate() {
        let user = ["big-", &index.to_string()].concat();
        let response = app
            .api(reqwest::Method::POST, "v1/connections")
            .json(&json!({
                "integration": "crm",
                "end_user": {"id": user},
                "credentials": {"access_token": "at", "expires_in": 3600},
                "metadata": metadata,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "case {index}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "metadata_out_of_bounds", "{problem}");
    }
    // Ordinary metadata still imports, and the listing stays small.
    let response = app
        .api(reqwest::Method::POST, "v1/connections")
        .json(&json!({
            "integration": "crm",
            "end_user": {"id": "ordinary"},
            "credentials": {"access_token": "at", "expires_in": 3600},
            "metadata": {"database_id": "42", "tags": ["a", "b"], "owner": {"id": 7}},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let listing = app
        .api(reqwest::Method::GET, "v1/connections")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(listing.len() < 16 * 1024, "{} bytes", listing.len());
}

/// A provider that sends its head at once, then a kilobyte every 100 ms for a minute.
async fn trickling_provider() -> Loopback {
    let trickle = || async {
        let chunks = futures_util::stream::unfold(0u32, |sent| async move {
            if sent > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (sent < 600).then(|| {
                (
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b'x'; 1024])),
                    sent + 1,
                )
            })
        });
        axum::body::Body::from_stream(chunks)
    };
    let router = axum::Router::new().route("/v1/export", axum::routing::get(trickle));
    Loopback::serve(router).await
}

#[tokio::test]
async fn a_trickling_provider_is_cut_off_at_the_total_deadline() {
    let provider = trickling_provider().await;
    let base = provider.url("/").to_string();
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "slowpoke".into(),
            json!({"provider": "oauth2", "client_id": "c", "client_secret": "s",
                   "authorization_url": "https://slowpoke.example/authorize",
                   "token_url": "https://slowpoke.example/token",
                   "api_base_url": base}),
        )],
        configure: Some(Arc::new(|c| {
            // Each chunk comes well within the read timeout; only the total deadline ends it.
            c.proxy_read_timeout = Duration::from_secs(10);
            c.proxy_total_timeout = Duration::from_secs(1);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.import_token("slowpoke", "t", None).await;
    let mut response = app.proxy_get(&id, "v1/export").await;
    assert_eq!(response.status(), 200, "the head came in time");
    let mut received = 0;
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    assert!(
        ended.is_err(),
        "the body ends with an error, not as complete"
    );
    assert!(
        received < 600 * 1024,
        "{received} bytes: the whole body came"
    );
}

/// A provider that sends its head and one kilobyte at once, then nothing more (the
/// connection stays open).
async fn stalling_provider() -> Loopback {
    let stall = || async {
        let first = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b'x'; 1024]))
        });
        axum::body::Body::from_stream(futures_util::StreamExt::chain(
            first,
            futures_util::stream::pending(),
        ))
    };
    let router = axum::Router::new().route("/v1/export", axum::routing::get(stall));
    Loopback::serve(router).await
}

#[tokio::test]
async fn a_provider_that_stops_sending_its_body_is_cut_off_at_the_read_timeout() {
    let provider = stalling_provider().await;
    let base = provider.url("/").to_string();
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "stalls".into(),
            json!({"provider": "oauth2", "client_id": "c", "client_secret": "s",
                   "authorization_url": "https://stalls.example/authorize",
                   "token_url": "https://stalls.example/token",
                   "api_base_url": base}),
        )],
        configure: Some(Arc::new(|c| {
            // The total deadline is far off: only the read timeout can end this body.
            c.proxy_read_timeout = Duration::from_millis(300);
            c.proxy_total_timeout = Duration::from_secs(60);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.import_token("stalls", "t", None).await;
    let mut response = app.proxy_get(&id, "v1/export").await;
    assert_eq!(response.status(), 200, "the head came in time");
    let mut received = 0;
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    assert!(
        ended.is_err(),
        "the body ends with an error, not as complete"
    );
    assert_eq!(
        received, 1024,
        "the part sent before the stall went through"
    );
}

/// A stand-in for Zoho's EU accounts server: TLS with a certificate for `accounts.zoho.eu`
/// from a CA made for the test, answering the token and revocation endpoints and recording
/// the paths it was asked.
struct AccountsServer {
    addr: std::net::SocketAddr,
    roots: tether_core::outbound::ExtraRoots,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AccountsServer {
    async fn spawn(name: &str, api_domain: &'static str) -> AccountsServer {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "outbound test CA");
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = paths.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, recorded) = (acceptor.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        let path = request.uri().path().to_owned();
                        recorded.lock().unwrap().push(path.clone());
                        let body = if path == "/oauth/v2/token" {
                            json!({"access_token": "zoho-access", "refresh_token": "zoho-refresh",
                                   "token_type": "Bearer", "expires_in": 3600,
                                   "api_domain": api_domain})
                        } else {
                            json!({})
                        };
                        async move {
                            Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .header(http::header::CONTENT_TYPE, "application/json")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(
                                        body.to_string(),
                                    )))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        AccountsServer {
            addr,
            roots: tether_core::outbound::ExtraRoots::from_pem(ca_pem.as_bytes()).unwrap(),
            paths,
            task,
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for AccountsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Zoho names the user's data centre in the redirect back (`accounts-server`, `location`);
/// the code is redeemed at that accounts server, which is not one of the API's hosts, and
/// the token is revoked there when the connection is deleted. The catalog's own token and
/// revocation URLs are used; `accounts.zoho.eu` resolves to a stand-in on loopback.
#[tokio::test]
async fn a_zoho_connect_redeems_and_revokes_at_the_data_centres_accounts_server() {
    zoho_connects_through("zoho.eu", "https://www.zohoapis.eu").await;
}

/// Canada's accounts server is the one outside `accounts.zoho.*`: `accounts.zohocloud.ca`.
#[tokio::test]
async fn a_canadian_zoho_connect_redeems_and_revokes_at_zohocloud_ca() {
    zoho_connects_through("zohocloud.ca", "https://www.zohoapis.ca").await;
}

/// Connects a Zoho user whose redirect back names `accounts.{data_center}`, with that host
/// resolved to a TLS stand-in that answers `api_domain`, then deletes the connection.
async fn zoho_connects_through(data_center: &str, api_domain: &'static str) {
    let host = ["accounts.", data_center].concat();
    let accounts = AccountsServer::spawn(&host, api_domain).await;
    let (roots, addr) = (accounts.roots.clone(), accounts.addr);
    let scopes = [
        "ZohoCRM.modules.ALL",
        "ZohoCRM.settings.ALL",
        "ZohoCRM.users.READ",
    ];
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            callback_params: vec![
                ("accounts-server".into(), ["https://", &host].concat()),
                ("location".into(), data_center.into()),
            ],
            ..SeedOAuthConfig::zoho_like(&scopes)
        },
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "zoho".into(),
                json!({
                    "provider": "zoho-crm",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    // Only the sign-in page is the emulator's; the token and revocation URLs
                    // are the catalog's, on accounts.zoho.${connection.data_center}.
                    "authorization_url": emu.join("oauth/authorize").unwrap().as_str(),
                }),
            )]
        })),
        configure: Some(Arc::new(move |config| {
            config.extra_root_certificates = roots.clone();
            // The catalog's real host name, pinned to the stand-in on loopback.
            let pinned = PinnedResolver::new(Arc::new(SystemResolver)).pin(&host, addr);
            config.address_policy = AddressPolicy::parse(&["127.0.0.0/8"])
                .unwrap()
                .with_resolver(Arc::new(pinned));
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("zoho-user", "zoho", None).await;
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["data_center"], data_center);
    assert_eq!(connection["metadata"]["api_domain"], api_domain);
    assert_eq!(accounts.paths(), ["/oauth/v2/token"]);

    let deleted = app
        .api(reqwest::Method::DELETE, &["v1/connections/", &id].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        accounts.paths(),
        ["/oauth/v2/token", "/oauth/v2/token/revoke"]
    );
}

#[tokio::test]
async fn a_provider_silent_past_the_total_deadline_is_a_504() {
    // Accepts connections and never writes a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "silent".into(),
            json!({"provider": "oauth2", "client_id": "c", "client_secret": "s",
                   "authorization_url": "https://silent.example/authorize",
                   "token_url": "https://silent.example/token",
                   "api_base_url": silent_url}),
        )],
        configure: Some(Arc::new(|c| {
            c.proxy_read_timeout = Duration::from_secs(30);
            c.proxy_total_timeout = Duration::from_secs(1);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.import_token("silent", "t", None).await;
    let response = app.proxy_get(&id, "v1/anything").await;
    assert_eq!(response.status(), 504);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "provider_timeout");
    holder.abort();
}
