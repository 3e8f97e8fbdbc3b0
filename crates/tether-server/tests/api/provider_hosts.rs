//! API-key providers whose host is not one fixed name: ActiveCampaign (the whole API URL the
//! user pastes), Freshsales (the bundle alias, on `myfreshworks.com` or the older
//! `freshsales.io`) and Twenty (a self-hosted server the operator names). The Connect form
//! runs against a recording upstream on loopback; the integration's `api_base_url` keeps the
//! catalog's reference to the user's value in the path, so the recorded path shows which host
//! Tether would have called.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const KEY: &str = "test-api-key-7f3a";

/// A request's path and the credential header it carried.
type SeenRequest = (String, Option<String>);

/// Every request the upstream saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<SeenRequest>>>);

impl Seen {
    fn paths(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter().map(|(path, _)| path.clone()).collect()
    }
}

/// Answers 200 `{}` when `header` carries `expected`, 401 otherwise.
async fn upstream(header: &'static str, expected: &'static str) -> (String, Seen) {
    let seen = Seen::default();
    let handler = move |State(seen): State<Seen>, request: Request| async move {
        let value = request
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = value.as_deref() == Some(expected);
        seen.0
            .lock()
            .unwrap()
            .push((request.uri().path().to_owned(), value));
        if ok {
            (StatusCode::OK, axum::Json(json!({})))
        } else {
            (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "no"})))
        }
    };
    let router = axum::Router::new()
        .fallback(handler)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = tether_server::serve(
            listener,
            router,
            tether_server::ServerLimits::default(),
            std::future::pending(),
        )
        .await;
    });
    (base, seen)
}

/// Posts the Connect form of `integration` for a fresh end user: (status, Location or body).
async fn post_form(app: &TestApp, integration: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let browser = Browser::new();
    let session = app.create_session("host-user", Some(RETURN_URL)).await;
    let start = app.connect_start_url(&session, integration);
    assert_eq!(browser.get(start.clone()).await.status(), 200);
    let response = browser
        .client
        .post(start)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let shown = match response.headers().get("location") {
        Some(location) => location.to_str().unwrap().to_owned(),
        None => response.text().await.unwrap(),
    };
    (status, shown)
}

fn connection_id(location: &str) -> String {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "connection_id")
        .unwrap()
        .1
        .into_owned()
}

/// ActiveCampaign: the user pastes the API URL from Settings > Developer; its host (any
/// cluster ActiveCampaign serves, not only `api-us1.com`) is the one called, and a host of
/// another domain is refused on the form without any request.
#[tokio::test]
async fn activecampaign_calls_the_host_of_the_pasted_api_url() {
    let (base, seen) = upstream("api-token", KEY).await;
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "ac".into(),
            json!({"provider": "activecampaign",
                   "api_base_url": ([base.as_str(), "x/${connection.api_host}/api/3"].concat())}),
        )],
        ..AppOptions::default()
    })
    .await;
    let (status, body) = post_form(
        &app,
        "ac",
        &[("api_host", "https://evil.example/"), ("api_key", KEY)],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("Paste the URL shown"), "{body}");
    assert!(seen.paths().is_empty(), "nothing was called");

    for (pasted, host) in [
        ("https://Acme.activehosted.com/", "acme.activehosted.com"),
        ("https://acme2.api-us1.com", "acme2.api-us1.com"),
    ] {
        let (status, location) =
            post_form(&app, "ac", &[("api_host", pasted), ("api_key", KEY)]).await;
        assert_eq!(status, 303, "{location}");
        let id = connection_id(&location);
        let connection = app.get_connection(&id).await;
        assert_eq!(connection["metadata"]["api_host"], host);
        let probe = ["/x/", host, "/api/3/users/me"].concat();
        assert!(seen.paths().contains(&probe), "{:?}", seen.paths());
        let response = app.proxy_get(&id, "contacts").await;
        assert_eq!(response.status(), 200);
        let called = ["/x/", host, "/api/3/contacts"].concat();
        assert_eq!(seen.paths().last(), Some(&called));
    }
}

/// ActiveCampaign's list of API domains is not published (the file says so): an operator
/// whose users are on another domain widens the form's pattern with `field_patterns`, and
/// those users connect; a field the provider holds to no pattern cannot be given one, and a
/// pattern that does not compile is refused when the integration is loaded.
#[tokio::test]
async fn an_operator_widens_the_activecampaign_host_pattern() {
    let (base, seen) = upstream("api-token", KEY).await;
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "ac".into(),
            json!({"provider": "activecampaign",
            "api_base_url": ([base.as_str(), "x/${connection.api_host}/api/3"].concat()),
            "field_patterns": {
                "api_host": "[a-z0-9-]+\\.(api-us1\\.com|activehosted\\.com|ac-eu\\.example)"
            }}),
        )],
        ..AppOptions::default()
    })
    .await;
    let (status, location) = post_form(
        &app,
        "ac",
        &[
            ("api_host", "https://acme.ac-eu.example/"),
            ("api_key", KEY),
        ],
    )
    .await;
    assert_eq!(status, 303, "{location}");
    let id = connection_id(&location);
    assert_eq!(
        app.get_connection(&id).await["metadata"]["api_host"],
        "acme.ac-eu.example"
    );
    assert_eq!(app.proxy_get(&id, "contacts").await.status(), 200);
    assert_eq!(
        seen.paths().last().map(String::as_str),
        Some("/x/acme.ac-eu.example/api/3/contacts")
    );
    let (status, body) = post_form(
        &app,
        "ac",
        &[
            ("api_host", "https://acme.other.example/"),
            ("api_key", KEY),
        ],
    )
    .await;
    assert_eq!(status, 422, "still held to the operator's pattern: {body}");

    let catalog = tether_core::catalog::Catalog::embedded().unwrap();
    for (patterns, expected) in [
        (
            json!({"api_key": ".*"}),
            "has no form field \"api_key\" held to a pattern",
        ),
        (
            json!({"api_host": "("}),
            "field_patterns.api_host is not a valid pattern",
        ),
        (
            json!({"api_host": 7}),
            "field_patterns.api_host must be a string",
        ),
    ] {
        let table = json!({"provider": "activecampaign", "field_patterns": patterns});
        let err = tether_core::integration::Integration::from_config(
            "ac",
            table.as_object().unwrap(),
            &catalog,
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

/// Freshsales: the bundle alias as shown under API Settings, on the Freshworks platform
/// (`acme.myfreshworks.com/crm/sales`) or on the older `acme.freshsales.io`.
#[tokio::test]
async fn freshsales_accepts_both_bundle_alias_domains() {
    let (base, seen) = upstream("authorization", "Token token=test-api-key-7f3a").await;
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "fs".into(),
            json!({"provider": "freshsales",
                   "api_base_url": ([base.as_str(), "x/${connection.bundle_alias}"].concat())}),
        )],
        ..AppOptions::default()
    })
    .await;
    for (entered, alias) in [
        ("acme.freshsales.io", "acme.freshsales.io"),
        (
            "https://Acme.myfreshworks.com/crm/sales/",
            "acme.myfreshworks.com/crm/sales",
        ),
    ] {
        let (status, location) =
            post_form(&app, "fs", &[("api_key", KEY), ("bundle_alias", entered)]).await;
        assert_eq!(status, 303, "{location}");
        let id = connection_id(&location);
        assert_eq!(
            app.get_connection(&id).await["metadata"]["bundle_alias"],
            alias
        );
        let probe = ["/x/", alias, "/api/selector/owners"].concat();
        assert_eq!(seen.paths().last(), Some(&probe));
    }
    // Another domain is not a Freshsales bundle alias.
    let before = seen.paths().len();
    let (status, _) = post_form(
        &app,
        "fs",
        &[("api_key", KEY), ("bundle_alias", "acme.example.com")],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(seen.paths().len(), before);
}

/// Twenty: an integration names its self-hosted server in `server`; without it, Twenty
/// Cloud.
#[tokio::test]
async fn twenty_integrations_name_their_server() {
    let app = spawn_app_with(AppOptions {
        integrations: vec![
            (
                "twenty-own".into(),
                json!({"provider": "twenty", "server": "crm.acme.example"}),
            ),
            ("twenty-cloud".into(), json!({"provider": "twenty"})),
        ],
        ..AppOptions::default()
    })
    .await;
    for (integration, expected) in [
        ("twenty-own", "https://crm.acme.example/rest"),
        ("twenty-cloud", "https://api.twenty.com/rest"),
    ] {
        let response = app
            .api(reqwest::Method::POST, "v1/connections")
            .json(
                &json!({"integration": integration, "end_user": {"id": integration},
                          "credentials": {"api_key": KEY}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        let credentials = app.credentials_json(id, false).await;
        assert_eq!(credentials["base_url"], expected, "{credentials}");
    }
}
