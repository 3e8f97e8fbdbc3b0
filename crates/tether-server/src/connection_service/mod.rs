//! The connection service: reading a connection's live credentials (refreshing them when
//! needed), refreshing ahead of expiry in the background, caching, saving and removing
//! connections, and rendering what the provider expects on each call.

pub(crate) mod cache;
mod error;
pub(crate) mod persist;
pub(crate) mod provider_auth;
pub(crate) mod refresh;
pub(crate) mod refresher;
pub(crate) mod removal;

pub(crate) use error::ConnectionError;
