//! No secret in the logs, from outside the process: `tether serve` runs with `RUST_LOG=debug`
//! (and `info` and `trace`, as text and as JSON) in front of the seed OAuth, Redtail and Salesmate emulators, and real flows are
//! driven through it: an OAuth connect in a cookie-keeping browser, forced refreshes, a refresh
//! after a provider 401, proxied reads and writes, a Redtail connect with a wrong then the right
//! password, a Salesmate connect with a wrong then the right key, an import, a wrong API key,
//! `/metrics`, webhooks and deletes. Everything the process writes (stderr and stdout) is
//! captured, then searched for every secret issued along the way, in the forms the code sends
//! them (raw, and base64 inside Basic/UserKeyAuth headers), and for their first and last 16
//! characters (a truncated secret is a leak too).
//!
//! Every secret is generated at test time. Everything is on loopback, every wait is bounded,
//! and the `tether` process is killed by its handle (`kill_on_drop` on panic too).

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tether_emulators::redtail::{self, RedtailConfig, RedtailUser};
use tether_emulators::salesmate::{self, SalesmateAccount, SalesmateConfig};
use tether_emulators::seed_oauth::{self, SeedOAuthConfig};
use tether_test_support::{Receiver, TetherProcess, eventually, tether_command};
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const RETURN_URL: &str = "http://app.localhost:9/app/return";
const CLIENT_ID: &str = "seed-client";
const REDTAIL_USER: &str = "ada";
const LINK_NAME: &str = "acme";

/// A random alphanumeric secret of `len` characters.
fn secret(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Every secret of one run, by a name for the failure message.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// Also the base64 form of `parts` joined with `:`, as a Basic-style header carries it.
    fn add_base64(&mut self, name: &str, parts: &[&str]) {
        self.add(name, &STANDARD.encode(parts.join(":")));
    }

    /// Names of the secrets found in `log`, whole or by their first or last 16 characters.
    fn found_in(&self, log: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (name, value) in &self.0 {
            assert!(value.len() >= 20, "{name} is too short to search for");
            let chars: Vec<char> = value.chars().collect();
            let head: String = chars[..16].iter().collect();
            let tail: String = chars[chars.len() - 16..].iter().collect();
            for (part, needle) in [("whole", value.as_str()), ("head", &head), ("tail", &tail)] {
                if log.contains(needle) {
                    found.push(format!("{name} ({part})"));
                }
            }
        }
        found
    }
}

/// One `tether serve` with its output captured.
struct Tether {
    process: TetherProcess,
    base: Url,
    api_key: String,
    api: reqwest::Client,
}

impl Tether {
    async fn start(dir: &Path, api_key: &str, level: &str) -> Tether {
        let mut command = tether_command(BIN, dir);
        command
            .arg("serve")
            .env("TETHER_API_KEY", api_key)
            .env("RUST_LOG", level);
        let process = TetherProcess::start(command, Duration::from_secs(30)).await;
        Tether {
            base: process.base().clone(),
            process,
            api_key: api_key.to_owned(),
            api: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
            .timeout(Duration::from_secs(20))
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `/connect/{integration}?session=T` for a fresh session of `end_user`.
    async fn start_url(&self, end_user: &str, integration: &str) -> Url {
        let (status, session) = self
            .json(
                reqwest::Method::POST,
                "v1/connect/sessions",
                Some(json!({"end_user": {"id": end_user}, "return_url": RETURN_URL})),
            )
            .await;
        assert_eq!(status, 201, "{session}");
        support::start_url(&self.base, &session, integration)
    }

    /// The OAuth flow in a browser that keeps cookies and follows redirects to the app.
    async fn connect_oauth(&self, end_user: &str) -> String {
        let browser = support::browser_to_app();
        let response = browser
            .get(self.start_url(end_user, "crm").await)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        landed_connection(&response)
    }

    /// A credential form: opened, posted with each of `attempts` (all but the last refused),
    /// in one browser; returns the connection id and the refusal pages.
    async fn connect_form(
        &self,
        end_user: &str,
        integration: &str,
        attempts: &[Vec<(&str, &str)>],
    ) -> (String, Vec<String>) {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .unwrap();
        let url = self.start_url(end_user, integration).await;
        let form = browser.get(url.clone()).send().await.unwrap();
        assert_eq!(form.status(), 200);
        let mut pages = Vec::new();
        for (n, fields) in attempts.iter().enumerate() {
            let response = browser.post(url.clone()).form(fields).send().await.unwrap();
            if n + 1 < attempts.len() {
                assert!(
                    !response.status().is_redirection(),
                    "attempt {n} is refused"
                );
                pages.push(response.text().await.unwrap());
            } else {
                assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
                return (landed_connection(&response), pages);
            }
        }
        unreachable!("attempts is not empty")
    }

    async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.json(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Kills the process and returns everything it wrote.
    async fn stop(mut self) -> String {
        self.process.kill().await;
        self.process.output()
    }
}

/// The connection id of a redirect to the app's return URL.
fn landed_connection(response: &reqwest::Response) -> String {
    let location = response.headers()["location"].to_str().unwrap();
    support::returned_connection(&response.url().join(location).unwrap())
}

/// What one run left behind: the log, the secrets it must not hold, and the connection ids
/// (which it should hold: the positive control for the search).
struct Run {
    log: String,
    secrets: Secrets,
    connection_ids: Vec<String>,
}

/// Log lines as text or as JSON objects (`[log] format = "json"`).
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Text,
    Json,
}

/// Runs every flow with `RUST_LOG=level`, logging in `format`.
async fn run_flows(level: &str, format: Format) -> Run {
    tether_core::outbound::install_crypto_provider();
    let mut secrets = Secrets::default();

    let client_secret = secret(40);
    let seed = seed_oauth::spawn(SeedOAuthConfig {
        client_secret: client_secret.clone(),
        // New refresh tokens on every refresh: more secrets go through the gateway.
        rotate_refresh_tokens: true,
        ..SeedOAuthConfig::default()
    })
    .await
    .unwrap();
    secrets.add("client secret", &client_secret);
    secrets.add_base64("client_secret_basic", &[CLIENT_ID, &client_secret]);

    let redtail_api_key = secret(36);
    // Redtail passwords may hold colons; the Basic value joins them with colons anyway.
    let password = format!("pw:{}", secret(30));
    let wrong_password = format!("pw:{}", secret(30));
    let user_key = secret(36);
    let redtail = redtail::spawn(RedtailConfig {
        api_key: redtail_api_key.clone(),
        users: vec![RedtailUser {
            username: REDTAIL_USER.to_owned(),
            password: password.clone(),
            user_key: user_key.clone(),
            database_id: 7,
            user_id: 8,
        }],
    })
    .await
    .unwrap();
    secrets.add("Redtail API key", &redtail_api_key);
    secrets.add("Redtail password", &password);
    secrets.add("Redtail wrong password", &wrong_password);
    secrets.add("Redtail user key", &user_key);
    secrets.add_base64(
        "Redtail Basic",
        &[&redtail_api_key, REDTAIL_USER, &password],
    );
    secrets.add_base64(
        "Redtail Basic (wrong password)",
        &[&redtail_api_key, REDTAIL_USER, &wrong_password],
    );
    secrets.add_base64("Redtail UserKeyAuth", &[&redtail_api_key, &user_key]);

    let access_key = secret(40);
    let wrong_access_key = secret(40);
    let salesmate = salesmate::spawn(SalesmateConfig {
        accounts: vec![SalesmateAccount {
            link_name: LINK_NAME.to_owned(),
            access_key: access_key.clone(),
        }],
        ..SalesmateConfig::default()
    })
    .await
    .unwrap();
    secrets.add("Salesmate access key", &access_key);
    secrets.add("Salesmate wrong access key", &wrong_access_key);

    let api_key = format!("tether_sk_{}", secret(43));
    let wrong_api_key = format!("tether_sk_{}", secret(43));
    let webhook_secret = secret(40);
    let metrics_token = secret(40);
    secrets.add("API key", &api_key);
    secrets.add("wrong API key", &wrong_api_key);
    secrets.add("webhook secret", &webhook_secret);
    secrets.add("metrics token", &metrics_token);

    let hooks = Receiver::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let emulator = seed.base_url();
    let endpoint = |path: &str| emulator.join(path).unwrap().to_string();
    let mut config = toml::toml! {
        [server]
        metrics_token = (metrics_token.clone())

        [connect]
        allowed_return_origins = ["http://app.localhost:9"]

        [integrations.crm]
        provider = "oauth2"
        client_id = CLIENT_ID
        client_secret = (client_secret.clone())
        authorization_url = (endpoint("oauth/authorize"))
        token_url = (endpoint("oauth/token"))
        revocation_url = (endpoint("oauth/revoke"))
        api_base_url = (emulator.to_string())
        scopes = ["read", "write"]

        // Loaded only to show its warning; the emulator requires PKCE, so it is not used.
        [integrations.crm-nopkce]
        provider = "oauth2"
        client_id = CLIENT_ID
        client_secret = (client_secret.clone())
        authorization_url = (endpoint("oauth/authorize"))
        token_url = (endpoint("oauth/token"))
        api_base_url = (emulator.to_string())
        pkce = false

        [integrations.redtail]
        provider = "redtail"
        api_key = (redtail_api_key.clone())
        api_base_url = (redtail.base_url().join("api/public/v1").unwrap().to_string())

        [integrations.salesmate]
        provider = "salesmate"
        api_base_url = (salesmate.base_url().to_string())

        [webhooks]
        url = (hooks.url().to_string())
        secret = (webhook_secret.clone())
    };
    if format == Format::Json {
        config.insert(
            "log".into(),
            toml::Value::Table(toml::toml! { format = "json" }),
        );
    }
    std::fs::write(dir.path().join("tether.toml"), config.to_string()).unwrap();

    let tether = Tether::start(dir.path(), &api_key, level).await;

    // OAuth: connect, force refreshes, proxied read and write, a refresh after a provider 401.
    let crm = tether.connect_oauth("oauth-user").await;
    let mut credential_path = String::from("v1/connections/");
    credential_path.push_str(&crm);
    credential_path.push_str("/credentials");
    let creds = tether.get_ok(&credential_path).await;
    assert!(creds["access_token"].is_string(), "{creds}");
    for _ in 0..2 {
        let forced = tether
            .get_ok(&(credential_path.clone() + "?force_refresh=true"))
            .await;
        assert_ne!(forced["access_token"], creds["access_token"]);
    }
    let deals = tether.get_ok(&format!("v1/proxy/{crm}/v1/deals")).await;
    assert!(deals.is_object() || deals.is_array(), "{deals}");
    let (status, _) = tether
        .json(
            reqwest::Method::POST,
            &format!("v1/proxy/{crm}/v1/deals"),
            Some(json!({"title": "Logged?", "value": 5, "stage": "open"})),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    seed.control.expire_access_tokens();
    let refreshes = seed.control.token_calls_by_grant("refresh_token");
    tether.get_ok(&format!("v1/proxy/{crm}/v1/deals")).await;
    assert_eq!(
        seed.control.token_calls_by_grant("refresh_token"),
        refreshes + 1,
        "the provider's 401 made the gateway refresh"
    );

    // Redtail: a wrong password (refused), then the right one; a proxied read.
    let (redtail_id, refusals) = tether
        .connect_form(
            "redtail-user",
            "redtail",
            &[
                vec![("username", REDTAIL_USER), ("password", &wrong_password)],
                vec![("username", REDTAIL_USER), ("password", &password)],
            ],
        )
        .await;
    assert!(
        !refusals.iter().any(|page| page.contains(&wrong_password)),
        "the refusal page does not echo the password"
    );
    tether
        .get_ok(&format!("v1/proxy/{redtail_id}/contacts"))
        .await;

    // Salesmate: a wrong key, then the right one; a proxied read.
    let (salesmate_id, refusals) = tether
        .connect_form(
            "salesmate-user",
            "salesmate",
            &[
                vec![("access_key", &wrong_access_key), ("link_name", LINK_NAME)],
                vec![("access_key", &access_key), ("link_name", LINK_NAME)],
            ],
        )
        .await;
    assert!(
        !refusals.iter().any(|page| page.contains(&wrong_access_key)),
        "the refusal page does not echo the key"
    );
    tether
        .get_ok(&format!(
            "v1/proxy/{salesmate_id}/apis/core/v4/users?status=active"
        ))
        .await;

    // An import of tokens obtained elsewhere, then a forced refresh of it.
    let imported_refresh = seed.control.issue_refresh_token("read write");
    let fresh = tether.get_ok(&credential_path).await;
    let (status, imported) = tether
        .json(
            reqwest::Method::POST,
            "v1/connections",
            Some(
                json!({"integration": "crm", "end_user": {"id": "imported-user"},
                        "credentials": {"access_token": fresh["access_token"],
                                        "refresh_token": imported_refresh,
                                        "expires_in": 3600}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{imported}");
    let imported_id = imported["id"].as_str().unwrap().to_owned();
    tether
        .get_ok(&format!(
            "v1/connections/{imported_id}/credentials?force_refresh=true"
        ))
        .await;

    // A wrong API key, and the metrics with their token.
    let refused = tether
        .api
        .get(tether.url("v1/connections"))
        .bearer_auth(&wrong_api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let metrics = tether
        .api
        .get(tether.url("metrics"))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);

    // Deletes (the OAuth ones revoke at the provider), and every webhook delivered.
    for id in [&crm, &redtail_id, &salesmate_id, &imported_id] {
        let (status, body) = tether
            .json(
                reqwest::Method::DELETE,
                &format!("v1/connections/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    assert!(seed.control.revoke_calls() >= 2);
    eventually(
        Duration::from_secs(30),
        "the connection.deleted webhooks",
        || async { hooks.count_of_type("connection.deleted") == 4 },
    )
    .await;
    assert_eq!(hooks.count_of_type("connection.created"), 4);

    let log = tether.stop().await;
    let issued = seed.control.issued_secrets();
    assert!(
        issued.len() >= 8,
        "codes and tokens were issued: {}",
        issued.len()
    );
    for (n, value) in issued.iter().enumerate() {
        secrets.add(&format!("seed emulator secret #{n}"), value);
    }
    Run {
        log,
        secrets,
        connection_ids: vec![crm, redtail_id, salesmate_id, imported_id],
    }
}

async fn assert_no_secrets_at(level: &str, format: Format) -> String {
    let Run {
        log,
        secrets,
        connection_ids,
    } = run_flows(level, format).await;
    // The capture works and saw the flows: start-up, and every connection by its id (which is
    // no secret), found by the same search that must find no secret.
    assert!(log.contains("tether is serving"), "{log}");
    let mut ids = Secrets::default();
    for id in &connection_ids {
        ids.add(id, id);
    }
    assert_eq!(ids.found_in(&log).len(), 3 * connection_ids.len(), "{log}");
    let found = secrets.found_in(&log);
    assert!(
        found.is_empty(),
        "secrets in the {level} log: {found:?} (log is {} bytes)",
        log.len()
    );
    log
}

/// The warning for `pkce = false`, naming the integration.
fn assert_pkce_warning(log: &str) {
    let line = log
        .lines()
        .find(|l| l.contains("pkce = false"))
        .unwrap_or_else(|| panic!("no PKCE warning in:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("crm-nopkce"), "{line}");
    // Only the integration that switched PKCE off is warned about.
    assert_eq!(
        log.lines().filter(|l| l.contains("pkce = false")).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_secret_reaches_the_debug_log() {
    let log = assert_no_secrets_at("debug", Format::Text).await;
    assert_pkce_warning(&log);
    // At debug the gateway's dependencies speak too: the capture is not just start-up lines.
    assert!(log.lines().count() > 50, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_secret_reaches_the_info_log() {
    let log = assert_no_secrets_at("info", Format::Text).await;
    assert_pkce_warning(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_secret_reaches_the_trace_log() {
    // The most any operator can turn on; the dependencies' own tracing included.
    assert_no_secrets_at("trace", Format::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_secret_reaches_the_json_debug_log() {
    let log = assert_no_secrets_at("debug", Format::Json).await;
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains("\"request_id\"")),
        "JSON lines with the request's span: {log}"
    );
    assert_pkce_warning(&log);
}

/// What an end user with a connect link puts in the callback's `error` and
/// `error_description`: four line breaks (CRLF, LF, CR, NEL, U+2028) that would start forged
/// lines, an ANSI colour, an OSC title sequence ended by BEL, and a right-to-left override.
const FORGED: &str = "x\r\nFAKE-1 INFO tether: forged\nFAKE-2\rFAKE-3\u{85}FAKE-4\u{2028}\
                      \u{1b}[31mred\u{1b}]0;title\u{7}\u{202e}desrever";

/// Runs the OAuth callback with [`FORGED`] through `tether serve` logging in `format`, and
/// returns everything it wrote.
async fn forged_callback_log(format: Format) -> String {
    tether_core::outbound::install_crypto_provider();
    let seed = seed_oauth::spawn(SeedOAuthConfig::default()).await.unwrap();
    let config = SeedOAuthConfig::default();
    let emulator = seed.base_url();
    let endpoint = |path: &str| emulator.join(path).unwrap().to_string();
    let mut file = toml::toml! {
        [connect]
        allowed_return_origins = ["http://app.localhost:9"]

        [integrations.crm]
        provider = "oauth2"
        client_id = (config.client_id.clone())
        client_secret = (config.client_secret.clone())
        authorization_url = (endpoint("oauth/authorize"))
        token_url = (endpoint("oauth/token"))
        api_base_url = (emulator.to_string())
    };
    if format == Format::Json {
        file.insert(
            "log".into(),
            toml::Value::Table(toml::toml! { format = "json" }),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tether.toml"), file.to_string()).unwrap();
    let api_key = format!("tether_sk_{}", secret(43));
    let tether = Tether::start(dir.path(), &api_key, "info").await;

    // The end user's browser goes to the provider; instead of signing in, it comes back with
    // the forged error (the `state` is its own, so the callback gets as far as logging).
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap();
    let to_provider = browser
        .get(tether.start_url("forger", "crm").await)
        .send()
        .await
        .unwrap();
    assert!(to_provider.status().is_redirection());
    let authorize = Url::parse(to_provider.headers()["location"].to_str().unwrap()).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .expect("the authorization URL carries a state")
        .1
        .into_owned();
    let mut callback = tether.url("oauth/callback");
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", FORGED)
        .append_pair("error_description", FORGED);
    let page = browser.get(callback).send().await.unwrap();
    assert_eq!(page.status(), 502, "the provider error page");
    tether.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_values_cannot_forge_text_log_lines() {
    let log = forged_callback_log(Format::Text).await;
    // The forged text arrived only inside the callback's two lines (the refusal, and the
    // warning with its reference), each of them whole: no line of its own.
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("FAKE-")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains("INFO"), "{}", lines[0]);
    assert!(lines[1].contains("WARN"), "{}", lines[1]);
    let line = lines[1];
    assert!(
        line.contains("authorization error from the provider"),
        "{line}"
    );
    for fake in ["FAKE-1", "FAKE-2", "FAKE-3", "FAKE-4"] {
        assert!(
            lines.iter().all(|l| l.contains(fake)),
            "{fake} in {lines:?}"
        );
        assert!(!log.lines().any(|l| l.starts_with(fake)), "{log}");
    }
    // Every escape is visible, in the `%` (Display) field and the `?` (Debug) one alike.
    for visible in [
        "x\\r\\nFAKE-1",
        "\\nFAKE-2",
        "\\rFAKE-3",
        "\\u{85}FAKE-4",
        "\\u{2028}",
        "\\u{1b}[31mred",
        "\\u{1b}]0;title\\u{7}",
        "\\u{202e}desrever",
    ] {
        assert!(line.contains(visible), "{visible} in {line}");
    }
    // Nothing that drives a terminal or reorders text is left anywhere in the output.
    let raw: Vec<char> = log
        .chars()
        .filter(|&c| c != '\n' && tether_core::text::needs_escape(c))
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_values_cannot_forge_json_log_lines() {
    let log = forged_callback_log(Format::Json).await;
    // One JSON object a line: the forged value is inside two of them (the refusal and the
    // warning), escaped, and a JSON reader gets it back exactly.
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("FAKE-")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    for line in &lines {
        let event: Value = serde_json::from_str(line).expect("the line is one JSON object");
        assert_eq!(event["fields"]["error"], FORGED, "{event}");
    }
    // Nothing that breaks a line, drives a terminal or reorders text is written raw.
    let raw: Vec<char> = log
        .chars()
        .filter(|&c| c != '\n' && tether_core::text::needs_escape(c))
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in:\n{log}");
}
