//! Sealed values and the sealing key: the re-seal cursors over connections, flow states and
//! integrations, the announced key, and the per-key count that says when an old key may go.
//! Key rotation depends on every sealed value being found by these.

use super::*;

pub(crate) async fn cursor_and_reseal<S: Store>(store: S) {
    for n in 0..5 {
        let id = format!("conn-{n}");
        store
            .insert_connection(&connection(&id, "github", &format!("user-{n}")))
            .await
            .unwrap();
    }
    let first = store.connections_after(None, 2).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["conn-0", "conn-1"]);
    let rest = store.connections_after(Some("conn-1"), 10).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert!(
        store
            .connections_after(Some("conn-4"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let before = get(&store, "conn-2").await;
    assert!(
        store
            .reseal_credentials(
                "conn-2",
                before.credentials_version,
                &sealed_bytes(b"resealed"),
                50
            )
            .await
            .unwrap()
    );
    let after = get(&store, "conn-2").await;
    assert_eq!(after.credentials.as_bytes(), b"resealed");
    assert_eq!(after.credentials_version, before.credentials_version + 1);
    assert_eq!(after.metadata, before.metadata);
    assert_eq!(after.access_expires_at, before.access_expires_at);
    // A stale version changes nothing.
    assert!(
        !store
            .reseal_credentials(
                "conn-2",
                before.credentials_version,
                &sealed_bytes(b"stale"),
                60
            )
            .await
            .unwrap()
    );
    assert_eq!(
        get(&store, "conn-2").await.credentials.as_bytes(),
        b"resealed"
    );
}

pub(crate) async fn flow_cursor_and_reseal<S: Store>(store: S) {
    for n in 0..3 {
        store
            .insert_flow_state(&flow(&format!("s-{n}"), "b", NOW + 600), 10)
            .await
            .unwrap();
    }
    let first = store.flow_states_after(None, 2).await.unwrap();
    let hashes: Vec<&str> = first.iter().map(|f| f.state_hash.as_str()).collect();
    assert_eq!(hashes, ["s-0", "s-1"]);
    assert_eq!(
        store
            .flow_states_after(Some(&th("s-1")), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let old = first[0].pkce_verifier.clone();
    assert!(
        store
            .reseal_flow_verifier(&th("s-0"), &old, &sealed_bytes(b"resealed"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_flow_verifier(&th("s-0"), &old, &sealed_bytes(b"stale"))
            .await
            .unwrap(),
        "a changed verifier is not overwritten"
    );
    let taken = store
        .consume_flow_state(&th("s-0"), &th("b"))
        .await
        .unwrap();
    let ConsumeOutcome::Consumed(row) = taken else {
        panic!("{taken:?}")
    };
    assert_eq!(row.pkce_verifier.as_bytes(), b"resealed");
}

pub(crate) async fn integration_reseal<S: Store>(store: S) {
    store
        .put_integration("crm", &sealed_bytes(b"sealed-1"), 10)
        .await
        .unwrap();
    assert!(
        store
            .reseal_integration(
                "crm",
                &sealed_bytes(b"sealed-1"),
                &sealed_bytes(b"sealed-2"),
                11
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_integration(
                "crm",
                &sealed_bytes(b"sealed-1"),
                &sealed_bytes(b"stale"),
                12
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_integration("none", &sealed_bytes(b"x"), &sealed_bytes(b"y"), 12)
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_integrations().await.unwrap(),
        [("crm".to_owned(), sealed_bytes(b"sealed-2"))]
    );
}

/// A value laid out as the vault seals it (`0x01 | len(key id) | key id | nonce | ciphertext
/// and tag`), under `key_id`; the store reads only the header.
pub(crate) fn sealed_under(key_id: &str) -> Sealed {
    let mut sealed = vec![1, key_id.len() as u8];
    sealed.extend_from_slice(key_id.as_bytes());
    sealed.extend_from_slice(&[7; 12 + 16 + 5]);
    Sealed::from_bytes(sealed)
}

pub(crate) async fn sealing_key_announcements<S: Store>(store: S) {
    assert_eq!(store.sealing_key().await.unwrap(), None);
    // Instances starting together on a new database: the first announcement wins for all.
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .announce_sealing_key_if_none(&format!("k-{n}"), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        winners.push(racer.await.unwrap());
    }
    winners.dedup();
    assert_eq!(winners.len(), 1, "one key announced: {winners:?}");
    assert_eq!(
        store.sealing_key().await.unwrap().as_ref(),
        Some(&winners[0])
    );
    // A rotation replaces it; a later start does not put its own back.
    store.announce_sealing_key("k-new", NOW + 1).await.unwrap();
    assert_eq!(
        store
            .announce_sealing_key_if_none("k-0", NOW + 2)
            .await
            .unwrap(),
        "k-new"
    );
    assert_eq!(store.sealing_key().await.unwrap().as_deref(), Some("k-new"));
}

pub(crate) async fn sealed_values_counted_per_key<S: Store>(store: S) {
    assert_eq!(store.sealed_value_counts().await.unwrap(), []);
    for (n, key) in ["k-old", "k-old", "k-new"].iter().enumerate() {
        let mut row = connection(&format!("conn-{n}"), "github", &format!("user-{n}"));
        row.credentials = sealed_under(key);
        store.insert_connection(&row).await.unwrap();
    }
    // Not sealed by the vault: not counted.
    store
        .insert_connection(&connection("conn-x", "github", "user-x"))
        .await
        .unwrap();
    store
        .put_integration("crm", &sealed_under("k-old"), NOW)
        .await
        .unwrap();
    let mut sealed_flow = flow("state-1", "browser", NOW + 60);
    sealed_flow.pkce_verifier = sealed_under("k-new");
    assert!(store.insert_flow_state(&sealed_flow, 10).await.unwrap());
    let mut empty_flow = flow("state-2", "browser", NOW + 60);
    empty_flow.pkce_verifier = Sealed::default();
    assert!(store.insert_flow_state(&empty_flow, 10).await.unwrap());

    let count = |what: &str, key_id: &str, count: u64| SealedCount {
        what: what.into(),
        key_id: key_id.into(),
        count,
    };
    assert_eq!(
        store.sealed_value_counts().await.unwrap(),
        [
            count("connections", "k-new", 1),
            count("connections", "k-old", 2),
            count("flows", "k-new", 1),
            count("integrations", "k-old", 1),
        ]
    );
    // A re-seal moves the count to the new key.
    let row = get(&store, "conn-0").await;
    assert!(
        store
            .reseal_credentials(
                "conn-0",
                row.credentials_version,
                &sealed_under("k-new"),
                NOW
            )
            .await
            .unwrap()
    );
    let counts = store.sealed_value_counts().await.unwrap();
    assert!(
        counts.contains(&count("connections", "k-new", 2)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&count("connections", "k-old", 1)),
        "{counts:?}"
    );
}
