//! `GET /v1/providers` and `GET /v1/integrations`: what is offered, never a secret.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn providers_lists_the_catalog_with_form_fields() {
    let app = spawn_app().await;
    let body: Value = app
        .api(reqwest::Method::GET, "v1/providers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers = body["providers"].as_array().unwrap();
    let by_id = |id: &str| providers.iter().find(|p| p["id"] == id).cloned().unwrap();
    assert_eq!(by_id("oauth2")["auth_mode"], "oauth2");
    assert_eq!(by_id("redtail")["auth_mode"], "two_step");
    let salesmate = by_id("salesmate");
    let names: Vec<&str> = salesmate["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["access_key", "link_name"]);
    let salesforce = by_id("salesforce");
    assert_eq!(salesforce["operator"][0]["name"], "client_id");
    assert_eq!(salesforce["end_user"], serde_json::json!([]));
    assert!(
        salesforce["docs_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert_eq!(salesforce["mark"]["text"], "SF");
    assert!(
        salesforce["quirks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q.as_str().unwrap().contains("instance_url"))
    );
    assert!(providers.len() >= 30, "{}", providers.len());
}

#[tokio::test]
async fn integrations_never_show_secrets() {
    let app = spawn_app().await;
    let response = app
        .api(reqwest::Method::GET, "v1/integrations")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("seed-secret"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let crm = &body["integrations"][0];
    assert_eq!(crm["key"], "crm");
    assert_eq!(crm["oauth2"]["client_id"], "seed-client");
    assert_eq!(crm["oauth2"]["scopes"][1], "write");
    let anonymous = app
        .http
        .get(app.url("v1/integrations"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
