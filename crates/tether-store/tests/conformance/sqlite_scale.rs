//! The console's queries stay fast with 100,000 connections: each is answered from an index,
//! which the query plan says whatever the machine. How fast is measured by the benchmark
//! scripts, not asserted here (a time bound would only flake on a busy machine).

use super::*;

async fn plan(store: &SqliteStore, sql: &str) -> String {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn console_queries_use_indexes_at_100k_connections() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999) \
         INSERT INTO connections (id, integration, end_user_id, end_user_email, status, \
         credentials, created_at, updated_at) \
         SELECT printf('conn-%06d', i), CASE i % 3 WHEN 0 THEN 'github' WHEN 1 THEN \
         'hubspot' ELSE 'redtail' END, 'user-' || i, 'User' || i || '@example.com', \
         CASE WHEN i % 50 = 0 THEN 'needs_reauth' ELSE 'active' END, x'00', 0, 0 FROM n",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();

    let counts = store.connection_status_counts().await.unwrap();
    assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 100_000);
    let found = store
        .page_connections(&ConnectionPage {
            search: Some("user77777@EXAMPLE.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&found), ["conn-077777"]);
    let deep = store
        .page_connections(&ConnectionPage {
            status: Some(ConnectionStatus::NeedsReauth),
            integration: Some("github".into()),
            after_id: Some("conn-090000".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(deep.len(), 10);
    assert_eq!(deep[0].id, "conn-090150");

    let counts_plan = plan(
        &store,
        "SELECT integration, status, COUNT(*) FROM connections GROUP BY integration, status",
    )
    .await;
    assert!(
        counts_plan.contains("COVERING INDEX connections_integration_status"),
        "{counts_plan}"
    );
    let search_plan = plan(
        &store,
        "SELECT id FROM connections WHERE id > '' AND (end_user_id = 'x' OR \
         lower(end_user_email) = lower('x')) ORDER BY id LIMIT 50",
    )
    .await;
    assert!(search_plan.contains("connections_email"), "{search_plan}");
    assert!(
        search_plan.contains("connections_end_user"),
        "{search_plan}"
    );
    let page_plan = plan(
        &store,
        "SELECT id FROM connections WHERE id > 'conn-5' AND integration = 'github' \
         AND status = 'active' ORDER BY id LIMIT 50",
    )
    .await;
    assert!(page_plan.contains("USING"), "{page_plan}");
    assert!(!page_plan.contains("SCAN connections"), "{page_plan}");
    assert!(!page_plan.contains("TEMP B-TREE"), "{page_plan}");
}
