//! The Redtail emulator: two-step authentication, user-key calls, lists, search, faults.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use tether_emulators::Running;
use tether_emulators::redtail::{self, RedtailConfig, RedtailControl, RedtailFault, RedtailUser};
use url::Url;

use super::helpers::{b64, client};

const API_KEY: &str = "demo-redtail-api-key";
const USER_KEY: &str = "6b1f3c9e-4d2a-4f8b-9a7e-2c5d8e0f1a3b";

async fn spawn(config: RedtailConfig) -> Running<RedtailControl> {
    redtail::spawn(config).await.expect("spawn redtail")
}

/// `{base}api/public/v1/{path}`.
fn api(base: &Url, path: &str) -> Url {
    base.join("api/public/v1/").unwrap().join(path).unwrap()
}

fn user_key_auth() -> String {
    ["UserKeyAuth ", &b64(&[API_KEY, USER_KEY].join(":"))].concat()
}

async fn get(base: &Url, path: &str, auth: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().get(api(base, path));
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn authentication_exchanges_basic_credentials_for_the_user_key() {
    let mut config = RedtailConfig::default();
    config.users.push(RedtailUser {
        username: "colon".into(),
        password: "pa:ss:word".into(),
        user_key: "key-2".into(),
        database_id: 7,
        user_id: 8,
    });
    let emu = spawn(config).await;
    let basic =
        |user: &str, pass: &str| ["Basic ", &b64(&[API_KEY, user, pass].join(":"))].concat();

    let (status, body) = get(
        &emu.base_url,
        "authentication",
        Some(&basic("demo", "demo-password")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"authenticated_user": {"user_key": USER_KEY, "redtail_database_id": 1001, "redtail_user_id": 42}})
    );
    let (status, body) = get(
        &emu.base_url,
        "authentication",
        Some(&basic("colon", "pa:ss:word")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["authenticated_user"]["user_key"], "key-2");

    emu.control.set_flat_auth_response(true);
    let (_, body) = get(
        &emu.base_url,
        "authentication",
        Some(&basic("demo", "demo-password")),
    )
    .await;
    assert_eq!(body["user_key"], USER_KEY);
    assert_eq!(body["redtail_user_id"], 42);
    assert_eq!(emu.control.calls(), 3);
}

#[tokio::test]
async fn authentication_failures_are_401_with_a_message() {
    let emu = spawn(RedtailConfig::default()).await;
    let (status, body) = get(&emu.base_url, "authentication", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"message": "Authorization header missing"}));
    for credentials in [
        "wrong-key:demo:demo-password",
        "demo-redtail-api-key:demo:wrong",
        "demo-redtail-api-key:demo",
    ] {
        let auth = ["Basic ", &b64(credentials)].concat();
        let (status, body) = get(&emu.base_url, "authentication", Some(&auth)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{credentials}");
        assert!(body["message"].is_string());
    }
    let (status, _) = get(&emu.base_url, "authentication", Some("Basic %%%")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_key_auth_guards_every_other_route() {
    let emu = spawn(RedtailConfig::default()).await;
    let lower = ["userkeyauth ", &b64(&[API_KEY, USER_KEY].join(":"))].concat();
    let (status, _) = get(&emu.base_url, "contacts", Some(&lower)).await;
    assert_eq!(status, StatusCode::OK, "scheme is case-insensitive");

    let (status, body) = get(&emu.base_url, "contacts", None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Authorization header missing"})
        )
    );
    for auth in [
        ["UserKeyAuth ", &b64(&[API_KEY, "wrong-user-key"].join(":"))].concat(),
        ["UserKeyAuth ", &b64(&["wrong-api-key", USER_KEY].join(":"))].concat(),
        [
            "Basic ",
            &b64(&[API_KEY, "demo", "demo-password"].join(":")),
        ]
        .concat(),
    ] {
        let (status, body) = get(&emu.base_url, "opportunities", Some(&auth)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}");
        assert!(body["message"].is_string());
    }
}

#[tokio::test]
async fn contact_lists_paginate_fifty_a_page() {
    let emu = spawn(RedtailConfig::default()).await;
    let auth = user_key_auth();
    let (status, body) = get(&emu.base_url, "contacts", Some(&auth)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["meta"],
        json!({"total_records": 300, "total_pages": 6})
    );
    let contacts = body["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 50);
    let first = &contacts[0];
    assert_eq!(first["id"], 1);
    for field in [
        "first_name",
        "last_name",
        "full_name",
        "company_name",
        "created_at",
        "updated_at",
    ] {
        assert!(first[field].is_string(), "{field}");
    }

    let (_, page6) = get(&emu.base_url, "contacts?page=6", Some(&auth)).await;
    assert_eq!(page6["contacts"][49]["id"], 300);
    let (status, page7) = get(&emu.base_url, "contacts?page=7", Some(&auth)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page7["contacts"], json!([]));
    for bad in ["contacts?page=0", "contacts?page=abc"] {
        let (status, body) = get(&emu.base_url, bad, Some(&auth)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(body["message"].is_string());
    }

    // Deterministic: a second emulator serves the same records.
    let other = spawn(RedtailConfig::default()).await;
    let (_, again) = get(&other.base_url, "contacts?page=3", Some(&auth)).await;
    let (_, page3) = get(&emu.base_url, "contacts?page=3", Some(&auth)).await;
    assert_eq!(again, page3);
}

#[tokio::test]
async fn records_by_id_search_and_opportunities() {
    let emu = spawn(RedtailConfig::default()).await;
    let auth = user_key_auth();
    let (status, body) = get(&emu.base_url, "contacts/7", Some(&auth)).await;
    assert_eq!(status, StatusCode::OK);
    let contact = body["contact"].clone();
    assert_eq!(contact["id"], 7);
    for missing in ["contacts/9999", "contacts/abc", "opportunities/0"] {
        let (status, body) = get(&emu.base_url, missing, Some(&auth)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert!(body["message"].is_string());
    }

    let last_name = contact["last_name"].as_str().unwrap();
    let (_, found) = get(
        &emu.base_url,
        &["contacts/search?name=", last_name].concat(),
        Some(&auth),
    )
    .await;
    let hits = found["contacts"].as_array().unwrap();
    assert!(hits.iter().any(|c| c["id"] == 7));
    assert!(hits.iter().all(|c| c["last_name"] == last_name));
    let email = contact["emails"][0]["address"].as_str().unwrap();
    let (_, found) = get(
        &emu.base_url,
        &["contacts/search?email=", email].concat(),
        Some(&auth),
    )
    .await;
    assert_eq!(found["contacts"][0]["id"], 7);
    let (status, _) = get(&emu.base_url, "contacts/search", Some(&auth)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, opportunities) = get(&emu.base_url, "opportunities?page=3", Some(&auth)).await;
    assert_eq!(
        opportunities["meta"],
        json!({"total_records": 120, "total_pages": 3})
    );
    assert_eq!(opportunities["opportunities"].as_array().unwrap().len(), 20);
    let (_, one) = get(&emu.base_url, "opportunities/5", Some(&auth)).await;
    let amount = one["opportunity"]["amount"]
        .as_str()
        .expect("amount is a string");
    assert!(amount.parse::<f64>().is_ok(), "{amount}");
    assert!(
        one["opportunity"]["stage_id"].is_i64() && one["opportunity"]["close_date"].is_string()
    );
}

#[tokio::test]
async fn activities_filter_by_valid_dates() {
    let emu = spawn(RedtailConfig::default()).await;
    let auth = user_key_auth();
    let (_, all) = get(&emu.base_url, "activities", Some(&auth)).await;
    assert_eq!(all["meta"]["total_records"], 200);

    let (status, body) = get(
        &emu.base_url,
        "activities?start_date=2023-03-01&end_date=2023-05-31",
        Some(&auth),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let activities = body["activities"].as_array().unwrap();
    assert!(!activities.is_empty());
    assert!(activities.iter().all(|a| {
        let date = &a["start_date"].as_str().unwrap()[..10];
        ("2023-03-01"..="2023-05-31").contains(&date)
    }));
    for bad in [
        "activities?start_date=03/01/2023",
        "activities?start_date=2023-02-30",
        "activities?start_date=2023-06-01&end_date=2023-05-01",
    ] {
        let (status, body) = get(&emu.base_url, bad, Some(&auth)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(body["message"].is_string());
    }
}

#[tokio::test]
async fn faults_apply_to_every_route_until_cleared() {
    let emu = spawn(RedtailConfig::default()).await;
    let auth = user_key_auth();
    let url = api(&emu.base_url, "contacts");
    let call = || {
        client()
            .get(url.clone())
            .header(AUTHORIZATION, auth.as_str())
            .send()
    };

    emu.control.set_fault(Some(RedtailFault::ServerError));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.json::<Value>().await.unwrap()["message"].is_string());

    emu.control.set_fault(Some(RedtailFault::HtmlPage));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    emu.control
        .set_fault(Some(RedtailFault::Delay(Duration::from_millis(100))));
    let started = Instant::now();
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(100));

    emu.control.set_fault(None);
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    assert_eq!(emu.control.calls(), 4);
}
