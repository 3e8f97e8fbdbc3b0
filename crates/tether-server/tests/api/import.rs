//! `POST /v1/connections`: importing credentials obtained elsewhere, checked as strictly as
//! a connect.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::providers::{self, SALESMATE_KEY};

async fn import(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .api(reqwest::Method::POST, "v1/connections")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn oauth_tokens_import_and_proxy_then_replace_under_the_same_id() {
    let app = spawn_app().await;
    // Tokens the emulator knows, obtained through a real flow for someone else.
    let donor = app.connect("donor").await;
    let creds = app.credentials_json(&donor, false).await;
    let token = creds["access_token"].as_str().unwrap();
    let (status, created) = import(
        &app,
        json!({"integration": "crm", "end_user": {"id": "migrated"},
               "credentials": {"access_token": token, "expires_in": "3600", "vendor_field": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "active");
    assert!(!created.to_string().contains(token), "no secret echoed");
    let id = created["id"].as_str().unwrap().to_owned();
    let proxied = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(proxied.status(), 200);

    let (status, replaced) = import(
        &app,
        json!({"integration": "crm", "end_user": {"id": "migrated"},
               "credentials": {"access_token": token, "expires_at": "2030-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["id"], id.as_str());
    assert!(
        replaced["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2030-01-01")
    );
}

#[tokio::test]
async fn bad_imports_are_problems_and_store_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"integration": "crm", "end_user": {"id": "u"}, "credentials": {}}),
            "invalid_credentials",
        ),
        (
            json!({"integration": "crm", "end_user": {"id": "u"},
                "credentials": {"access_token": "a", "expires_at": "tomorrow"}}),
            "invalid_credentials",
        ),
        (
            json!({"integration": "nope", "end_user": {"id": "u"},
                "credentials": {"access_token": "a"}}),
            "integration_not_found",
        ),
        (
            json!({"integration": "crm", "end_user": {"id": ""},
                "credentials": {"access_token": "a"}}),
            "invalid_end_user",
        ),
        (
            json!({"integration": "crm", "credentials": {"access_token": "a"}}),
            "invalid_body",
        ),
        (
            json!({"integration": "crm", "end_user": {"id": "u", "email": "a\nb@example.com"},
                   "credentials": {"access_token": "a"}}),
            "invalid_end_user",
        ),
    ];
    for (body, code) in cases {
        let (status, problem) = import(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(problem["code"], code, "{body}: {problem}");
    }
    assert_eq!(app.connection_count().await, 0);
}

#[tokio::test]
async fn salesmate_imports_are_checked_like_the_form() {
    let providers = providers::spawn().await;
    let app = &providers.app;
    let (status, problem) = import(
        app,
        json!({"integration": "salesmate", "end_user": {"id": "s"},
               "credentials": {"access_key": SALESMATE_KEY},
               "metadata": {"link_name": "evil.example/steal"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"].as_str().unwrap().contains("link_name"),
        "{problem}"
    );
    assert_eq!(app.connection_count().await, 0);

    let (status, created) = import(
        app,
        json!({"integration": "salesmate", "end_user": {"id": "s"},
               "credentials": {"access_key": SALESMATE_KEY},
               "metadata": {"link_name": "acme.salesmate.io"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["metadata"]["link_name"], "acme");
    let id = created["id"].as_str().unwrap();
    let search = app
        .api(
            reqwest::Method::POST,
            &format!("v1/proxy/{id}/apis/deal/v4/search?rows=5&from=0"),
        )
        .json(&json!({"displayingFields": ["deal.id"], "moduleId": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 200);
    let body: Value = search.json().await.unwrap();
    assert_eq!(body["Status"], "success", "{body}");
    assert!(providers.salesmate.control.calls() >= 1);
}
