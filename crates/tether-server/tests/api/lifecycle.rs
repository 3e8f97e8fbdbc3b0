//! Connections that stay alive and tell the truth (issue 20), end to end through the HTTP API
//! against the seed emulator: the account recorded at connect, a second connect of the same
//! account landing on the same connection and another account changing nothing, a grant
//! revoked at the provider found by the background check and repaired by a reconnect that
//! keeps the id, transient check errors that never flip status, and the keep-alive of idle
//! refresh tokens and of tokens without `expires_in` (with a clock moved by hand).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_emulators::seed_oauth::{CheckFault, SeedAccount, SeedOAuthConfig};
use tether_server::{Clock, GatewayConfig, SystemClock};
use tether_store::Store as _;
use tether_test_support::{Received, Receiver, eventually};
use tokio::sync::watch;

use crate::helpers::*;
use crate::webhooks::spawn_with_receiver;

/// The system's clock, moved forward by hand.
#[derive(Default)]
struct MovedClock {
    ahead_secs: AtomicI64,
}

impl MovedClock {
    fn advance(&self, by: Duration) {
        self.ahead_secs
            .fetch_add(i64::try_from(by.as_secs()).unwrap(), Ordering::SeqCst);
    }
}

impl Clock for MovedClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.ahead_secs.load(Ordering::SeqCst)
    }

    fn instant(&self) -> Instant {
        let ahead = self.ahead_secs.load(Ordering::SeqCst).unsigned_abs();
        SystemClock.instant() + Duration::from_secs(ahead)
    }
}

/// The `check` an operator declares for the generic `oauth2` provider: the seed emulator's
/// who-am-I endpoint.
fn check_table() -> Value {
    json!({
        "path": "/v1/me",
        "account": {
            "user_id": "/id",
            "organization_id": "/company/id",
            "label": ["/email", "/name"],
        },
    })
}

fn options(seed: SeedOAuthConfig, lifetime: Option<Value>) -> AppOptions {
    let mut crm = serde_json::Map::new();
    crm.insert("check".into(), check_table());
    if let Some(lifetime) = lifetime {
        crm.insert("lifetime".into(), lifetime);
    }
    AppOptions {
        seed,
        crm,
        ..AppOptions::default()
    }
}

/// Background work fast enough for a test: the checker looks every 50 ms.
fn fast_background(clock: Option<Arc<MovedClock>>) -> Configure {
    Arc::new(move |config: &mut GatewayConfig| {
        config.lifecycle.tick = Duration::from_millis(50);
        config.lifecycle.check_interval = Duration::from_secs(3600);
        config.refresher.interval = Duration::from_millis(50);
        let _ = &clock;
    })
}

fn grace() -> SeedAccount {
    SeedAccount {
        user_id: 2002,
        organization_id: "org-1".into(),
        email: "grace@example.com".into(),
    }
}

async fn verify(app: &TestApp, id: &str) -> (u16, Value) {
    let response = app
        .api(
            reqwest::Method::POST,
            &format!("v1/connections/{id}/verify"),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A connect session for `end_user`, reconnecting `id` when given.
async fn session(app: &TestApp, end_user: &str, reconnect: Option<&str>) -> Value {
    let mut body = json!({"end_user": {"id": end_user}, "return_url": RETURN_URL});
    if let Some(id) = reconnect {
        body["reconnect_connection_id"] = json!(id);
    }
    let response = app
        .api(reqwest::Method::POST, "v1/connect/sessions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Runs a connect session in a browser; the connection id it returned to the app, or the
/// page it ended on.
async fn finish(app: &TestApp, session: &Value) -> Result<String, (u16, String)> {
    let browser = Browser::new();
    let start = app.connect_start_url(session, "crm");
    let response = browser.get(start).await;
    if let Some(location) = redirect_target(&response) {
        let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        return Ok(pairs["connection_id"].clone());
    }
    let status = response.status().as_u16();
    Err((status, response.text().await.unwrap()))
}

async fn history_kinds(app: &TestApp, id: &str) -> Vec<String> {
    let body: Value = app
        .api(reqwest::Method::GET, &format!("v1/connections/{id}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_account_is_recorded_and_a_second_connect_updates_the_first() {
    let app = spawn_app_with(options(SeedOAuthConfig::default(), None)).await;
    let first = app.connect("u1").await;
    let connection = app.get_connection(&first).await;
    assert_eq!(
        connection["account"],
        json!({"user_id": "1001", "organization_id": "org-1", "label": "ada@example.com"})
    );
    let listed: Value = app
        .api(reqwest::Method::GET, "v1/connections?end_user_id=u1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["connections"][0]["account"]["user_id"], "1001");

    let second = app.connect("u1").await;
    assert_eq!(
        second, first,
        "the same account updates the same connection"
    );
    assert_eq!(app.connection_count().await, 1);
    assert!(
        history_kinds(&app, &first)
            .await
            .contains(&"reconnected".to_owned())
    );

    // Another account for the same end user and integration changes nothing, and the page
    // says whose the connection is.
    app.seed.control.sign_in_as(grace());
    let credentials_before = app.credentials_json(&first, false).await["access_token"].clone();
    let (status, page) = finish(&app, &session(&app, "u1", None).await)
        .await
        .expect_err("refused");
    assert_eq!(status, 409);
    assert!(page.contains("ada@example.com"), "{page}");
    assert_eq!(app.connection_count().await, 1);
    assert_eq!(
        app.get_connection(&first).await["account"]["user_id"],
        "1001"
    );
    assert_eq!(
        app.credentials_json(&first, false).await["access_token"],
        credentials_before
    );
}

#[tokio::test]
async fn concurrent_connects_of_one_account_make_one_connection() {
    let app = spawn_app_with(options(SeedOAuthConfig::default(), None)).await;
    let (a, b) = tokio::join!(app.connect("u1"), app.connect("u1"));
    assert_eq!(a, b);
    assert_eq!(app.connection_count().await, 1);
}

/// The check takes the refresh lease under an owner of its own: a lease this instance's
/// refresher holds (claimed under the instance's id, in the middle of its token call) is not
/// the check's to take over, nor to release.
#[tokio::test]
async fn a_check_leaves_the_refreshers_lease_alone() {
    let mut opts = options(SeedOAuthConfig::default(), None);
    opts.configure = Some(Arc::new(|config: &mut GatewayConfig| {
        config.instance_id = Some("inst_check_test".to_owned());
    }));
    let app = spawn_app_with(opts).await;
    let id = app.connect("u1").await;
    let store = app.gateway.as_ref().unwrap().store();
    let now = SystemClock.now();
    // The refresher of this instance claims the connection (what `claim_due_refreshes` writes:
    // the instance's id as the owner).
    assert!(
        store
            .try_acquire_refresh_lease(&id, "inst_check_test", now + 30, now)
            .await
            .unwrap()
    );
    let (status, body) = verify(&app, &id).await;
    assert_eq!(status, 503, "{body}");
    // Still the refresher's: another contender cannot take it.
    assert!(
        !store
            .try_acquire_refresh_lease(&id, "inst_other", now + 30, now)
            .await
            .unwrap(),
        "the check released the refresher's lease"
    );

    // Once the refresher gives it back, the check takes it, and gives back only its own.
    store
        .release_refresh_lease(&id, "inst_check_test")
        .await
        .unwrap();
    let (status, body) = verify(&app, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ok");
    assert!(
        store
            .try_acquire_refresh_lease(&id, "inst_other", now + 30, now)
            .await
            .unwrap(),
        "the check gave its lease back"
    );
}

#[tokio::test]
async fn a_revoked_grant_is_found_by_the_check_and_a_reconnect_keeps_the_id() {
    let clock = Arc::new(MovedClock::default());
    let mut opts = options(SeedOAuthConfig::default(), None);
    opts.configure = Some(fast_background(Some(clock.clone())));
    opts.clock = Some(clock.clone());
    let (app, receiver, _stop) = spawn_with_receiver(opts).await;
    let id = app.connect("u1").await;
    let (status, body) = verify(&app, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ok");
    assert_eq!(body["account"]["label"], "ada@example.com");

    // The user revokes the app at the provider; within one check interval the background
    // check finds it (a 401, then a refused refresh) and the app is told.
    app.seed.control.revoke_all();
    clock.advance(Duration::from_secs(3600 + 400));
    wait_for_events(&receiver, "connection.needs_reauth", |events| {
        events
            .iter()
            .any(|e| e.body["type"] == "connection.needs_reauth")
    })
    .await;
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "needs_reauth");
    let needs = receiver
        .received()
        .into_iter()
        .find(|e| e.body["type"] == "connection.needs_reauth")
        .unwrap();
    assert_eq!(needs.body["connection_id"], id.as_str());
    assert_eq!(needs.body["reason"], "refresh_refused");
    let (status, body) = verify(&app, &id).await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "needs_reauth");

    // A reconnect by another account changes nothing.
    app.seed.control.sign_in_as(grace());
    let (status, page) = finish(&app, &session(&app, "u1", Some(&id)).await)
        .await
        .expect_err("another account");
    assert_eq!(status, 409);
    assert!(page.contains("ada@example.com"), "{page}");
    assert_eq!(app.get_connection(&id).await["status"], "needs_reauth");

    // The same account reconnects: same id, history kept, active, connection.recovered.
    app.seed.control.sign_in_as(SeedAccount::default());
    let reconnected = finish(&app, &session(&app, "u1", Some(&id)).await)
        .await
        .expect("reconnected");
    assert_eq!(reconnected, id);
    assert_eq!(app.get_connection(&id).await["status"], "active");
    let kinds = history_kinds(&app, &id).await;
    for kind in ["created", "needs_reauth", "reconnected", "recovered"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
    wait_for_events(&receiver, "connection.recovered", |events| {
        events
            .iter()
            .any(|e| e.body["type"] == "connection.recovered")
    })
    .await;
    let created = receiver
        .received()
        .into_iter()
        .find(|e| e.body["type"] == "connection.created")
        .unwrap();
    assert_eq!(
        created.body["account"]["label"], "ada@example.com",
        "webhooks carry the account"
    );
    assert_eq!(verify(&app, &id).await.1["outcome"], "ok");
}

#[tokio::test]
async fn reconnect_sessions_name_the_end_users_own_connection() {
    let app = spawn_app_with(options(SeedOAuthConfig::default(), None)).await;
    let id = app.connect("u1").await;
    for (end_user, reconnect, code) in [
        ("u2", id.as_str(), "reconnect_mismatch"),
        (
            "u1",
            "conn_00000000000000000000000000000000",
            "reconnect_connection_not_found",
        ),
        ("u1", "not-an-id", "reconnect_connection_not_found"),
    ] {
        let response = app
            .api(reqwest::Method::POST, "v1/connect/sessions")
            .json(&json!({"end_user": {"id": end_user}, "reconnect_connection_id": reconnect}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code);
    }
    // A deleted connection's reconnect connects nothing.
    let pending = session(&app, "u1", Some(&id)).await;
    let deleted = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) = finish(&app, &pending).await.expect_err("gone");
    assert_eq!(status, 410);
    assert_eq!(app.connection_count().await, 0);
}

#[tokio::test]
async fn transient_check_errors_never_flip_status() {
    let app = spawn_app_with(options(SeedOAuthConfig::default(), None)).await;
    let id = app.connect("u1").await;
    for fault in [CheckFault::ServiceUnavailable, CheckFault::HtmlPage] {
        app.seed.control.set_check_fault(Some(fault));
        for _ in 0..5 {
            let (status, body) = verify(&app, &id).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["outcome"], "unavailable");
            assert_eq!(body["status"], "active");
            assert_eq!(body["consecutive_failures"], 0);
        }
    }
    app.seed.control.set_check_fault(None);
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "active");
    assert!(
        connection["last_check"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{connection}"
    );
    assert!(
        !history_kinds(&app, &id)
            .await
            .contains(&"needs_reauth".to_owned())
    );
    assert_eq!(verify(&app, &id).await.1["outcome"], "ok");
}

#[tokio::test]
async fn verify_without_a_declared_check_is_a_clear_problem() {
    let app = spawn_app().await;
    let id = app.connect("u1").await;
    let (status, body) = verify(&app, &id).await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "check_not_declared");
    assert!(body["detail"].as_str().unwrap().contains("check"), "{body}");
    let (status, body) = verify(&app, "conn_00000000000000000000000000000000").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("connection_not_found"))
    );
}

/// A check that must send a JSON body (a GraphQL `me` query, as monday.com's API takes it):
/// the body goes out as `application/json` and the account is read from the nested answer.
#[tokio::test]
async fn a_check_with_a_json_body_reads_the_account() {
    let mut crm = serde_json::Map::new();
    crm.insert(
        "check".into(),
        json!({
            "method": "POST",
            "path": "/v1/graphql",
            "json": r#"{"query": "query { me { id email account { id } } }"}"#,
            "account": {
                "user_id": "/data/me/id",
                "organization_id": "/data/me/account/id",
                "label": "/data/me/email",
            },
        }),
    );
    let app = spawn_app_with(AppOptions {
        crm,
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("u1").await;
    assert_eq!(
        app.get_connection(&id).await["account"],
        json!({"user_id": "1001", "organization_id": "org-1", "label": "ada@example.com"})
    );
    let (status, body) = verify(&app, &id).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("ok")),
        "{body}"
    );

    // A JSON body on a GET is refused when the integration is put.
    let response = app
        .api(reqwest::Method::PUT, "v1/integrations/crm-json")
        .json(&json!({
            "provider": "oauth2",
            "client_id": "c",
            "client_secret": "s",
            "authorization_url": "https://auth.example.com/authorize",
            "token_url": "https://auth.example.com/token",
            "api_base_url": "https://api.example.com",
            "check": {"path": "/v1/graphql", "json": "{}"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("check.json"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_idle_refresh_token_is_used_before_it_would_expire() {
    let clock = Arc::new(MovedClock::default());
    let seed = SeedOAuthConfig {
        // A long-lived access token: only the keep-alive has a reason to refresh.
        access_token_ttl: Duration::from_secs(200 * 86_400),
        ..SeedOAuthConfig::default()
    };
    let mut opts = options(seed, Some(json!({"refresh_token_idle_days": 30})));
    opts.configure = Some(fast_background(Some(clock.clone())));
    opts.clock = Some(clock.clone());
    let app = spawn_app_with(opts).await;
    let (_stop, rx) = watch::channel(false);
    app.gateway.as_ref().unwrap().spawn_background(rx);
    let id = app.connect("u1").await;
    clock.advance(Duration::from_secs(20 * 86_400));
    // Checks run (the clock passed their first point) but nothing refreshes yet.
    eventually(LIMIT, "a check after 20 days", || async {
        app.get_connection(&id).await["last_check"] == "ok"
    })
    .await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
    clock.advance(Duration::from_secs(8 * 86_400));
    eventually(LIMIT, "a keep-alive refresh before day 30", || async {
        app.seed.control.token_calls_by_grant("refresh_token") == 1
    })
    .await;
    // The emulator counts the call when it answers; the refresher writes the new tokens and
    // their history entry (one transaction) a moment later.
    eventually(LIMIT, "the keep-alive refresh in the history", || async {
        history_kinds(&app, &id)
            .await
            .contains(&"refreshed".to_owned())
    })
    .await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
    assert_eq!(app.get_connection(&id).await["status"], "active");
}

#[tokio::test]
async fn a_token_without_expires_in_is_refreshed_on_its_declared_lifetime() {
    let clock = Arc::new(MovedClock::default());
    let seed = SeedOAuthConfig {
        omit_expires_in: true,
        ..SeedOAuthConfig::default()
    };
    let mut opts = options(seed, Some(json!({"access_token_secs": 7200})));
    opts.configure = Some(fast_background(Some(clock.clone())));
    opts.clock = Some(clock.clone());
    let app = spawn_app_with(opts).await;
    let (_stop, rx) = watch::channel(false);
    app.gateway.as_ref().unwrap().spawn_background(rx);
    let id = app.connect("u1").await;
    let expires_at = app.get_connection(&id).await["expires_at"].clone();
    assert!(
        expires_at.is_string(),
        "the declared lifetime: {expires_at}"
    );
    clock.advance(Duration::from_secs(7200 - 300));
    eventually(
        LIMIT,
        "a refresh ahead of the declared lifetime",
        || async { app.seed.control.token_calls_by_grant("refresh_token") >= 1 },
    )
    .await;
    eventually(LIMIT, "a new expiry", || async {
        let now = app.get_connection(&id).await["expires_at"].clone();
        now.is_string() && now != expires_at
    })
    .await;
}

#[tokio::test]
async fn repeated_refusals_mark_needs_reauth_with_a_webhook() {
    let mut opts = options(SeedOAuthConfig::default(), None);
    opts.configure = Some(fast_background(None));
    let (app, receiver, _stop) = spawn_with_receiver(opts).await;
    let id = app.connect("u1").await;
    app.seed
        .control
        .set_check_fault(Some(CheckFault::Forbidden));
    for n in 1..=2 {
        let (_, body) = verify(&app, &id).await;
        assert_eq!(body["outcome"], "refused");
        assert_eq!(body["consecutive_failures"], n);
        assert_eq!(body["status"], "active", "one refusal does not condemn");
        assert!(body["reason"].as_str().unwrap().contains("403"), "{body}");
    }
    let (_, body) = verify(&app, &id).await;
    assert_eq!(
        body["status"], "needs_reauth",
        "the third refusal in a row does"
    );
    wait_for_events(&receiver, "connection.needs_reauth", |events| {
        events.iter().any(|e| {
            e.body["type"] == "connection.needs_reauth" && e.body["reason"] == "check_failed"
        })
    })
    .await;
    let kinds = history_kinds(&app, &id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "check_failed").count(),
        2,
        "{kinds:?}"
    );
    let connection = app.get_connection(&id).await;
    assert!(
        connection["last_error"]
            .as_str()
            .unwrap()
            .starts_with("check_failed")
    );
}

#[tokio::test]
async fn the_refusal_page_escapes_the_account_label() {
    let app = spawn_app_with(options(SeedOAuthConfig::default(), None)).await;
    app.seed.control.sign_in_as(SeedAccount {
        user_id: 7,
        organization_id: "org-7".into(),
        email: "<b>eve</b>@example.com".into(),
    });
    let id = app.connect("u1").await;
    app.seed.control.sign_in_as(grace());
    let (status, page) = finish(&app, &session(&app, "u1", Some(&id)).await)
        .await
        .expect_err("another account");
    assert_eq!(status, 409);
    assert!(
        page.contains("&#60;b&#62;eve&#60;/b&#62;@example.com"),
        "{page}"
    );
    assert!(!page.contains("<b>eve"), "{page}");
}

#[tokio::test]
async fn delete_records_the_revocation_and_a_failed_one_does_not_block() {
    let app = spawn_app_with(options(SeedOAuthConfig::default(), None)).await;
    let id = app.connect("u1").await;
    let deleted = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let body: Value = app
        .api(reqwest::Method::GET, &format!("v1/connections/{id}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revocation = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "revocation")
        .expect("recorded");
    assert_eq!(revocation["detail"], "revoked at the provider");

    // The provider's revocation endpoint fails: the delete goes through, and says so.
    let other = app.connect("u2").await;
    app.seed
        .control
        .set_token_fault(Some(tether_emulators::seed_oauth::TokenFault::ServerError));
    let deleted = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.seed.control.set_token_fault(None);
    let kinds = history_kinds(&app, &other).await;
    assert!(kinds.contains(&"revocation".to_owned()) && kinds.contains(&"deleted".to_owned()));
}

/// Waits until `done` holds of the webhooks the receiver has taken, for at most [`LIMIT`].
async fn wait_for_events(receiver: &Receiver, what: &str, done: impl Fn(&[Received]) -> bool) {
    eventually(LIMIT, what, || async { done(&receiver.received()) }).await;
}
