//! `PUT` and `DELETE /v1/integrations/{key}`: integrations managed through the API, checked
//! like the configuration file, stored sealed, kept across a restart, never shadowing or
//! removing a configured one, and never deleted while they have connections.

use serde_json::{Value, json};

use crate::helpers::*;

/// An integration table on the generic provider, pointed at the test's emulator.
fn crm_like(app: &TestApp) -> Value {
    let emu = app.seed.base_url();
    json!({
        "provider": "oauth2",
        "display_name": "Second CRM",
        "client_id": "seed-client",
        "client_secret": "seed-secret",
        "authorization_url": emu.join("oauth/authorize").unwrap().as_str(),
        "token_url": emu.join("oauth/token").unwrap().as_str(),
        "api_base_url": emu.as_str(),
    })
}

async fn put(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .api(reqwest::Method::PUT, &format!("v1/integrations/{key}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, key: &str) -> (u16, Value) {
    let response = app
        .api(reqwest::Method::DELETE, &format!("v1/integrations/{key}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn listed_keys(app: &TestApp) -> Vec<String> {
    let body: Value = app
        .api(reqwest::Method::GET, "v1/integrations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_integration_put_through_the_api_connects_and_survives_a_restart() {
    let mut app = spawn_app_allowing_loopback().await;
    let (status, view) = put(&app, "second", &crm_like(&app)).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["managed_by"], "api");
    assert!(
        !view.to_string().contains("seed-secret"),
        "no secret echoed"
    );
    assert_eq!(listed_keys(&app).await, ["crm", "second"]);

    // A replace answers 200 and takes effect.
    let mut renamed = crm_like(&app);
    renamed["display_name"] = json!("Renamed CRM");
    let (status, view) = put(&app, "second", &renamed).await;
    assert_eq!(status, 200);
    assert_eq!(view["display_name"], "Renamed CRM");

    // The secret is sealed at rest.
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(11).any(|w| w == b"seed-secret"),
            "client secret on disk"
        );
    }

    app.restart().await;
    assert_eq!(listed_keys(&app).await, ["crm", "second"]);
    // The restarted gateway can run a connect flow with it.
    let session = app.create_session("api-user", Some(RETURN_URL)).await;
    let start = app.connect_start_url(&session, "second");
    let landed = Browser::new().follow(start).await.expect("back at the app");
    assert!(landed.as_str().contains("integration=second"), "{landed}");
}

#[tokio::test]
async fn bad_bodies_and_configured_integrations_are_refused() {
    let app = spawn_app().await;
    let mut with_env = crm_like(&app);
    with_env["client_secret"] = json!("env:HOME");
    let cases = [
        (
            "second",
            json!({"provider": "nope"}),
            400,
            "invalid_integration",
        ),
        (
            "second",
            json!({"provider": "oauth2", "tokn_url": "x"}),
            400,
            "invalid_integration",
        ),
        ("Bad Key", crm_like(&app), 400, "invalid_integration_key"),
        ("second", with_env, 400, "secret_reference_not_allowed"),
        ("crm", crm_like(&app), 409, "integration_managed_by_config"),
    ];
    for (key, body, status, code) in cases {
        let (got, problem) = put(&app, key, &body).await;
        assert_eq!(got, status, "{key}: {problem}");
        assert_eq!(problem["code"], code, "{key}: {problem}");
    }
    let (status, problem) = delete(&app, "crm").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("integration_managed_by_config"))
    );
    let (status, problem) = delete(&app, "nope").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("integration_not_found"))
    );
    assert_eq!(listed_keys(&app).await, ["crm"]);
}

#[tokio::test]
async fn an_integration_with_connections_cannot_be_deleted() {
    let app = spawn_app_allowing_loopback().await;
    assert_eq!(put(&app, "second", &crm_like(&app)).await.0, 201);
    let creds = app
        .credentials_json(&app.connect("donor").await, false)
        .await;
    let imported = app
        .api(reqwest::Method::POST, "v1/connections")
        .json(&json!({"integration": "second", "end_user": {"id": "u"},
                      "credentials": {"access_token": creds["access_token"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 201);
    let id = imported.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, problem) = delete(&app, "second").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("integration_in_use"))
    );

    let deleted = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(delete(&app, "second").await.0, 204);
    assert_eq!(listed_keys(&app).await, ["crm"]);
}
