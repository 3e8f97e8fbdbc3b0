//! The connection service: everything that keeps a stored connection usable, between the
//! HTTP handlers (API, proxy, Connect pages, console) and the store, the vault and the
//! providers' token endpoints.
//!
//! - [`refresh`]: a connection's live credentials ([`refresh::live`]), refreshed when they
//!   expire soon, when asked, or when the provider rejected them; one refresh per connection
//!   at a time (a lock in this process, a lease in the database across instances), written by
//!   compare-and-swap before anyone is handed the new tokens.
//! - `token_call`: one call to the token endpoint, and what its outcome writes: the new
//!   tokens, `needs_reauth`, or a back-off deadline.
//! - [`refresh_writes`]: group commit of the new tokens, one transaction for the refreshes
//!   that finish together.
//! - [`refresher`]: the background task that refreshes tokens expiring within a window,
//!   through the same path, before a read has to wait for it.
//! - [`cache`]: the hot path's credential cache, so that a read with a fresh token touches no
//!   database and opens no ciphertext; invalidated on every change.
//! - [`persist`]: saving a newly connected (or reconnected) account.
//! - [`removal`]: deleting a connection, revoking its tokens at the provider first.
//! - [`provider_auth`]: the base URL and auth headers the provider expects, rendered once per
//!   credential version.
//! - `expiry` and `backoff`: the decisions, as pure functions of the stored times and "now":
//!   is a token due for refresh (on read within the margin, in the background within the
//!   window), still valid, held back by back-off; when a lease ends; how long to back off
//!   after a transient failure.
//! - [`clock`]: where "now" comes from ([`clock::SystemClock`], but for tests), carried by the
//!   gateway state and asked by every decision above, and by the cache for its TTL.
//! - `error`: [`ConnectionError`], what the service fails with, and the one mapping of each
//!   failure to the API's HTTP answer.
//!
//! How the main flows go through it:
//!
//! - **A read** (the credentials endpoint, the proxy): [`refresh::live`] serves the cached
//!   entry when its token does not expire within the margin. Otherwise it reads the row
//!   (noting the cache generation first, so that a delete racing the read is never cached),
//!   opens the credentials, and serves them as they are unless they are due for refresh and
//!   not in back-off; then [`provider_auth::prepared`] renders the headers, once per entry.
//! - **A refresh** (a read that found the token due, `force_refresh`, a provider 401, the
//!   background refresher): take the per-connection lock, read again (someone may have
//!   refreshed meanwhile: use theirs), take the database lease (or wait for its holder's
//!   result, or on a background refresh leave it to the holder), read again, call the token
//!   endpoint, and write the result by compare-and-swap together with its webhook event. A
//!   refused grant marks the connection `needs_reauth`; a transient failure records a
//!   back-off deadline and keeps serving the old token while it is valid. Then invalidate the
//!   cache and put the new entry in it.
//! - **A removal**: revoke at the provider (best effort), delete the row with its
//!   `connection.deleted` event, then invalidate the cache (which also refuses the insert of
//!   any read that began before).

mod backoff;
pub(crate) mod cache;
pub(crate) mod checker;
pub(crate) mod clock;
mod error;
pub(crate) mod expiry;
pub(crate) mod health;
pub(crate) mod lifetime;
mod live;
pub(crate) mod locks;
pub(crate) mod persist;
pub(crate) mod provider_auth;
pub(crate) mod refresh;
pub(crate) mod refresh_writes;
pub(crate) mod refresher;
pub(crate) mod removal;
#[cfg(test)]
pub(crate) mod test_rows;
mod token_call;

pub(crate) use error::ConnectionError;
