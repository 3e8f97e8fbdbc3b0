//! The Salesmate emulator: link names, access keys, search, records, creation, limits, faults.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tether_emulators::Running;
use tether_emulators::salesmate::{
    self, SalesmateAccount, SalesmateConfig, SalesmateControl, SalesmateFault,
};
use url::Url;

use super::helpers::{at, client};

const KEY: &str = "demo-salesmate-access-key";

async fn spawn(config: SalesmateConfig) -> Running<SalesmateControl> {
    salesmate::spawn(config).await.expect("spawn salesmate")
}

fn request(
    method: reqwest::Method,
    base: &Url,
    path: &str,
    link: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    client()
        .request(method, at(base, path))
        .header("x-linkname", link)
        .header("accessToken", key)
}

async fn send(builder: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = builder.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn search(base: &Url, module: &str, query: &str, body: Value) -> (StatusCode, Value) {
    let path = ["apis/", module, "/v4/search", query].concat();
    send(request(reqwest::Method::POST, base, &path, "acme.salesmate.io", KEY).json(&body)).await
}

#[tokio::test]
async fn probe_accepts_both_link_spellings_and_the_legacy_header() {
    let emu = spawn(SalesmateConfig::default()).await;
    let path = "apis/core/v4/users?status=active";
    for link in ["acme.salesmate.io", "acme", "ACME.salesmate.io"] {
        let (status, body) = send(request(
            reqwest::Method::GET,
            &emu.base_url,
            path,
            link,
            KEY,
        ))
        .await;
        assert_eq!(status, StatusCode::OK, "{link}");
        assert_eq!(body["Status"], "success");
        let users = body["Data"]["data"].as_array().unwrap();
        assert!(!users.is_empty() && users.iter().all(|u| u["status"] == "active"));
    }
    let legacy = client()
        .get(at(&emu.base_url, path))
        .header("x-linkname", "acme.salesmate.io")
        .header("sessionToken", KEY);
    assert_eq!(send(legacy).await.0, StatusCode::OK);
    assert_eq!(emu.control.calls(), 4);
}

#[tokio::test]
async fn unknown_links_and_bad_keys_fail_as_documented() {
    let emu = spawn(SalesmateConfig::default()).await;
    let path = "apis/core/v4/users";
    let (status, body) = send(request(
        reqwest::Method::GET,
        &emu.base_url,
        path,
        "nobody.salesmate.io",
        KEY,
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"Status":"failure","Error":{"message":"","name":"NoSuchLinkExist"}})
    );
    let forbidden = json!({"Status":"failure","Error":{"message":"","name":"AuthorizationFailed"}});
    let (status, body) = send(request(
        reqwest::Method::GET,
        &emu.base_url,
        path,
        "acme",
        "wrong",
    ))
    .await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, forbidden.clone()));
    let no_key = client()
        .get(at(&emu.base_url, path))
        .header("x-linkname", "acme");
    assert_eq!(send(no_key).await, (StatusCode::FORBIDDEN, forbidden));
}

#[tokio::test]
async fn accounts_are_isolated() {
    let emu = spawn(SalesmateConfig {
        accounts: vec![
            SalesmateAccount {
                link_name: "acme".into(),
                access_key: KEY.into(),
            },
            SalesmateAccount {
                link_name: "globex".into(),
                access_key: "globex-key".into(),
            },
        ],
        hourly_limit: 1500,
    })
    .await;
    let path = "apis/deal/v4/1";
    let (status, _) = send(request(
        reqwest::Method::GET,
        &emu.base_url,
        path,
        "globex",
        KEY,
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, acme) = send(request(
        reqwest::Method::GET,
        &emu.base_url,
        path,
        "acme",
        KEY,
    ))
    .await;
    let (_, globex) = send(request(
        reqwest::Method::GET,
        &emu.base_url,
        path,
        "globex",
        "globex-key",
    ))
    .await;
    assert_eq!(globex["Status"], "success");
    assert_ne!(
        acme["Data"], globex["Data"],
        "each account has its own data"
    );
}

#[tokio::test]
async fn deal_search_pages_sorts_projects_and_filters() {
    let emu = spawn(SalesmateConfig::default()).await;
    let base = &emu.base_url;
    let body = json!({
        "displayingFields": ["deal.id", "deal.title", "deal.createdAt", "deal.owner.name"],
        "filterQuery": {"group": {"operator": "AND", "rules": []}},
        "sort": {"fieldName": "deal.createdAt", "order": "desc"},
        "moduleId": 4, "reportType": "get_data", "getRecordsCount": true,
    });
    let (status, page) = search(base, "deal", "?rows=100&from=0", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["Status"], "success");
    assert_eq!(page["Data"]["totalRows"], 250);
    assert_eq!(page["Data"]["totalPages"], 3);
    let rows = page["Data"]["data"].as_array().unwrap();
    assert_eq!(rows.len(), 100);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "projected: {keys:?}");
    assert!(rows[0]["Owner"]["name"].is_string());
    let dates: Vec<&str> = rows
        .iter()
        .map(|r| r["createdAt"].as_str().unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "sorted by createdAt desc"
    );

    let (_, last) = search(base, "deal", "?rows=100&from=200", body.clone()).await;
    assert_eq!(last["Data"]["data"].as_array().unwrap().len(), 50);
    let (_, clamped) = search(base, "deal", "?rows=1000", json!({})).await;
    assert_eq!(clamped["Data"]["data"].as_array().unwrap().len(), 250);
    let (status, invalid) = search(base, "deal", "?rows=abc", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(invalid["Status"], "failure");
    assert_eq!(invalid["Error"]["Name"], "ValidationError");

    let title = rows[0]["title"].as_str().unwrap();
    let word = title.split(" - ").last().unwrap();
    let filtered = json!({"filterQuery": {"group": {"operator": "AND", "rules": [
        {"moduleName": "Deal", "field": {"fieldName": "deal.title"}, "condition": "CONTAINS", "data": word}
    ]}}});
    let (_, hits) = search(base, "deal", "?rows=250", filtered).await;
    let hits = hits["Data"]["data"].as_array().unwrap().clone();
    assert!(!hits.is_empty() && hits.len() < 250);
    assert!(
        hits.iter()
            .all(|d| d["title"].as_str().unwrap().contains(word))
    );
}

#[tokio::test]
async fn contact_search_and_records_by_id() {
    let emu = spawn(SalesmateConfig::default()).await;
    let base = &emu.base_url;
    let (_, contacts) = search(base, "contact", "?rows=250&from=0", json!({"moduleId": 1})).await;
    assert_eq!(contacts["Data"]["totalRows"], 300);
    assert_eq!(contacts["Data"]["totalPages"], 2);
    let email = contacts["Data"]["data"][3]["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let equals = json!({"filterQuery": {"group": {"rules": [
        {"field": {"fieldName": "contact.email"}, "condition": "EQUALS", "data": email}
    ]}}});
    let (_, found) = search(base, "contact", "", equals).await;
    assert_eq!(found["Data"]["totalRows"], 1);

    let (status, deal) = send(request(
        reqwest::Method::GET,
        base,
        "apis/deal/v4/12",
        "acme",
        KEY,
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deal["Data"]["id"], 12);
    assert!(deal["Data"]["Owner"].is_object() && deal["Data"]["PrimaryContact"]["id"].is_i64());
    let (_, contact) = send(request(
        reqwest::Method::GET,
        base,
        "apis/contact/v4/300",
        "acme",
        KEY,
    ))
    .await;
    assert_eq!(contact["Data"]["id"], 300);
    let (status, missing) = send(request(
        reqwest::Method::GET,
        base,
        "apis/deal/v4/999",
        "acme",
        KEY,
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["Status"], "failure");
}

#[tokio::test]
async fn deals_are_created_and_a_missing_title_fails_with_http_200() {
    let emu = spawn(SalesmateConfig::default()).await;
    let base = &emu.base_url;
    let create = |body: Value| {
        send(request(reqwest::Method::POST, base, "apis/deal/v4", "acme", KEY).json(&body))
    };
    let (status, created) =
        create(json!({"title": "Big deal", "dealValue": 5000, "primaryContact": 3})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created, json!({"Status": "success", "Data": {"id": 251}}));
    let (_, deal) = send(request(
        reqwest::Method::GET,
        base,
        "apis/deal/v4/251",
        "acme",
        KEY,
    ))
    .await;
    assert_eq!(deal["Data"]["title"], "Big deal");
    assert_eq!(deal["Data"]["PrimaryContact"]["id"], 3);

    let (status, failed) = create(json!({"dealValue": 1})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(failed["Status"], "failure");
    assert_eq!(failed["Error"]["Code"], "4001");
    assert_eq!(failed["Error"]["Name"], "ValidationError");
    assert!(failed["Error"]["Message"].is_string());
    assert_eq!(emu.control.created_deals(), 1);
}

#[tokio::test]
async fn the_hourly_limit_answers_429() {
    let emu = spawn(SalesmateConfig {
        hourly_limit: 3,
        ..SalesmateConfig::default()
    })
    .await;
    let path = "apis/core/v4/users";
    for _ in 0..3 {
        assert_eq!(
            send(request(
                reqwest::Method::GET,
                &emu.base_url,
                path,
                "acme",
                KEY
            ))
            .await
            .0,
            StatusCode::OK
        );
    }
    let (status, body) = send(request(
        reqwest::Method::GET,
        &emu.base_url,
        path,
        "acme",
        KEY,
    ))
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["Status"], "failure");
}

#[tokio::test]
async fn faults_include_http_200_with_failure() {
    let emu = spawn(SalesmateConfig::default()).await;
    let call = || {
        request(
            reqwest::Method::GET,
            &emu.base_url,
            "apis/core/v4/users",
            "acme",
            KEY,
        )
        .send()
    };

    emu.control.set_fault(Some(SalesmateFault::OkWithFailure));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["Status"], "failure");

    emu.control.set_fault(Some(SalesmateFault::ServerError));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.json::<Value>().await.unwrap()["Status"], "failure");

    emu.control.set_fault(Some(SalesmateFault::HtmlPage));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    emu.control.set_fault(None);
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
}
