//! When the database cannot be reached, the API says so: 503 problem+json with the stable
//! code `database_unavailable` and a `Retry-After`, never a 500 or the driver's message; the
//! Connect page says to try again in a moment.
//! The outage is made real by closing the gateway's own connection pool (the shared server is
//! left alone), which fails every later call exactly as an unreachable server does.

use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_database_outage_answers_503_problem_json() {
    let app = spawn_app().await;
    let id = app.connect("down-user").await;
    let session = app.create_session("page-user", None).await;
    let gateway = app.gateway.as_ref().expect("the gateway runs");
    gateway.store().pool().close().await;

    for (method, path) in [
        (Method::GET, "v1/connections".to_owned()),
        (Method::GET, format!("v1/connections/{id}")),
        (Method::DELETE, format!("v1/connections/{id}")),
        (Method::GET, "health".to_owned()),
    ] {
        let response = app.api(method.clone(), &path).send().await.unwrap();
        assert_eq!(response.status(), 503, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        assert_eq!(response.headers()["retry-after"], "5", "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "database_unavailable", "{method} {path}");
        assert_eq!(body["status"], 503);
        let detail = body["detail"].as_str().unwrap();
        assert!(!detail.contains("pool"), "no driver detail leaks: {detail}");
    }

    // The end user's Connect page says the same, as a page.
    let connect_url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    let page = reqwest::get(connect_url).await.unwrap();
    assert_eq!(page.status(), 503);
    let html = page.text().await.unwrap();
    assert!(html.contains("Try again in a moment"), "{html}");
}
