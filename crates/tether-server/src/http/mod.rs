//! The HTTP edge: what every request meets before and around a handler. The server with its
//! connection limits (one runtime, or one per core), the proxy route served ahead of the
//! router, the request id and its log span, the body limit, the same-origin check of browser
//! forms, the API-key failure limit, and the one error type every route answers with (RFC 9457
//! problem+json) and its reference codes.
//!
//! Grouped here so that the handlers (`api`, `connect`, `console`, `proxy`) hold only what
//! they do, and the edge's defences can be read in one place.

pub(crate) mod auth;
pub(crate) mod body_limit;
pub(crate) mod error;
pub(crate) mod fast_path;
pub(crate) mod per_core;
pub(crate) mod rate_limit;
pub(crate) mod reference;
pub(crate) mod request_id;
pub(crate) mod same_origin;
pub(crate) mod server;
