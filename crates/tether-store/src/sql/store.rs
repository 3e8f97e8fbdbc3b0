//! The [`Store`] impl, written once and compiled for each backend (see `sqlite/mod.rs` and
//! `postgres/mod.rs`): each method is one of the shared statements in the sibling modules, run
//! on the backend's pool. Where a backend differs (its change feed, SQLite's batched point
//! reads, PostgreSQL's one-statement upsert) the method asks the backend's module.

use super::{ThisStore, connections, dialect, flows, history, leases, sealing, webhooks};
use crate::{
    AttemptWindow, ChangeFeed, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    EventBucket, FlowStateRow, HistoryEntry, NewWebhookEvent, RefreshClaim, RefreshFinish, Sealed,
    StatusChange, StatusCount, Store, StoreResult, TokenHash, WebhookAttempt, WebhookEventFilter,
    WebhookEventRow,
};

impl Store for ThisStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.change_feed()
    }

    #[tracing::instrument(skip_all, err)]
    async fn sealing_key(&self) -> StoreResult<Option<String>> {
        sealing::sealing_key(&self.pool).await
    }

    #[tracing::instrument(skip_all, fields(key = %key_id), err)]
    async fn announce_sealing_key(&self, key_id: &str, now: i64) -> StoreResult<()> {
        sealing::announce(&self.pool, key_id, now).await
    }

    #[tracing::instrument(skip_all, fields(key = %key_id), err)]
    async fn announce_sealing_key_if_none(&self, key_id: &str, now: i64) -> StoreResult<String> {
        sealing::announce_if_none(&self.pool, key_id, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn sealed_value_counts(&self) -> StoreResult<Vec<crate::SealedCount>> {
        sealing::sealed_value_counts(&self.pool).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_connect_session(&self, session: &ConnectSessionRow) -> StoreResult<()> {
        flows::insert_connect_session(&self.pool, session).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn get_connect_session(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<ConnectSessionRow>> {
        flows::get_connect_session(&self.pool, token_hash).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn bind_connect_session(
        &self,
        token_hash: &TokenHash,
        browser_hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<TokenHash>> {
        let bound = flows::bind_connect_session(&self.pool, token_hash, browser_hash, now).await?;
        Ok(bound.map(TokenHash::from_hex))
    }

    #[tracing::instrument(skip_all, err)]
    async fn complete_connect_session(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> StoreResult<bool> {
        flows::complete_connect_session(&self.pool, token_hash, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn reopen_connect_session(&self, token_hash: &TokenHash, now: i64) -> StoreResult<()> {
        flows::reopen_connect_session(&self.pool, token_hash, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn count_session_attempt(
        &self,
        token_hash: &TokenHash,
        now: i64,
        window_secs: i64,
    ) -> StoreResult<Option<AttemptWindow>> {
        flows::count_session_attempt(&self.pool, token_hash, now, window_secs).await
    }

    #[tracing::instrument(skip_all, fields(integration = %flow.integration), err)]
    async fn insert_flow_state(
        &self,
        flow: &FlowStateRow,
        max_per_session: u32,
    ) -> StoreResult<bool> {
        flows::insert_flow_state(&self.pool, flow, max_per_session).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn flow_states_after(
        &self,
        after: Option<&TokenHash>,
        limit: u32,
    ) -> StoreResult<Vec<FlowStateRow>> {
        flows::flow_states_after(&self.pool, after.map(TokenHash::as_str), limit).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn reseal_flow_verifier(
        &self,
        state_hash: &TokenHash,
        old: &Sealed,
        new: &Sealed,
    ) -> StoreResult<bool> {
        flows::reseal_flow_verifier(&self.pool, state_hash, old, new).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn consume_flow_state(
        &self,
        state_hash: &TokenHash,
        browser_hash: &TokenHash,
    ) -> StoreResult<ConsumeOutcome> {
        flows::consume_flow_state(&self.pool, state_hash, browser_hash).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_api_key_hash(
        &self,
        key_hash: &TokenHash,
        label: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (key_hash, label, created_at, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_hash.as_str())
        .bind(label)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn api_key_hashes(&self) -> StoreResult<Vec<TokenHash>> {
        let hashes: Vec<String> =
            sqlx::query_scalar("SELECT key_hash FROM api_keys ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?;
        Ok(hashes.into_iter().map(TokenHash::from_hex).collect())
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn put_integration(
        &self,
        key: &str,
        sealed_config: &Sealed,
        now: i64,
    ) -> StoreResult<bool> {
        dialect::put_integration(&self.pool, key, sealed_config, now).await
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn delete_integration(&self, key: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM integrations WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_integrations(&self) -> StoreResult<Vec<(String, Sealed)>> {
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT key, config FROM integrations ORDER BY key")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(key, config)| (key, Sealed::from_bytes(config)))
            .collect())
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn reseal_integration(
        &self,
        key: &str,
        old: &Sealed,
        new: &Sealed,
        now: i64,
    ) -> StoreResult<bool> {
        // Compare-and-swap on the sealed bytes: a PUT that replaced the configuration
        // meanwhile wins, and this re-seal changes nothing.
        let result = sqlx::query(
            "UPDATE integrations SET config = $1, updated_at = $2 WHERE key = $3 AND config = $4",
        )
        .bind(new.as_bytes())
        .bind(now)
        .bind(key)
        .bind(old.as_bytes())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        flows::purge_expired(&self.pool, now).await
    }

    #[tracing::instrument(skip_all, fields(count = connections.len()), err)]
    async fn insert_connections(&self, connections: &[ConnectionRow]) -> StoreResult<()> {
        connections::insert_many(&self.pool, connections).await
    }

    #[tracing::instrument(skip_all, fields(integration = %integration), err)]
    async fn find_connection(
        &self,
        integration: &str,
        end_user_id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        connections::find(&self.pool, integration, end_user_id).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        self.read_connection(id).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_connections(&self, filter: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
        connections::list(&self.pool, filter).await
    }

    #[tracing::instrument(skip_all, fields(id = %id, status = status.as_str()), err)]
    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
        last_error: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        connections::set_status(&self.pool, id, status, last_error, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_after(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionRow>> {
        connections::page_after(&self.pool, after_id, limit).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn reseal_credentials(
        &self,
        id: &str,
        expected_version: i64,
        credentials: &Sealed,
        now: i64,
    ) -> StoreResult<bool> {
        connections::reseal(&self.pool, id, expected_version, credentials, now).await
    }

    #[tracing::instrument(
        skip_all,
        fields(id = %connection.id, integration = %connection.integration),
        err
    )]
    async fn insert_connection_with_event(
        &self,
        connection: &ConnectionRow,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<()> {
        connections::insert(&self.pool, connection, event).await
    }

    #[tracing::instrument(skip_all, fields(id = %update.id), err)]
    async fn replace_credentials_with_event(
        &self,
        update: &CredentialsUpdate,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        connections::replace_credentials(&self.pool, update, event).await
    }

    #[tracing::instrument(
        skip_all,
        fields(id = %change.id, status = change.status.as_str()),
        err
    )]
    async fn set_connection_status_with_event(
        &self,
        change: &StatusChange,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        connections::change_status(&self.pool, change, event).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn delete_connection_with_event(
        &self,
        id: &str,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        connections::delete(&self.pool, id, event).await
    }

    #[tracing::instrument(skip_all, fields(id = %id, owner = %owner), err)]
    async fn try_acquire_refresh_lease(
        &self,
        id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> StoreResult<bool> {
        leases::try_acquire(&self.pool, id, owner, until, now).await
    }

    #[tracing::instrument(skip_all, fields(id = %id, owner = %owner), err)]
    async fn release_refresh_lease(&self, id: &str, owner: &str) -> StoreResult<()> {
        leases::release(&self.pool, id, owner).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_due_for_refresh(
        &self,
        before: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionRow>> {
        leases::due_for_refresh(&self.pool, before, now, limit).await
    }

    #[tracing::instrument(skip_all, fields(owner = %claim.owner, limit = claim.limit), err)]
    async fn claim_due_refreshes(&self, claim: &RefreshClaim) -> StoreResult<Vec<ConnectionRow>> {
        leases::claim_due(&self.pool, claim).await
    }

    #[tracing::instrument(skip_all, fields(count = batch.len()), err)]
    async fn finish_refreshes(
        &self,
        batch: &[RefreshFinish<'_>],
    ) -> StoreResult<Vec<Option<ConnectionRow>>> {
        leases::finish_many(&self.pool, batch).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn record_refresh_failure_with_event(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<()> {
        leases::record_refresh_failure(&self.pool, id, next_refresh_at, last_error, now, event)
            .await
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_connection_events(
        &self,
        connection_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionEventRow>> {
        history::list(&self.pool, connection_id, before_seq, limit).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn record_connection_history(
        &self,
        connection_id: &str,
        entry: &HistoryEntry,
        at: i64,
    ) -> StoreResult<bool> {
        history::record(&self.pool, connection_id, entry, at).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_connection_events(&self, before: i64) -> StoreResult<u64> {
        history::purge(&self.pool, before).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn page_connections(&self, page: &ConnectionPage) -> StoreResult<Vec<ConnectionRow>> {
        history::page(&self.pool, page).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connection_status_counts(&self) -> StoreResult<Vec<StatusCount>> {
        history::status_counts(&self.pool).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connection_event_buckets(
        &self,
        since: i64,
        bucket_secs: i64,
        kinds: &[&str],
    ) -> StoreResult<Vec<EventBucket>> {
        history::buckets(&self.pool, since, bucket_secs, kinds).await
    }

    #[tracing::instrument(skip_all, fields(owner = %owner), err)]
    async fn claim_webhook_events(
        &self,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<WebhookEventRow>> {
        webhooks::claim(&self.pool, owner, lease_until, now, limit).await
    }

    #[tracing::instrument(skip_all, fields(id = %attempt.id), err)]
    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> StoreResult<bool> {
        webhooks::record_attempt(&self.pool, attempt).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_webhook_events(
        &self,
        filter: &WebhookEventFilter,
    ) -> StoreResult<Vec<WebhookEventRow>> {
        webhooks::list(&self.pool, filter).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn get_webhook_event(&self, id: &str) -> StoreResult<Option<WebhookEventRow>> {
        webhooks::get(&self.pool, id).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn redeliver_webhook_event(&self, id: &str, now: i64) -> StoreResult<bool> {
        webhooks::redeliver(&self.pool, id, now).await
    }
}
