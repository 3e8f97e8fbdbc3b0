//! Agent tokens: found by hash only while active, revoked at once (one token or a grant's
//! family), listed per end user, and a duplicate id or hash is a conflict.

use super::*;
use tether_store::{AgentAccess, AgentTokenRow};

fn token(id: &str, hash: &str, end_user_id: &str) -> AgentTokenRow {
    AgentTokenRow {
        id: id.to_owned(),
        token_hash: th(hash),
        end_user_id: end_user_id.to_owned(),
        access: AgentAccess::Read,
        integrations: Some(vec!["github".to_owned(), "crm-sandbox".to_owned()]),
        created_at: NOW,
        expires_at: NOW + 3600,
        revoked_at: None,
        mcp_client_id: None,
        grant_id: None,
    }
}

pub(crate) async fn agent_token_insert_find_get<S: Store>(store: S) {
    let mut write_all = token("agt_2", "hash-2", "user-1");
    write_all.access = AgentAccess::Write;
    write_all.integrations = None;
    write_all.mcp_client_id = Some("mcp_client_1".to_owned());
    write_all.grant_id = Some("grant-1".to_owned());
    let read_some = token("agt_1", "hash-1", "user-1");
    store.insert_agent_token(&read_some).await.unwrap();
    store.insert_agent_token(&write_all).await.unwrap();

    // Everything comes back as it went in: access, the list (or NULL for all), the client.
    assert_eq!(
        store
            .find_active_agent_token(&th("hash-1"), NOW)
            .await
            .unwrap(),
        Some(read_some.clone())
    );
    assert_eq!(
        store.get_agent_token("agt_2").await.unwrap(),
        Some(write_all.clone())
    );
    assert_eq!(
        store
            .find_active_agent_token(&th("hash-2"), NOW)
            .await
            .unwrap(),
        Some(write_all)
    );
    assert_eq!(
        store
            .find_active_agent_token(&th("unknown"), NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_agent_token("agt_none").await.unwrap(), None);

    // An empty list is kept as an empty list (reaches nothing), not as "every integration".
    let mut none = token("agt_3", "hash-3", "user-1");
    none.integrations = Some(Vec::new());
    store.insert_agent_token(&none).await.unwrap();
    assert_eq!(
        store
            .get_agent_token("agt_3")
            .await
            .unwrap()
            .unwrap()
            .integrations,
        Some(Vec::new())
    );

    // A second row with the same hash or the same id is a conflict.
    assert!(matches!(
        store
            .insert_agent_token(&token("agt_4", "hash-1", "user-2"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .insert_agent_token(&token("agt_1", "hash-5", "user-2"))
            .await,
        Err(StoreError::Conflict(_))
    ));
}

pub(crate) async fn agent_token_expiry<S: Store>(store: S) {
    store
        .insert_agent_token(&token("agt_1", "hash-1", "user-1"))
        .await
        .unwrap();
    let found = |now| {
        let store = store.clone();
        async move {
            store
                .find_active_agent_token(&th("hash-1"), now)
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(found(NOW + 3599).await);
    // Expired from `expires_at` on, and still there by id (for the console).
    assert!(!found(NOW + 3600).await);
    assert!(!found(NOW + 7200).await);
    let row = store.get_agent_token("agt_1").await.unwrap().unwrap();
    assert!(!row.is_active(NOW + 3600));
    assert!(row.is_active(NOW));
}

pub(crate) async fn agent_token_revocation<S: Store>(store: S) {
    store
        .insert_agent_token(&token("agt_1", "hash-1", "user-1"))
        .await
        .unwrap();
    store
        .insert_agent_token(&token("agt_2", "hash-2", "user-1"))
        .await
        .unwrap();

    assert!(store.revoke_agent_token("agt_1", NOW + 10).await.unwrap());
    assert_eq!(
        store
            .find_active_agent_token(&th("hash-1"), NOW + 11)
            .await
            .unwrap(),
        None
    );
    // Idempotent: revoking again still answers "it exists" and keeps the first time.
    assert!(store.revoke_agent_token("agt_1", NOW + 20).await.unwrap());
    let revoked = store.get_agent_token("agt_1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(NOW + 10));
    assert!(!revoked.is_active(NOW + 11));
    // An unknown id: nothing to revoke.
    assert!(!store.revoke_agent_token("agt_none", NOW).await.unwrap());
    // The other token is untouched.
    assert!(
        store
            .find_active_agent_token(&th("hash-2"), NOW + 11)
            .await
            .unwrap()
            .is_some()
    );
}

pub(crate) async fn agent_token_grant_family<S: Store>(store: S) {
    for (id, hash, grant) in [
        ("agt_1", "hash-1", Some("grant-a")),
        ("agt_2", "hash-2", Some("grant-a")),
        ("agt_3", "hash-3", Some("grant-b")),
        ("agt_4", "hash-4", None),
    ] {
        let mut row = token(id, hash, "user-1");
        row.mcp_client_id = grant.map(|_| "mcp_client_1".to_owned());
        row.grant_id = grant.map(str::to_owned);
        store.insert_agent_token(&row).await.unwrap();
    }
    // One already revoked is not counted again and keeps its time.
    assert!(store.revoke_agent_token("agt_2", NOW + 1).await.unwrap());

    assert_eq!(
        store
            .revoke_agent_tokens_of_grant("grant-a", NOW + 5)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .revoke_agent_tokens_of_grant("grant-a", NOW + 6)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_agent_tokens_of_grant("grant-none", NOW + 6)
            .await
            .unwrap(),
        0
    );
    let revoked_at = |id: &'static str| {
        let store = store.clone();
        async move { store.get_agent_token(id).await.unwrap().unwrap().revoked_at }
    };
    assert_eq!(revoked_at("agt_1").await, Some(NOW + 5));
    assert_eq!(revoked_at("agt_2").await, Some(NOW + 1));
    assert_eq!(revoked_at("agt_3").await, None);
    assert_eq!(revoked_at("agt_4").await, None);
}

pub(crate) async fn agent_tokens_listed_per_end_user<S: Store>(store: S) {
    for (i, user) in ["user-1", "user-2", "user-1", "user-1"].iter().enumerate() {
        let mut row = token(&format!("agt_{i}"), &format!("hash-{i}"), user);
        row.created_at = NOW + i as i64;
        store.insert_agent_token(&row).await.unwrap();
    }
    store.revoke_agent_token("agt_2", NOW + 10).await.unwrap();

    let listed = store.list_agent_tokens("user-1", 10).await.unwrap();
    // Newest first, the revoked one included (the console shows it as revoked).
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["agt_3", "agt_2", "agt_0"]
    );
    assert_eq!(listed[1].revoked_at, Some(NOW + 10));
    assert_eq!(store.list_agent_tokens("user-1", 2).await.unwrap().len(), 2);
    assert!(
        store
            .list_agent_tokens("nobody", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn agent_tokens_purged<S: Store>(store: S) {
    let mut expired = token("agt_1", "hash-1", "user-1");
    expired.expires_at = NOW - 100;
    store.insert_agent_token(&expired).await.unwrap();
    store
        .insert_agent_token(&token("agt_2", "hash-2", "user-1"))
        .await
        .unwrap();
    store
        .insert_agent_token(&token("agt_3", "hash-3", "user-1"))
        .await
        .unwrap();
    store.revoke_agent_token("agt_2", NOW - 50).await.unwrap();

    // Expired or revoked before the cut: gone; the active one stays.
    assert_eq!(store.purge_agent_tokens(NOW).await.unwrap(), 2);
    assert_eq!(store.get_agent_token("agt_1").await.unwrap(), None);
    assert_eq!(store.get_agent_token("agt_2").await.unwrap(), None);
    assert!(store.get_agent_token("agt_3").await.unwrap().is_some());
    assert_eq!(store.purge_agent_tokens(NOW).await.unwrap(), 0);
}

/// The purge job passes `now - history_retention`: a token goes once it expired or was
/// revoked strictly before that cut, whichever came first, minted or issued to an MCP client
/// alike; one that ended at the cut or after it stays (history may still name it).
pub(crate) async fn agent_tokens_purged_at_the_retention_cut<S: Store>(store: S) {
    const CUT: i64 = NOW - 30 * 86_400;
    let mut rows = Vec::new();
    for (id, expires_at, revoked_at) in [
        ("agt_expired_before", CUT - 1, None),
        ("agt_expired_at", CUT, None),
        ("agt_expired_after", CUT + 1, None),
        ("agt_revoked_before", NOW + 3600, Some(CUT - 1)),
        ("agt_revoked_at", NOW + 3600, Some(CUT)),
        ("agt_revoked_after", NOW + 3600, Some(CUT + 1)),
        // Expired long ago, revoked (idempotently) since: its end is the expiry.
        ("agt_expired_then_revoked", CUT - 10, Some(NOW)),
        ("agt_live", NOW + 3600, None),
    ] {
        let mut row = token(id, &format!("hash-{id}"), "user-1");
        row.created_at = CUT - 100;
        row.expires_at = expires_at;
        row.revoked_at = revoked_at;
        rows.push(row);
    }
    let mut issued = token("agt_issued_before", "hash-issued", "user-2");
    issued.created_at = CUT - 100;
    issued.expires_at = CUT - 5;
    issued.mcp_client_id = Some("mcpc_one".to_owned());
    issued.grant_id = Some("mcpg_1".to_owned());
    rows.push(issued);
    for row in &rows {
        store.insert_agent_token(row).await.unwrap();
    }

    assert_eq!(store.purge_agent_tokens(CUT).await.unwrap(), 4);
    let mut kept = Vec::new();
    for row in &rows {
        if store.get_agent_token(&row.id).await.unwrap().is_some() {
            kept.push(row.id.as_str());
        }
    }
    assert_eq!(
        kept,
        [
            "agt_expired_at",
            "agt_expired_after",
            "agt_revoked_at",
            "agt_revoked_after",
            "agt_live"
        ]
    );
    assert_eq!(store.purge_agent_tokens(CUT).await.unwrap(), 0);
}
