//! The OpenAPI document: served at `/openapi.json`, identical to the committed
//! `docs/openapi.json` (regenerate with `UPDATE_OPENAPI=1 cargo test -p tether-server --test
//! api openapi`), and covering every route of the API.

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::*;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[tokio::test]
async fn the_committed_document_is_current() {
    let generated = tether_server::openapi_document();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test -p tether-server --test api openapi"
    );
}

#[tokio::test]
async fn it_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/health", &["get"][..]),
        ("/ready", &["get"]),
        ("/v1/providers", &["get"]),
        ("/v1/integrations", &["get"]),
        ("/v1/integrations/{key}", &["put", "delete"]),
        ("/v1/connect/sessions", &["post"]),
        ("/v1/connections", &["get", "post"]),
        ("/v1/connections/{id}", &["get", "delete"]),
        ("/v1/connections/{id}/credentials", &["get"]),
        ("/v1/webhooks/deliveries", &["get"]),
        ("/v1/webhooks/deliveries/{id}", &["get"]),
        ("/v1/webhooks/deliveries/{id}/redeliver", &["post"]),
        (
            "/v1/proxy/{id}/{path}",
            &["get", "post", "put", "patch", "delete"],
        ),
    ] {
        for method in methods {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path} is not described");
            if path.starts_with("/v1/") {
                assert_eq!(
                    operation["security"][0]["api_key"],
                    serde_json::json!([]),
                    "{method} {path} names its security"
                );
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} documents 401"
                );
            }
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let problem = &document["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code"] {
        assert!(problem[field].is_object(), "Problem has {field}");
    }
}
