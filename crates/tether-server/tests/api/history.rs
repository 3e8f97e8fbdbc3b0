//! The connection history (`GET /v1/connections/{id}/events`): every change is recorded with
//! or without webhooks, failures carry the provider's reason and a reference code, webhook
//! outcomes join it, pages are keyset-paginated, bad input is a problem, and no entry holds a
//! secret.

use std::time::Duration;

use serde_json::Value;
use tether_emulators::seed_oauth::{SeedOAuthConfig, TokenFault};

use tether_test_support::eventually;

use crate::helpers::*;
use crate::webhooks::{spawn_with_receiver, wait_until};

/// `GET /v1/connections/{id}/events{query}` with the app's key: status and body.
async fn events(app: &TestApp, id: &str, query: &str) -> (u16, Value, String) {
    let response = app
        .api(
            reqwest::Method::GET,
            &format!("v1/connections/{id}/events{query}"),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, response.json().await.unwrap(), content_type)
}

fn types(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Tokens inside the refresh margin, so every read refreshes.
fn short_lived() -> SeedOAuthConfig {
    SeedOAuthConfig {
        access_token_ttl: Duration::from_secs(60),
        ..SeedOAuthConfig::default()
    }
}

#[tokio::test]
async fn every_change_is_in_the_history_without_webhooks() {
    let app = spawn_app_with(AppOptions {
        seed: short_lived(),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("history-user").await;
    let token = app.credentials_json(&id, true).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A reconnect keeps the id and says so.
    assert_eq!(app.connect("history-user").await, id);
    // A transient failure: the read is still served, the history has the reason.
    app.seed
        .control
        .set_token_fault(Some(TokenFault::ServerError));
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    // A refusal for good.
    app.seed
        .control
        .set_token_fault(Some(TokenFault::InvalidGrant));
    // Back-off would hold the next refresh back; a forced one goes through.
    let forced = app
        .api(
            reqwest::Method::GET,
            &format!("v1/connections/{id}/credentials?force_refresh=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 409);
    assert_eq!(app.get_connection(&id).await["status"], "needs_reauth");

    let (status, body, content_type) = events(&app, &id, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    assert_eq!(
        types(&body),
        [
            "needs_reauth",
            "refresh_failed",
            "reconnected",
            "refreshed",
            "created"
        ]
    );
    let list = body["events"].as_array().unwrap();
    assert_eq!(list[0]["detail"], "invalid_grant");
    assert_eq!(list[1]["integration"], "crm");
    for failure in &list[..2] {
        let reference = failure["reference"].as_str().unwrap();
        assert!(
            reference.starts_with("ref-") && reference.len() == 12,
            "{failure}"
        );
        assert!(failure["occurred_at"].is_string());
    }
    assert!(list[2..].iter().all(|e| e["reference"].is_null()));
    assert!(!body.to_string().contains(&token), "a token in the history");

    // Deleting keeps the history, with the deletion last.
    let deleted = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, body, _) = events(&app, &id, "?limit=2").await;
    assert_eq!(status, 200);
    // The revocation at the provider is recorded just before the deletion.
    assert_eq!(types(&body), ["deleted", "revocation"]);
    // The next page follows on from the cursor.
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let (_, next, _) = events(&app, &id, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(types(&next), ["needs_reauth", "refresh_failed"]);
    let (_, last, _) = events(&app, &id, &format!("?limit=6&cursor={cursor}")).await;
    assert_eq!(last["next_cursor"], Value::Null);
}

#[tokio::test]
async fn bad_queries_and_unknown_connections_are_problems() {
    let app = spawn_app().await;
    let id = app.connect("history-bad").await;
    for (query, code) in [
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
        ("?cursor=abc", "invalid_cursor"),
        ("?cursor=-1", "invalid_cursor"),
        ("?colour=red", "invalid_query"),
    ] {
        let (status, body, content_type) = events(&app, &id, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(content_type, "application/problem+json", "{query}");
        assert_eq!(body["code"], code, "{query}: {body}");
    }
    let (status, body, _) = events(&app, "conn_00000000000000000000000000000000", "").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "connection_not_found");
    let (status, _, _) = events(&app, "not an id", "").await;
    assert_eq!(status, 404);
    let anonymous = app
        .http
        .get(app.url(&format!("v1/connections/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn webhook_outcomes_join_the_history() {
    let (app, receiver, _stop) = spawn_with_receiver(AppOptions::default()).await;
    let id = app.connect("history-hooks").await;
    wait_until(&receiver, "connection.created", |events| !events.is_empty()).await;
    let body = eventually(LIMIT, "the delivery in the history", || async {
        let (_, body, _) = events(&app, &id, "").await;
        (types(&body) == ["webhook_delivered", "created"]).then_some(body)
    })
    .await;
    let list = body["events"].as_array().unwrap();
    assert_eq!(list[0]["detail"], "connection.created (HTTP 204)");
    assert_eq!(list[0]["webhook_event_id"], list[1]["webhook_event_id"]);
    assert!(
        list[1]["webhook_event_id"]
            .as_str()
            .unwrap()
            .starts_with("evt_")
    );
}
