//! The console's queries on PostgreSQL at 100,000 connections: the counts, the search and the
//! pages answered from indexes rather than by reading the table, as the plans say. How fast is
//! measured by the benchmark scripts, not asserted here.

use super::*;

async fn plan(store: &PgStore, sql: &str) -> String {
    let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn console_queries_use_indexes_at_100k_connections() {
    let schema = PgSchema::create().await;
    let store = schema.store().await;
    sqlx::query(
        "INSERT INTO connections (id, integration, end_user_id, end_user_email, status, \
         credentials, created_at, updated_at) \
         SELECT 'conn-' || lpad(i::text, 6, '0'), CASE i % 3 WHEN 0 THEN 'github' \
         WHEN 1 THEN 'hubspot' ELSE 'redtail' END, 'user-' || i, \
         'User' || i || '@example.com', \
         CASE WHEN i % 50 = 0 THEN 'needs_reauth' ELSE 'active' END, '\\x00', 0, 0 \
         FROM generate_series(0, 99999) AS i",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE connections")
        .execute(store.pool())
        .await
        .unwrap();

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

    let search_plan = plan(
        &store,
        "SELECT id FROM connections WHERE id > '' AND (end_user_id = 'x' OR \
         lower(end_user_email) = lower('x')) ORDER BY id LIMIT 50",
    )
    .await;
    assert!(search_plan.contains("connections_email"), "{search_plan}");
    assert!(!search_plan.contains("Seq Scan"), "{search_plan}");
    let page_plan = plan(
        &store,
        "SELECT id FROM connections WHERE id > 'conn-5' AND integration = 'github' \
         AND status = 'needs_reauth' ORDER BY id LIMIT 50",
    )
    .await;
    assert!(!page_plan.contains("Seq Scan"), "{page_plan}");
}
