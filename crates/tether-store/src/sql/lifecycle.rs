//! [`LifecycleStore`] on either backend (compiled once per backend, see `sqlite/mod.rs` and
//! `postgres/mod.rs`): the account, check and grant-deadline columns of `connections`.

use super::{
    ThisStore,
    webhooks::{insert_delivery, insert_event},
};
use crate::lifecycle::{
    CheckDue, CheckRecord, CheckResult, ConnectionLifecycle, GrantRecord, LifecycleStore,
    StoredAccount,
};
use crate::{NewWebhookEvent, StatusChange, StoreResult};

/// A `connections` row's lifecycle columns, as either backend returns them.
#[derive(sqlx::FromRow)]
struct LifecycleRecord {
    id: String,
    account_user_id: Option<String>,
    account_organization_id: Option<String>,
    account_label: Option<String>,
    check_failures: i64,
    last_checked_at: Option<i64>,
    last_check: Option<String>,
    next_check_at: Option<i64>,
    keepalive_at: Option<i64>,
    grant_expires_at: Option<i64>,
    expiring_notified_at: Option<i64>,
}

impl From<LifecycleRecord> for ConnectionLifecycle {
    fn from(r: LifecycleRecord) -> Self {
        let account = StoredAccount {
            user_id: r.account_user_id,
            organization_id: r.account_organization_id,
            label: r.account_label,
        };
        ConnectionLifecycle {
            id: r.id,
            account: (account != StoredAccount::default()).then_some(account),
            check_failures: r.check_failures,
            last_checked_at: r.last_checked_at,
            last_check: r.last_check,
            next_check_at: r.next_check_at,
            keepalive_at: r.keepalive_at,
            grant_expires_at: r.grant_expires_at,
            expiring_notified_at: r.expiring_notified_at,
        }
    }
}

/// Ids per statement when reading many: well under both backends' bind limits.
const IDS_PER_QUERY: usize = 500;

impl LifecycleStore for ThisStore {
    #[tracing::instrument(skip_all, err)]
    async fn connection_lifecycles(&self, ids: &[String]) -> StoreResult<Vec<ConnectionLifecycle>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT id, account_user_id, account_organization_id, account_label, \
                 check_failures, last_checked_at, last_check, next_check_at, keepalive_at, \
                 grant_expires_at, expiring_notified_at FROM connections WHERE id IN (",
            );
            let mut separated = query.separated(", ");
            for id in chunk {
                separated.push_bind(id.as_str());
            }
            query.push(")");
            let records: Vec<LifecycleRecord> =
                query.build_query_as().fetch_all(&self.pool).await?;
            out.extend(records.into_iter().map(ConnectionLifecycle::from));
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(connection_id = %grant.id), err)]
    async fn record_grant(&self, grant: &GrantRecord) -> StoreResult<bool> {
        let keep_account = grant.account.is_none();
        let account = grant.account.clone().unwrap_or_default();
        let result = sqlx::query(
            "UPDATE connections SET \
             account_user_id = CASE WHEN $1 THEN account_user_id ELSE $2 END, \
             account_organization_id = CASE WHEN $1 THEN account_organization_id ELSE $3 END, \
             account_label = CASE WHEN $1 THEN account_label ELSE $4 END, \
             keepalive_at = $5, grant_expires_at = $6, expiring_notified_at = NULL, \
             check_failures = 0, updated_at = $7 \
             WHERE id = $8 AND credentials_version = $9",
        )
        .bind(keep_account)
        .bind(&account.user_id)
        .bind(&account.organization_id)
        .bind(&account.label)
        .bind(grant.keepalive_at)
        .bind(grant.grant_expires_at)
        .bind(grant.now)
        .bind(&grant.id)
        .bind(grant.expected_version)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(connection_id = %id), err)]
    async fn set_keepalive(
        &self,
        id: &str,
        expected_version: i64,
        keepalive_at: Option<i64>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE connections SET keepalive_at = $1 WHERE id = $2 AND credentials_version = $3",
        )
        .bind(keepalive_at)
        .bind(id)
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(connection_id = %check.id), err)]
    async fn record_check(&self, check: &CheckRecord) -> StoreResult<Option<i64>> {
        // One statement: the count moves with the row's own value, so two instances recording
        // checks of one connection never lose a failure between them.
        let (reset, add) = match check.result {
            CheckResult::Passed => (true, 0_i64),
            CheckResult::Refused => (false, 1),
            CheckResult::Unavailable => (false, 0),
        };
        let account = check.account.clone().unwrap_or_default();
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE connections SET \
             check_failures = CASE WHEN $1 THEN 0 ELSE check_failures + $2 END, \
             last_checked_at = $3, last_check = $4, next_check_at = $5, \
             account_user_id = CASE WHEN account_user_id IS NULL \
               AND account_organization_id IS NULL THEN $6 ELSE account_user_id END, \
             account_label = CASE WHEN account_user_id IS NULL \
               AND account_organization_id IS NULL THEN $7 ELSE account_label END, \
             account_organization_id = CASE WHEN account_user_id IS NULL \
               AND account_organization_id IS NULL THEN $8 ELSE account_organization_id END \
             WHERE id = $9 RETURNING check_failures",
        )
        .bind(reset)
        .bind(add)
        .bind(check.now)
        .bind(&check.summary)
        .bind(check.next_check_at)
        .bind(&account.user_id)
        .bind(&account.label)
        .bind(&account.organization_id)
        .bind(&check.id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(failures)
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_due_for_check(&self, now: i64, limit: u32) -> StoreResult<Vec<CheckDue>> {
        let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, integration, next_check_at FROM connections \
             WHERE status = 'active' AND (next_check_at IS NULL OR next_check_at <= $1) \
             ORDER BY next_check_at IS NOT NULL, next_check_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, integration, next_check_at)| CheckDue {
                id,
                integration,
                next_check_at,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(connection_id = %id), err)]
    async fn schedule_check(&self, id: &str, at: i64) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE connections SET next_check_at = $1 WHERE id = $2 AND next_check_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(count = schedule.len()), err)]
    async fn schedule_checks(&self, schedule: &[(String, i64)]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut scheduled = 0;
        for (id, at) in schedule {
            let result = sqlx::query(
                "UPDATE connections SET next_check_at = $1 \
                 WHERE id = $2 AND next_check_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            scheduled += result.rows_affected();
        }
        tx.commit().await?;
        Ok(scheduled)
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_due_for_keepalive(
        &self,
        before: i64,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM connections WHERE status = 'active' AND keepalive_at IS NOT NULL \
             AND keepalive_at < $1 ORDER BY keepalive_at, id LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_grant_ending(&self, before: i64, limit: u32) -> StoreResult<Vec<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM connections WHERE status = 'active' AND grant_expires_at IS NOT NULL \
             AND grant_expires_at < $1 AND expiring_notified_at IS NULL \
             ORDER BY grant_expires_at, id LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    #[tracing::instrument(skip_all, fields(connection_id = %id), err)]
    async fn mark_expiring(
        &self,
        id: &str,
        now: i64,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE connections SET expiring_notified_at = $1 \
             WHERE id = $2 AND grant_expires_at IS NOT NULL AND expiring_notified_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let marked = result.rows_affected() == 1;
        if marked && let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(marked)
    }

    #[tracing::instrument(skip_all, fields(connection_id = %change.id), err)]
    async fn change_status_with_events(
        &self,
        change: &StatusChange,
        events: &[NewWebhookEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let changed = super::connections::update_status(&mut tx, change).await?;
        if changed && let Some((first, rest)) = events.split_first() {
            // One change, one history entry (the first event's); the others are further
            // webhooks about the same change.
            insert_event(&mut tx, first).await?;
            for event in rest.iter().filter(|e| e.deliver) {
                insert_delivery(&mut tx, event).await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    #[tracing::instrument(skip_all, fields(connection_id = %event.connection_id), err)]
    async fn append_event(&self, event: &NewWebhookEvent) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn set_session_reconnect(
        &self,
        token_hash: &str,
        connection_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO connect_session_reconnects (token_hash, connection_id) VALUES ($1, $2)",
        )
        .bind(token_hash)
        .bind(connection_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn session_reconnect(&self, token_hash: &str) -> StoreResult<Option<String>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT connection_id FROM connect_session_reconnects WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }
}
