//! Redtail CRM (two-step user key) and Salesmate (access key + link name) as they really
//! authenticate, connected through the credential form against their emulators: success,
//! every kind of refusal and outage (a clear message, nothing stored), proxied reads with
//! pagination, a proxied write, and the credentials endpoint's headers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tether_emulators::Running;
use tether_emulators::redtail::{self, RedtailConfig, RedtailControl, RedtailFault};
use tether_emulators::salesmate::{self, SalesmateConfig, SalesmateControl, SalesmateFault};
use url::Url;

use crate::helpers::*;

const REDTAIL_API_KEY: &str = "demo-redtail-api-key";
pub(crate) const REDTAIL_PASSWORD: &str = "demo-password";
pub(crate) const SALESMATE_KEY: &str = "demo-salesmate-access-key";

/// A gateway with `redtail` and `salesmate` integrations pointed at their emulators.
pub(crate) struct Providers {
    pub(crate) app: TestApp,
    pub(crate) redtail: Running<RedtailControl>,
    pub(crate) salesmate: Running<SalesmateControl>,
}

pub(crate) async fn spawn() -> Providers {
    spawn_with(AppOptions::default()).await
}

/// [`spawn`] with other gateway options (the two integrations are added to them).
pub(crate) async fn spawn_with(mut options: AppOptions) -> Providers {
    let redtail = redtail::spawn(RedtailConfig::default()).await.unwrap();
    let salesmate = salesmate::spawn(SalesmateConfig::default()).await.unwrap();
    let redtail_base = redtail.base_url().join("api/public/v1").unwrap();
    options.integrations.extend([
        (
            "redtail".into(),
            json!({"provider": "redtail", "api_key": REDTAIL_API_KEY,
                   "api_base_url": redtail_base.as_str()}),
        ),
        (
            "salesmate".into(),
            json!({"provider": "salesmate", "api_base_url": salesmate.base_url().as_str()}),
        ),
    ]);
    let app = spawn_app_with(options).await;
    Providers {
        app,
        redtail,
        salesmate,
    }
}

/// The form's URL for a fresh session of `end_user`.
async fn form_url(app: &TestApp, end_user: &str, integration: &str) -> Url {
    let session = app.create_session(end_user, Some(RETURN_URL)).await;
    app.connect_start_url(&session, integration)
}

async fn post_form(app: &TestApp, url: &Url, fields: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .post(url.clone())
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Posts the form and expects the redirect to the app; returns the connection id.
async fn connect_ok(app: &TestApp, url: &Url, fields: &[(&str, &str)]) -> String {
    let response = post_form(app, url, fields).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let target = location(&response);
    assert_eq!(target.path(), "/app/return");
    let pairs: std::collections::HashMap<_, _> = target.query_pairs().into_owned().collect();
    assert_eq!(
        pairs["integration"],
        url.path_segments().unwrap().next_back().unwrap()
    );
    pairs["connection_id"].clone()
}

/// Posts the form and expects it back with an error; returns (status, page).
async fn connect_refused(app: &TestApp, url: &Url, fields: &[(&str, &str)]) -> (u16, String) {
    let response = post_form(app, url, fields).await;
    let status = response.status().as_u16();
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<form method="post""#), "{page}");
    assert!(page.contains(r#"id="submit""#));
    (status, page)
}

async fn credentials(app: &TestApp, id: &str) -> Value {
    let response = app
        .api(
            reqwest::Method::GET,
            &format!("v1/connections/{id}/credentials"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn redtail_login(password: &str) -> [(&'static str, &str); 2] {
    [("username", " demo "), ("password", password)]
}

#[tokio::test]
async fn the_form_shows_labelled_fields_and_keeps_the_session() {
    let p = spawn().await;
    let url = form_url(&p.app, "u1", "redtail").await;
    let response = p.app.http.get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    for needle in [
        r#"<label for="field-username">"#,
        r#"id="field-username" name="username" type="text""#,
        r#"id="field-password" name="password" type="password""#,
        r#"aria-describedby="help-password""#,
        r#"id="submit""#,
    ] {
        assert!(page.contains(needle), "{needle} missing in {page}");
    }
    let session = url.query_pairs().find(|(k, _)| k == "session").unwrap().1;
    assert!(
        page.contains(&format!("session={session}")),
        "the action keeps the session"
    );
    let page = p
        .app
        .http
        .get(form_url(&p.app, "u1", "salesmate").await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"name="access_key" type="password""#));
    assert!(page.contains(r#"name="link_name" type="text""#));
}

#[tokio::test]
async fn redtail_connects_and_proxies_with_the_user_key() {
    let p = spawn().await;
    for (user, flat) in [("nested", false), ("flat", true)] {
        p.redtail.control.set_flat_auth_response(flat);
        let url = form_url(&p.app, user, "redtail").await;
        let id = connect_ok(&p.app, &url, &redtail_login(REDTAIL_PASSWORD)).await;

        let connection = p.app.get_connection(&id).await;
        assert_eq!(connection["metadata"]["database_id"], 1001, "{connection}");
        assert_eq!(connection["metadata"]["user_id"], 42, "{connection}");
        assert!(!connection.to_string().contains(REDTAIL_PASSWORD));

        let creds = credentials(&p.app, &id).await;
        let user_key = &RedtailConfig::default().users[0].user_key;
        let expected = format!(
            "UserKeyAuth {}",
            STANDARD.encode(format!("{REDTAIL_API_KEY}:{user_key}"))
        );
        assert_eq!(
            creds["headers"]["Authorization"],
            expected.as_str(),
            "{creds}"
        );
        assert_eq!(creds["auth_mode"], "two_step");
        assert!(!creds.to_string().contains(REDTAIL_PASSWORD));

        let page1: Value = p
            .app
            .api(reqwest::Method::GET, &format!("v1/proxy/{id}/contacts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let response = p
            .app
            .api(
                reqwest::Method::GET,
                &format!("v1/proxy/{id}/contacts?page=2"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page2: Value = response.json().await.unwrap();
        assert!(
            page2["meta"]["total_pages"].as_u64().unwrap() >= 2,
            "{page2}"
        );
        assert_ne!(page1["contacts"][0]["id"], page2["contacts"][0]["id"]);
    }
}

#[tokio::test]
async fn redtail_wrong_password_blames_the_password_and_keeps_the_username() {
    let p = spawn().await;
    let url = form_url(&p.app, "u1", "redtail").await;
    let (status, page) = connect_refused(&p.app, &url, &redtail_login("wrong-password")).await;
    assert_eq!(status, 422);
    assert!(
        page.contains("did not accept this username and password"),
        "{page}"
    );
    assert!(page.contains(r#"id="field-password" name="password" type="password" value="""#));
    assert!(
        page.contains(r#"aria-invalid="true" aria-describedby="error-password help-password""#),
        "{page}"
    );
    assert!(
        page.contains(r#"name="username" type="text" value="demo""#),
        "{page}"
    );
    assert!(!page.contains("wrong-password"));
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn missing_fields_are_named_without_calling_the_provider() {
    let p = spawn().await;
    let url = form_url(&p.app, "u1", "redtail").await;
    let (status, page) = connect_refused(&p.app, &url, &[("username", "demo")]).await;
    assert_eq!(status, 422);
    assert!(page.contains(r#"id="error-password""#), "{page}");
    assert!(page.contains("Redtail password is required"), "{page}");
    assert_eq!(p.redtail.control.calls(), 0);
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn redtail_outages_during_the_exchange_store_nothing() {
    let p = spawn().await;
    for fault in [RedtailFault::ServerError, RedtailFault::HtmlPage] {
        p.redtail.control.set_fault(Some(fault.clone()));
        let url = form_url(&p.app, "u1", "redtail").await;
        let (status, page) = connect_refused(&p.app, &url, &redtail_login(REDTAIL_PASSWORD)).await;
        assert_eq!(status, 502, "{fault:?}");
        assert!(page.contains("is unavailable right now"), "{page}");
        assert!(page.contains(r#"id="reference">ref-"#), "{page}");
        assert!(page.contains(r#"value="demo""#));
    }
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn salesmate_connects_then_reads_pages_and_writes_through_the_proxy() {
    let p = spawn().await;
    let url = form_url(&p.app, "u1", "salesmate").await;
    let id = connect_ok(
        &p.app,
        &url,
        &[
            ("access_key", SALESMATE_KEY),
            ("link_name", " Acme.salesmate.io "),
        ],
    )
    .await;
    let connection = p.app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["link_name"], "acme", "{connection}");
    assert!(!connection.to_string().contains(SALESMATE_KEY));

    let creds = credentials(&p.app, &id).await;
    assert_eq!(creds["headers"]["accessToken"], SALESMATE_KEY);
    assert_eq!(creds["headers"]["x-linkname"], "acme.salesmate.io");
    assert_eq!(creds["auth_mode"], "api_key");

    let search = json!({
        "displayingFields": ["deal.id", "deal.title"],
        "filterQuery": {"group": {"operator": "AND", "rules": []}},
        "sort": {"fieldName": "deal.id", "order": "asc"},
        "moduleId": 4, "reportType": "get_data", "getRecordsCount": true
    });
    let mut ids = Vec::new();
    for from in ["0", "2"] {
        let response = p
            .app
            .api(
                reqwest::Method::POST,
                &format!("v1/proxy/{id}/apis/deal/v4/search?rows=2&from={from}"),
            )
            .json(&search)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["Status"], "success", "{body}");
        let rows = body["Data"]["data"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{body}");
        ids.extend(rows.iter().map(|r| r.to_string()));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "pages do not overlap");

    let response = p
        .app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/apis/deal/v4"))
        .json(&json!({"title": "Through Tether", "dealValue": 100, "currency": "USD", "status": "Open"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Status"], "success", "{body}");
    assert_eq!(p.salesmate.control.created_deals(), 1);
}

#[tokio::test]
async fn salesmate_refusals_blame_the_right_field_and_store_nothing() {
    let p = spawn().await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 2] = [
        (
            &[("access_key", "wrong-key"), ("link_name", "acme")],
            "error-access_key",
            "did not accept this access key",
        ),
        (
            &[("access_key", SALESMATE_KEY), ("link_name", "nosuch")],
            "error-link_name",
            "no account with this link name",
        ),
    ];
    for (fields, error_id, message) in cases {
        let url = form_url(&p.app, "u1", "salesmate").await;
        let (status, page) = connect_refused(&p.app, &url, fields).await;
        assert_eq!(status, 422);
        assert!(page.contains(error_id), "{page}");
        assert!(page.contains(message), "{page}");
        assert!(!page.contains("wrong-key") && !page.contains(SALESMATE_KEY));
    }
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn salesmate_link_names_that_are_not_a_label_never_reach_the_network() {
    let p = spawn().await;
    for link in [
        "evil.example.com/x",
        "acme.salesmate.io.evil.com",
        "127.0.0.1:80",
        "a b",
    ] {
        let url = form_url(&p.app, "u1", "salesmate").await;
        let (status, page) = connect_refused(
            &p.app,
            &url,
            &[("access_key", SALESMATE_KEY), ("link_name", link)],
        )
        .await;
        assert_eq!(status, 422);
        assert!(page.contains(r#"id="error-link_name""#), "{page}");
        assert!(page.contains("Enter only the link name"), "{page}");
    }
    assert_eq!(p.salesmate.control.calls(), 0);
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn salesmate_probe_failures_and_outages_store_nothing() {
    let p = spawn().await;
    let fields = [("access_key", SALESMATE_KEY), ("link_name", "acme")];
    p.salesmate
        .control
        .set_fault(Some(SalesmateFault::OkWithFailure));
    let url = form_url(&p.app, "u1", "salesmate").await;
    let (status, page) = connect_refused(&p.app, &url, &fields).await;
    assert_eq!(status, 422, "HTTP 200 with Status failure is a failure");
    assert!(
        page.contains("Salesmate did not accept these details"),
        "{page}"
    );
    assert!(page.contains(r#"value="acme""#));
    for fault in [SalesmateFault::ServerError, SalesmateFault::HtmlPage] {
        p.salesmate.control.set_fault(Some(fault.clone()));
        let url = form_url(&p.app, "u1", "salesmate").await;
        let (status, page) = connect_refused(&p.app, &url, &fields).await;
        assert_eq!(status, 502, "{fault:?}");
        assert!(
            page.contains("Salesmate is unavailable right now"),
            "{page}"
        );
        assert!(page.contains(r#"id="reference">ref-"#));
    }
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn a_form_posted_from_another_origin_is_refused() {
    let p = spawn().await;
    let url = form_url(&p.app, "u1", "salesmate").await;
    let response = p
        .app
        .http
        .post(url)
        .header("origin", "https://evil.example")
        .form(&[("access_key", SALESMATE_KEY), ("link_name", "acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A browser that says the post is cross-site, whatever its Origin, is refused too.
    let url = form_url(&p.app, "u2", "salesmate").await;
    let response = p
        .app
        .http
        .post(url)
        .header("sec-fetch-site", "cross-site")
        .form(&[("access_key", SALESMATE_KEY), ("link_name", "acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(p.salesmate.control.calls(), 0);
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn a_form_needs_a_live_session() {
    let p = spawn().await;
    let mut url = p.app.url("connect/salesmate");
    url.query_pairs_mut()
        .append_pair("session", "not-a-session");
    let response = post_form(
        &p.app,
        &url,
        &[("access_key", SALESMATE_KEY), ("link_name", "acme")],
    )
    .await;
    assert_eq!(response.status(), 410);
    assert_eq!(p.salesmate.control.calls(), 0);
}
