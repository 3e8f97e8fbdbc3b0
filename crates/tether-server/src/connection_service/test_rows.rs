//! Connection rows for the connection service's unit tests.

use tether_store::{ConnectionRow, ConnectionStatus};

/// When the rows were made.
pub(crate) const T: i64 = 1_700_000_000;

/// An active connection of integration `crm`, made an hour before [`T`], whose access token
/// expires at `expires_at`.
pub(crate) fn active_row(id: &str, expires_at: Option<i64>) -> ConnectionRow {
    ConnectionRow {
        id: id.to_owned(),
        integration: "crm".into(),
        end_user_id: format!("user_{id}"),
        end_user_email: None,
        end_user_display_name: None,
        status: ConnectionStatus::Active,
        credentials: tether_store::Sealed::default(),
        credentials_version: 1,
        access_expires_at: expires_at,
        metadata: "{}".into(),
        last_error: None,
        refresh_failures: 0,
        next_refresh_at: None,
        created_at: T - 3_600,
        updated_at: T - 3_600,
        provider_account: None,
    }
}
