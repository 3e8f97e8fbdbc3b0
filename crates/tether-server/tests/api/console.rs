//! The operator console over real HTTP: sign-in through the form (wrong keys count against
//! the API-key limiter), the session cookie's attributes, CSRF and cross-origin refusals on
//! every action, the views and actions, the security headers, and no secret on any page.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};

use crate::helpers::*;
use crate::webhooks::{spawn_with_receiver, wait_until};

/// A browser without a cookie jar: the test carries the session cookie itself.
struct Console {
    http: reqwest::Client,
    origin: String,
    cookie: Option<String>,
}

impl Console {
    fn new(app: &TestApp) -> Console {
        Console {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            origin: app.base.origin().ascii_serialization(),
            cookie: None,
        }
    }

    fn get(&self, app: &TestApp, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.get(app.url(path));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        request
    }

    /// A same-origin form post, as the console's own pages send it.
    fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(app.url(path))
            .header("origin", &self.origin)
            .header("sec-fetch-site", "same-origin")
            .form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        request
    }

    async fn sign_in(&mut self, app: &TestApp, key: &str) -> reqwest::Response {
        let response = self
            .post(app, "dashboard/sign-in", &[("api_key", key)])
            .send()
            .await
            .unwrap();
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        response
    }

    /// A page's status and HTML.
    async fn page(&self, app: &TestApp, path: &str) -> (StatusCode, String) {
        let response = self.get(app, path).send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// Another browser holding a copy of this one's cookie.
    fn clone_session(&self) -> Console {
        Console {
            http: self.http.clone(),
            origin: self.origin.clone(),
            cookie: self.cookie.clone(),
        }
    }

    /// The CSRF token of the signed-in session, read from a page's sign-out form.
    async fn csrf(&self, app: &TestApp) -> String {
        let (_, html) = self.page(app, "dashboard").await;
        let marker = "name=\"csrf\" value=\"";
        let start = html.find(marker).expect("a CSRF field") + marker.len();
        html[start..start + 64].to_owned()
    }
}

/// Fails when a page shows any of the secrets.
fn assert_no_secrets(html: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!html.contains(secret), "a secret on a console page");
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_without_the_key() {
    let app = spawn_app().await;
    let mut console = Console::new(&app);

    // Unsigned: the sign-in form, with the Connect pages' headers and no framing at all.
    let response = console.get(&app, "dashboard").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.text().await.unwrap().contains("name=\"api_key\""));
    // Other pages send an unsigned browser to sign in.
    let response = console
        .get(&app, "dashboard/connections")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);

    // A planted cookie is not a session (no fixation).
    console.cookie = Some("tether_console=planted".into());
    let (_, html) = console.page(&app, "dashboard").await;
    assert!(html.contains("name=\"api_key\""));

    let response = console.sign_in(&app, &app.api_key).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/dashboard");
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("tether_console="), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert!(!set.contains(&app.api_key), "the key in the cookie");
    assert_ne!(console.cookie.as_deref(), Some("tether_console=planted"));

    let (status, html) = console.page(&app, "dashboard").await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign out"));
    assert_no_secrets(&html, &[&app.api_key]);

    // Two sign-ins, two distinct sessions.
    let first = console.cookie.clone();
    console.sign_in(&app, &app.api_key).await;
    assert_ne!(console.cookie, first);

    // Sign-out clears the cookie.
    let csrf = console.csrf(&app).await;
    let response = console
        .post(&app, "dashboard/sign-out", &[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cleared = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("tether_console=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn wrong_keys_count_against_the_api_key_limiter() {
    let app = spawn_app().await;
    let mut console = Console::new(&app);
    let response = console.sign_in(&app, "tether_sk_wrong").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("not an API key"), "{html}");
    assert!(!html.contains("tether_sk_wrong"), "the wrong key echoed");
    let empty = console.sign_in(&app, "  ").await;
    assert_eq!(empty.status(), 400);
    // Ten failures per minute by default: the eleventh wrong key is refused with 429...
    for _ in 1..10 {
        console.sign_in(&app, "tether_sk_wrong").await;
    }
    let limited = console.sign_in(&app, "tether_sk_wrong").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some());
    assert!(console.cookie.is_none());
    // ... and so are wrong keys on the API (the same buckets)...
    let api = app
        .http
        .get(app.url("v1/connections"))
        .bearer_auth("tether_sk_wrong_again")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429);
    // ... but the right key still signs in and still calls the API.
    let signed_in = console.sign_in(&app, &app.api_key).await;
    assert_eq!(signed_in.status(), 303);
    assert!(console.cookie.is_some());
    let api = app
        .api(reqwest::Method::GET, "v1/connections")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
}

#[tokio::test]
async fn a_signed_out_cookie_no_longer_works() {
    let app = spawn_app().await;
    let id = app.connect("signed-out-user").await;
    let mut console = Console::new(&app);
    console.sign_in(&app, &app.api_key).await;
    let csrf = console.csrf(&app).await;
    let copied = console.clone_session();
    let response = console
        .post(&app, "dashboard/sign-out", &[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    // A copy of the cookie taken before signing out: pages and actions are refused.
    let page = copied
        .get(&app, "dashboard/connections")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "sent to the sign-in page");
    let refresh = format!("dashboard/connections/{id}/refresh");
    let action = copied
        .post(&app, &refresh, &[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(action.status(), 401);
    assert!(action.text().await.unwrap().contains("session ended"));
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session() {
    let app = spawn_app().await;
    let mut first = Console::new(&app);
    first.sign_in(&app, &app.api_key).await;
    let mut second = Console::new(&app);
    second.sign_in(&app, &app.api_key).await;
    let (status, _) = second.page(&app, "dashboard/connections").await;
    assert_eq!(status, 200);
    let csrf = first.csrf(&app).await;
    let html = first.page(&app, "dashboard").await.1;
    assert!(html.contains("End all sessions"), "{html}");
    let response = first
        .post(&app, "dashboard/sign-out-everywhere", &[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    for console in [&first, &second] {
        let page = console
            .get(&app, "dashboard/connections")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 303, "signed out");
    }
    // Without the right token, nobody can sign everyone out.
    let mut third = Console::new(&app);
    third.sign_in(&app, &app.api_key).await;
    let refused = third
        .post(
            &app,
            "dashboard/sign-out-everywhere",
            &[("csrf", &"0".repeat(64))],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let (status, _) = third.page(&app, "dashboard/connections").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_the_same_origin() {
    let app = spawn_app().await;
    let id = app.connect("csrf-user").await;
    let mut console = Console::new(&app);
    console.sign_in(&app, &app.api_key).await;
    let csrf = console.csrf(&app).await;
    let refresh = format!("dashboard/connections/{id}/refresh");

    // No token, a wrong token: refused with a page, nothing done.
    let calls = app.seed.control.token_calls_by_grant("refresh_token");
    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = console.post(&app, &refresh, &form).send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert!(response.text().await.unwrap().contains("security token"));
    }
    // Another origin, even with the right token and cookie.
    for (header, value) in [
        ("origin", "http://evil.localhost:9"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = console
            .http
            .post(app.url(&refresh))
            .header("cookie", console.cookie.clone().unwrap())
            .header(header, value)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{header}");
        assert!(response.text().await.unwrap().contains("another site"));
    }
    // Sign-in from another site is refused too (login CSRF).
    let response = console
        .http
        .post(app.url("dashboard/sign-in"))
        .header("origin", "http://evil.localhost:9")
        .form(&[("api_key", app.api_key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get(SET_COOKIE).is_none());
    // Without a session: a page saying so.
    let anonymous = Console::new(&app);
    let response = anonymous
        .post(&app, &refresh, &[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        app.seed.control.token_calls_by_grant("refresh_token"),
        calls
    );

    // The token of another session is not this one's.
    let mut other = Console::new(&app);
    other.sign_in(&app, &app.api_key).await;
    let response = other
        .post(&app, &refresh, &[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // With everything right, it refreshes.
    let response = console
        .post(&app, &refresh, &[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()[LOCATION].to_str().unwrap();
    assert_eq!(
        location,
        format!("/dashboard/connections/{id}?notice=refreshed")
    );
    assert_eq!(
        app.seed.control.token_calls_by_grant("refresh_token"),
        calls + 1
    );
}

#[tokio::test]
async fn views_find_show_and_act_on_a_connection_without_secrets() {
    let (app, receiver, _stop) = spawn_with_receiver(AppOptions::default()).await;
    let id = app.connect("console-user").await;
    let other = app.connect("someone-else").await;
    let token = app.credentials_json(&id, true).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(&receiver, "deliveries", |events| events.len() >= 3).await;
    let mut console = Console::new(&app);
    console.sign_in(&app, &app.api_key).await;
    let secrets = [
        token.as_str(),
        app.api_key.as_str(),
        "seed-secret",
        crate::webhooks::WEBHOOK_SECRET,
    ];

    let (status, html) = console.page(&app, "dashboard").await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(html.contains("2 connections by status"), "{html}");
    assert!(
        html.contains("crm: 1 refreshed, 0 failed, last 24 hours"),
        "{html}"
    );
    assert_no_secrets(&html, &secrets);

    // Search by end user id, then by email (any case); filters by status and integration.
    let (_, html) = console
        .page(&app, "dashboard/connections?q=console-user")
        .await;
    assert!(html.contains(&id) && !html.contains(&other));
    let (_, html) = console
        .page(
            &app,
            "dashboard/connections?q=USER%40example.com&status=active&integration=crm",
        )
        .await;
    assert!(html.contains(&id) && html.contains(&other));
    let (_, html) = console
        .page(&app, "dashboard/connections?status=needs_reauth")
        .await;
    assert!(html.contains("No connection matches"));
    let (status, html) = console
        .page(&app, "dashboard/connections?status=lost")
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("Unknown status"));
    let (status, _) = console.page(&app, "dashboard/connections?colour=red").await;
    assert_eq!(status, 400);

    // One connection: facts, timeline, deliveries, never a secret.
    let (status, html) = console
        .page(&app, &format!("dashboard/connections/{id}"))
        .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Refreshed") && html.contains("Connected"),
        "{html}"
    );
    assert!(html.contains("Webhook delivered"), "{html}");
    assert!(html.contains("connection.created"), "{html}");
    assert_no_secrets(&html, &secrets);
    let (status, _) = console
        .page(
            &app,
            "dashboard/connections/conn_00000000000000000000000000000000",
        )
        .await;
    assert_eq!(status, 404);

    // Redeliver a webhook.
    let csrf = console.csrf(&app).await;
    let (_, html) = console.page(&app, "dashboard/webhooks").await;
    assert_no_secrets(&html, &secrets);
    let marker = "data-event=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let event_id = html[start..].split('"').next().unwrap().to_owned();
    let before = receiver.received().len();
    let response = console
        .post(
            &app,
            &format!("dashboard/webhooks/{event_id}/redeliver"),
            &[("csrf", csrf.as_str())],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    wait_until(&receiver, "the redelivery", |events| {
        events.len() > before && events.last().unwrap().body["id"] == event_id.as_str()
    })
    .await;

    // Delete: a confirmation page first, then the delete.
    let (status, html) = console
        .page(&app, &format!("dashboard/connections/{id}/delete"))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("Delete this connection?"));
    let response = console
        .post(
            &app,
            &format!("dashboard/connections/{id}/delete"),
            &[("csrf", csrf.as_str())],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        app.api(reqwest::Method::GET, &format!("v1/connections/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Its history stays readable, with the deletion.
    let (status, html) = console
        .page(&app, &format!("dashboard/connections/{id}"))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("Deleted") && html.contains("was deleted"));
    // Deleting again: a page saying so.
    let response = console
        .post(
            &app,
            &format!("dashboard/connections/{id}/delete"),
            &[("csrf", csrf.as_str())],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// A connection's page shows its provider budget as the proxy last heard it, and the history
/// says when the provider held it back.
#[tokio::test]
async fn the_connection_page_shows_the_provider_budget() {
    let app = spawn_app().await;
    let id = app.connect("budgeted").await;
    app.seed
        .control
        .set_api_rate_limit(Some(tether_emulators::seed_oauth::ApiRateLimit {
            limit: 2,
            window: std::time::Duration::from_secs(60),
            per_organization: false,
        }));
    let mut console = Console::new(&app);
    console.sign_in(&app, &app.api_key).await;
    let page = format!("dashboard/connections/{id}");
    let (_, html) = console.page(&app, &page).await;
    assert!(!html.contains("provider budget"), "nothing reported yet");

    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    let (status, html) = console.page(&app, &page).await;
    assert_eq!(status, 200);
    assert!(html.contains("provider budget"), "{html}");
    assert!(html.contains("1 of 2 calls left"), "{html}");
    assert!(html.contains("as this instance heard it"), "{html}");

    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 429);
    let html = tether_test_support::eventually(LIMIT, "the held-back entry", async || {
        let (_, html) = console.page(&app, &page).await;
        html.contains("Held back by the provider").then_some(html)
    })
    .await;
    assert!(html.contains("0 of 2 calls left"), "{html}");
}

#[tokio::test]
async fn a_connection_that_needs_reauth_offers_a_reconnect_link_that_keeps_its_id() {
    let mut crm = serde_json::Map::new();
    crm.insert(
        "check".into(),
        serde_json::json!({"path": "/v1/me", "account": {"user_id": "/id", "label": "/email"}}),
    );
    let app = spawn_app_with(AppOptions {
        crm,
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("reconnect-user").await;
    let mut console = Console::new(&app);
    console.sign_in(&app, &app.api_key).await;
    let path = format!("dashboard/connections/{id}");
    let (_, html) = console.page(&app, &path).await;
    assert!(
        html.contains("ada@example.com (1001)"),
        "the account: {html}"
    );
    assert!(
        !html.contains("id=\"reconnect\""),
        "active: nothing to repair"
    );

    app.seed.control.revoke_all();
    let forced = app
        .api(
            reqwest::Method::GET,
            &format!("v1/connections/{id}/credentials?force_refresh=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 409);
    let (_, html) = console.page(&app, &path).await;
    assert!(html.contains("id=\"reconnect\""), "{html}");
    let csrf = console.csrf(&app).await;
    let response = console
        .post(&app, &format!("{path}/reconnect"), &[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let start = html.find("http://").expect("a link");
    let link = &html[start..];
    let link = &link[..link.find(|c: char| c == '<' || c.is_whitespace()).unwrap()];
    let link = url::Url::parse(&link.replace("&amp;", "&")).unwrap();
    let token = link
        .query_pairs()
        .find(|(k, _)| k == "session")
        .unwrap()
        .1
        .into_owned();
    let mut start = app.url("connect/crm");
    start.query_pairs_mut().append_pair("session", &token);
    let page = Browser::new().get(start).await;
    assert_eq!(page.status(), 200, "the result page (no return URL)");
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "active");
    assert_eq!(app.connection_count().await, 1);
}
