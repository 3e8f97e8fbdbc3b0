//! The MCP authorization server's rows: registered clients, single-use requests and codes,
//! refresh rotation with reuse detection that revokes the whole family (refresh tokens and the
//! agent tokens issued with them), revocation per client, and the shared signing key.

use tether_store::{
    CodeRedemption, McpAccessToken, McpAuthRequestRow, McpClientRow, McpCodeRow, McpGrantRow,
    McpRefreshToken, RefreshRotation,
};

use super::sealing::sealed_under;
use super::*;

fn request(hash: &str, expires_at: i64) -> McpAuthRequestRow {
    McpAuthRequestRow {
        request_hash: th(hash),
        client_id: "mcpc_one".to_owned(),
        client_name: Some("Desk agent".to_owned()),
        redirect_uri: "http://127.0.0.1:5000/callback".to_owned(),
        state: Some("st".to_owned()),
        code_challenge: "challenge".to_owned(),
        scope: "mcp:read".to_owned(),
        resource: "https://tether.example.com/mcp".to_owned(),
        expires_at,
        created_at: NOW,
    }
}

fn grant(id: &str, end_user_id: &str) -> McpGrantRow {
    McpGrantRow {
        id: id.to_owned(),
        client_id: "mcpc_one".to_owned(),
        client_name: Some("Desk agent".to_owned()),
        end_user_id: end_user_id.to_owned(),
        access: "read".to_owned(),
        integrations: Some(r#"["github"]"#.to_owned()),
        scope: "mcp:read".to_owned(),
        resource: "https://tether.example.com/mcp".to_owned(),
        created_at: NOW,
        revoked_at: None,
    }
}

fn code(hash: &str, grant_id: &str, expires_at: i64) -> McpCodeRow {
    McpCodeRow {
        code_hash: th(hash),
        grant_id: grant_id.to_owned(),
        redirect_uri: "http://127.0.0.1:5000/callback".to_owned(),
        code_challenge: "challenge".to_owned(),
        expires_at,
        created_at: NOW,
    }
}

fn access(id: &str) -> McpAccessToken {
    McpAccessToken {
        id: id.to_owned(),
        token_hash: th(&format!("hash-{id}")),
        expires_at: NOW + 3600,
    }
}

fn refresh(hash: &str) -> McpRefreshToken {
    McpRefreshToken {
        token_hash: th(hash),
        expires_at: NOW + 86_400,
    }
}

async fn live_token<S: Store>(store: &S, id: &str) -> bool {
    store
        .find_active_agent_token(&th(&format!("hash-{id}")), NOW + 1)
        .await
        .unwrap()
        .is_some()
}

pub(crate) async fn mcp_clients_and_requests<S: Store>(store: S) {
    let client = McpClientRow {
        client_id: "mcpc_one".to_owned(),
        client_name: Some("Desk agent".to_owned()),
        redirect_uris: vec!["http://127.0.0.1:5000/callback".to_owned()],
        created_at: NOW,
    };
    store.insert_mcp_client(&client, NOW).await.unwrap();
    assert_eq!(
        store.get_mcp_client("mcpc_one").await.unwrap(),
        Some(client)
    );
    assert_eq!(store.get_mcp_client("mcpc_two").await.unwrap(), None);

    store
        .insert_mcp_request(&request("rq", NOW + 600), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.get_mcp_request(&th("rq")).await.unwrap(),
        Some(request("rq", NOW + 600))
    );
    // Read as often as the app likes; taken once.
    assert!(store.get_mcp_request(&th("rq")).await.unwrap().is_some());
    assert_eq!(
        store.take_mcp_request(&th("rq")).await.unwrap(),
        Some(request("rq", NOW + 600))
    );
    assert_eq!(store.take_mcp_request(&th("rq")).await.unwrap(), None);
    assert_eq!(store.get_mcp_request(&th("rq")).await.unwrap(), None);
}

pub(crate) async fn mcp_request_taken_once_under_race<S: Store>(store: S) {
    store
        .insert_mcp_request(&request("race", NOW + 600), NOW)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.take_mcp_request(&th("race")).await.unwrap().is_some()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub(crate) async fn mcp_code_single_use_and_reuse_revokes<S: Store>(store: S) {
    store
        .insert_mcp_grant(
            &grant("mcpg_1", "user-1"),
            &code("c1", "mcpg_1", NOW + 60),
            NOW,
        )
        .await
        .unwrap();
    let CodeRedemption::Redeemed(found, g) = store.redeem_mcp_code(&th("c1"), NOW).await.unwrap()
    else {
        panic!("a fresh code is redeemed");
    };
    assert_eq!(found, code("c1", "mcpg_1", NOW + 60));
    assert_eq!(*g, grant("mcpg_1", "user-1"));
    assert!(
        store
            .issue_mcp_tokens("mcpg_1", &access("agt_a1"), &refresh("r1"), NOW)
            .await
            .unwrap()
    );
    assert!(live_token(&store, "agt_a1").await);
    let issued = store.get_agent_token("agt_a1").await.unwrap().unwrap();
    assert_eq!(issued.end_user_id, "user-1");
    assert_eq!(issued.mcp_client_id.as_deref(), Some("mcpc_one"));
    assert_eq!(issued.grant_id.as_deref(), Some("mcpg_1"));
    assert_eq!(issued.integrations, Some(vec!["github".to_owned()]));

    // A second presentation of the code revokes everything the first one got.
    assert_eq!(
        store.redeem_mcp_code(&th("c1"), NOW + 1).await.unwrap(),
        CodeRedemption::Reused {
            grant_id: "mcpg_1".to_owned()
        }
    );
    assert!(!live_token(&store, "agt_a1").await);
    assert!(
        store
            .get_mcp_grant("mcpg_1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store
            .rotate_mcp_refresh_token(&th("r1"), NOW + 2)
            .await
            .unwrap(),
        RefreshRotation::Reused { .. }
    ));
    // A revoked grant gets no new tokens.
    assert!(
        !store
            .issue_mcp_tokens("mcpg_1", &access("agt_a2"), &refresh("r2"), NOW + 3)
            .await
            .unwrap()
    );
    assert!(store.get_agent_token("agt_a2").await.unwrap().is_none());

    // Unknown and expired codes are invalid; an expired one is used up too.
    assert_eq!(
        store.redeem_mcp_code(&th("nope"), NOW).await.unwrap(),
        CodeRedemption::Invalid
    );
    store
        .insert_mcp_grant(
            &grant("mcpg_2", "user-1"),
            &code("c2", "mcpg_2", NOW - 1),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        store.redeem_mcp_code(&th("c2"), NOW).await.unwrap(),
        CodeRedemption::Invalid
    );
}

pub(crate) async fn mcp_refresh_rotation_and_reuse<S: Store>(store: S) {
    store
        .insert_mcp_grant(
            &grant("mcpg_1", "user-1"),
            &code("c1", "mcpg_1", NOW + 60),
            NOW,
        )
        .await
        .unwrap();
    store
        .issue_mcp_tokens("mcpg_1", &access("agt_1"), &refresh("r1"), NOW)
        .await
        .unwrap();
    // Rotation: r1 is used, r2 and agt_2 come with it; every token so far stays live.
    assert!(matches!(
        store.rotate_mcp_refresh_token(&th("r1"), NOW + 10).await.unwrap(),
        RefreshRotation::Rotated(g) if g.id == "mcpg_1"
    ));
    store
        .issue_mcp_tokens("mcpg_1", &access("agt_2"), &refresh("r2"), NOW + 10)
        .await
        .unwrap();
    assert!(live_token(&store, "agt_1").await && live_token(&store, "agt_2").await);

    // r1 again: theft suspected, the whole family goes (r2 and both access tokens).
    assert_eq!(
        store
            .rotate_mcp_refresh_token(&th("r1"), NOW + 20)
            .await
            .unwrap(),
        RefreshRotation::Reused {
            grant_id: "mcpg_1".to_owned()
        }
    );
    assert!(!live_token(&store, "agt_1").await && !live_token(&store, "agt_2").await);
    assert!(matches!(
        store
            .rotate_mcp_refresh_token(&th("r2"), NOW + 21)
            .await
            .unwrap(),
        RefreshRotation::Reused { .. }
    ));
    assert_eq!(
        store
            .rotate_mcp_refresh_token(&th("unknown"), NOW)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    assert!(
        store
            .list_mcp_grants("user-1", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn mcp_refresh_rotates_once_under_race<S: Store>(store: S) {
    store
        .insert_mcp_grant(
            &grant("mcpg_1", "user-1"),
            &code("c1", "mcpg_1", NOW + 60),
            NOW,
        )
        .await
        .unwrap();
    store
        .issue_mcp_tokens("mcpg_1", &access("agt_1"), &refresh("r1"), NOW)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .rotate_mcp_refresh_token(&th("r1"), NOW + 5)
                .await
                .unwrap()
        }));
    }
    let mut rotated = 0;
    for task in tasks {
        if let RefreshRotation::Rotated(_) = task.await.unwrap() {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1);
}

pub(crate) async fn mcp_revocation_per_client_and_listing<S: Store>(store: S) {
    store
        .insert_mcp_grant(
            &grant("mcpg_1", "user-1"),
            &code("c1", "mcpg_1", NOW + 60),
            NOW,
        )
        .await
        .unwrap();
    let mut other = grant("mcpg_2", "user-2");
    other.client_id = "mcpc_two".to_owned();
    store
        .insert_mcp_grant(&other, &code("c2", "mcpg_2", NOW + 60), NOW)
        .await
        .unwrap();
    store
        .issue_mcp_tokens("mcpg_1", &access("agt_1"), &refresh("r1"), NOW)
        .await
        .unwrap();
    store
        .issue_mcp_tokens("mcpg_2", &access("agt_2"), &refresh("r2"), NOW)
        .await
        .unwrap();
    assert_eq!(
        ids_of(&store.list_mcp_grants("user-1", 10).await.unwrap()),
        ["mcpg_1"]
    );

    // Another client cannot revoke this client's tokens, nor learn their grant.
    assert!(
        !store
            .revoke_mcp_access_token(&th("hash-agt_1"), "mcpc_two", NOW)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .mcp_grant_of_refresh_token(&th("r1"), "mcpc_two")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .revoke_mcp_access_token(&th("hash-agt_1"), "mcpc_one", NOW)
            .await
            .unwrap()
    );
    assert!(!live_token(&store, "agt_1").await);
    assert_eq!(
        store
            .mcp_grant_of_refresh_token(&th("r1"), "mcpc_one")
            .await
            .unwrap()
            .as_deref(),
        Some("mcpg_1")
    );
    assert!(store.revoke_mcp_grant("mcpg_1", NOW).await.unwrap());
    assert!(!store.revoke_mcp_grant("mcpg_1", NOW).await.unwrap());
    assert!(
        store
            .list_mcp_grants("user-1", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The other user's grant is untouched.
    assert!(live_token(&store, "agt_2").await);
}

pub(crate) async fn mcp_purge_and_signing_key<S: Store>(store: S) {
    store
        .insert_mcp_request(&request("old", NOW - 1), NOW)
        .await
        .unwrap();
    store
        .insert_mcp_request(&request("new", NOW + 600), NOW)
        .await
        .unwrap();
    store
        .insert_mcp_grant(
            &grant("mcpg_1", "user-1"),
            &code("c1", "mcpg_1", NOW - 1),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(store.purge_mcp_oauth(NOW).await.unwrap(), 2);
    assert!(store.get_mcp_request(&th("new")).await.unwrap().is_some());

    let first = store
        .mcp_signing_key(&sealed_bytes(b"one"), NOW)
        .await
        .unwrap();
    let second = store
        .mcp_signing_key(&sealed_bytes(b"two"), NOW)
        .await
        .unwrap();
    assert_eq!(first, sealed_bytes(b"one"));
    assert_eq!(second, sealed_bytes(b"one"));
}

/// A key rotation finds the signing key, counts it under the vault key that seals it, and
/// re-seals it by compare-and-swap.
pub(crate) async fn mcp_signing_key_resealed_by_rotation<S: Store>(store: S) {
    assert_eq!(store.stored_mcp_signing_key().await.unwrap(), None);
    let old = sealed_under("k-old");
    store.mcp_signing_key(&old, NOW).await.unwrap();
    assert_eq!(
        store.stored_mcp_signing_key().await.unwrap(),
        Some(old.clone())
    );
    let signing_key_count = |key_id: &str| SealedCount {
        what: "mcp signing key".into(),
        key_id: key_id.into(),
        count: 1,
    };
    assert!(
        store
            .sealed_value_counts()
            .await
            .unwrap()
            .contains(&signing_key_count("k-old"))
    );

    let new = sealed_under("k-new");
    // Only while it is still what the rotation read.
    assert!(
        !store
            .reseal_mcp_signing_key(&sealed_under("k-other"), &new)
            .await
            .unwrap()
    );
    assert!(store.reseal_mcp_signing_key(&old, &new).await.unwrap());
    assert_eq!(store.stored_mcp_signing_key().await.unwrap(), Some(new));
    assert_eq!(
        store.sealed_value_counts().await.unwrap(),
        [signing_key_count("k-new")]
    );
}

fn ids_of(grants: &[McpGrantRow]) -> Vec<&str> {
    grants.iter().map(|g| g.id.as_str()).collect()
}

/// The purge job's cuts: a day for a client that never got a grant, the history retention
/// for the end of its grants.
const UNUSED_CUT: i64 = NOW - 86_400;
const ENDED_CUT: i64 = NOW - 30 * 86_400;

async fn register<S: Store>(store: &S, client_id: &str, created_at: i64) {
    let client = McpClientRow {
        client_id: client_id.to_owned(),
        client_name: None,
        redirect_uris: vec!["http://127.0.0.1:5000/callback".to_owned()],
        created_at,
    };
    store.insert_mcp_client(&client, created_at).await.unwrap();
}

/// A grant of `client_id` made at `created_at`, with its code (expired a minute later).
async fn grant_of<S: Store>(store: &S, id: &str, client_id: &str, created_at: i64) {
    let mut g = grant(id, "user-1");
    g.client_id = client_id.to_owned();
    g.created_at = created_at;
    let code = code(&format!("code-{id}"), id, created_at + 60);
    store.insert_mcp_grant(&g, &code, created_at).await.unwrap();
}

async fn client_kept<S: Store>(store: &S, client_id: &str) -> bool {
    store.get_mcp_client(client_id).await.unwrap().is_some()
}

/// Anyone may register a client: one that got no grant within a day is deleted, unless an
/// authorization request of it is still waiting.
pub(crate) async fn mcp_unused_clients_purged<S: Store>(store: S) {
    register(&store, "mcpc_unused", UNUSED_CUT - 1).await;
    register(&store, "mcpc_young", UNUSED_CUT).await;
    register(&store, "mcpc_waiting", UNUSED_CUT - 1).await;
    let mut waiting = request("rq", NOW + 600);
    waiting.client_id = "mcpc_waiting".to_owned();
    store.insert_mcp_request(&waiting, NOW).await.unwrap();

    assert_eq!(
        store
            .purge_mcp_clients(UNUSED_CUT, ENDED_CUT)
            .await
            .unwrap(),
        1
    );
    assert!(!client_kept(&store, "mcpc_unused").await);
    assert!(client_kept(&store, "mcpc_young").await);
    assert!(client_kept(&store, "mcpc_waiting").await);
    assert_eq!(
        store
            .purge_mcp_clients(UNUSED_CUT, ENDED_CUT)
            .await
            .unwrap(),
        0
    );
}

/// A client that got grants is kept while one of them lives or ended at the retention cut
/// or after it; when every one ended before it, the client goes, with its grants (and their
/// refresh tokens). Grants of clients known by a metadata document URL are not touched.
pub(crate) async fn mcp_clients_kept_while_a_grant_lives<S: Store>(store: S) {
    let long_ago = ENDED_CUT - 1000;
    for client in [
        "mcpc_live",
        "mcpc_revoked_at_cut",
        "mcpc_revoked_before",
        "mcpc_lapsed",
        "mcpc_token_live",
        "mcpc_one_of_two_live",
    ] {
        register(&store, client, long_ago).await;
    }
    // Live: its refresh token has a month to go.
    grant_of(&store, "mcpg_live", "mcpc_live", long_ago).await;
    assert!(
        store
            .issue_mcp_tokens("mcpg_live", &access("agt_live"), &refresh("r-live"), NOW)
            .await
            .unwrap()
    );
    // Revoked exactly at the cut: kept; a moment before: gone, though its refresh token
    // would only expire later.
    grant_of(&store, "mcpg_at_cut", "mcpc_revoked_at_cut", long_ago).await;
    store
        .revoke_mcp_grant("mcpg_at_cut", ENDED_CUT)
        .await
        .unwrap();
    grant_of(&store, "mcpg_before", "mcpc_revoked_before", long_ago).await;
    assert!(
        store
            .issue_mcp_tokens(
                "mcpg_before",
                &access("agt_before"),
                &refresh("r-before"),
                long_ago
            )
            .await
            .unwrap()
    );
    store
        .revoke_mcp_grant("mcpg_before", ENDED_CUT - 1)
        .await
        .unwrap();
    // Never revoked, but its code expired unused long ago: it ended then.
    grant_of(&store, "mcpg_lapsed", "mcpc_lapsed", long_ago).await;
    // Its grant ended long ago, but an access token issued to it lives past the cut.
    grant_of(&store, "mcpg_token", "mcpc_token_live", long_ago).await;
    store
        .revoke_mcp_grant("mcpg_token", ENDED_CUT - 1)
        .await
        .unwrap();
    store
        .insert_agent_token(&tether_store::AgentTokenRow {
            id: "agt_token".to_owned(),
            token_hash: th("hash-agt_token"),
            end_user_id: "user-1".to_owned(),
            access: tether_store::AgentAccess::Read,
            integrations: None,
            created_at: long_ago,
            expires_at: ENDED_CUT + 10,
            revoked_at: None,
            mcp_client_id: Some("mcpc_token_live".to_owned()),
            grant_id: None,
        })
        .await
        .unwrap();
    // One grant ended long ago, another is new: the client and both grants stay.
    grant_of(&store, "mcpg_old", "mcpc_one_of_two_live", long_ago).await;
    store.revoke_mcp_grant("mcpg_old", long_ago).await.unwrap();
    grant_of(&store, "mcpg_new", "mcpc_one_of_two_live", NOW).await;
    // A client known by its metadata document URL: no client row, its grant stays.
    let url_client = "https://agent.example.com/client.json";
    grant_of(&store, "mcpg_url", url_client, long_ago).await;
    store.revoke_mcp_grant("mcpg_url", long_ago).await.unwrap();

    assert_eq!(
        store
            .purge_mcp_clients(UNUSED_CUT, ENDED_CUT)
            .await
            .unwrap(),
        2
    );
    for kept in [
        "mcpc_live",
        "mcpc_revoked_at_cut",
        "mcpc_token_live",
        "mcpc_one_of_two_live",
    ] {
        assert!(client_kept(&store, kept).await, "{kept} is kept");
    }
    for gone in ["mcpc_revoked_before", "mcpc_lapsed"] {
        assert!(!client_kept(&store, gone).await, "{gone} is purged");
    }
    for (grant_id, kept) in [
        ("mcpg_live", true),
        ("mcpg_at_cut", true),
        ("mcpg_before", false),
        ("mcpg_lapsed", false),
        ("mcpg_token", true),
        ("mcpg_old", true),
        ("mcpg_new", true),
        ("mcpg_url", true),
    ] {
        assert_eq!(
            store.get_mcp_grant(grant_id).await.unwrap().is_some(),
            kept,
            "{grant_id}"
        );
    }
    // The purged grant's refresh token went with it; the live one is still usable.
    assert_eq!(
        store
            .mcp_grant_of_refresh_token(&th("r-before"), "mcpc_revoked_before")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .rotate_mcp_refresh_token(&th("r-live"), NOW + 1)
            .await
            .unwrap(),
        RefreshRotation::Rotated(_)
    ));
}
