//! API key hashes: listed in order, and a duplicate hash is a conflict, never a second row.

use super::*;

pub(crate) async fn api_key_hashes<S: Store>(store: S) {
    assert!(store.api_key_hashes().await.unwrap().is_empty());
    store
        .insert_api_key_hash(&th("aa"), "first run", 1)
        .await
        .unwrap();
    store
        .insert_api_key_hash(&th("bb"), "second", 2)
        .await
        .unwrap();
    assert_eq!(store.api_key_hashes().await.unwrap(), [th("aa"), th("bb")]);
    assert!(matches!(
        store.insert_api_key_hash(&th("aa"), "again", 3).await,
        Err(StoreError::Conflict(_))
    ));
}
