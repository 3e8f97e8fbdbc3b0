//! A connection ready to use: its row, opened credentials, integration and prepared auth.
//! Apart from the refresh that makes one so that the cache and the prepared auth, which the
//! state holds, do not import the refresh (and through it the state).

use std::sync::Arc;

use tether_core::credentials::Credentials;
use tether_core::integration::Integration;
use tether_store::ConnectionRow;

use super::cache::CachedConnection;
use super::provider_auth::PreparedSlot;

/// A connection ready to use.
pub struct Live {
    pub row: Arc<ConnectionRow>,
    pub credentials: Arc<Credentials>,
    pub integration: Arc<Integration>,
    pub prepared: Arc<PreparedSlot>,
}

impl Live {
    pub(super) fn of(cached: CachedConnection, integration: Arc<Integration>) -> Self {
        Live {
            row: cached.row,
            credentials: cached.credentials,
            integration,
            prepared: cached.prepared,
        }
    }
}
