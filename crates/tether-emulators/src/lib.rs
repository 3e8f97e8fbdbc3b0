//! In-process emulators of the providers Tether talks to, for integration tests and
//! `tether demo`.
//!
//! Each emulator binds `127.0.0.1:0`, serves real HTTP over loopback and hands back a
//! [`Running`] handle with its base URL and a control object (counters, fault injection).
//! The behaviour follows each provider's public documentation (cited in its file under
//! `providers/`); where a fact is uncertain the emulator picks the documented shape and says so
//! in the module docs.
//!
//! This crate must never depend on anything of Tether's: the emulators describe the
//! providers, not Tether's idea of them. It must never listen on anything but loopback.

#![forbid(unsafe_code)]
// Handlers pass ready-made error `Response`s through `Result::Err`, the axum idiom; their
// size does not matter on these paths, so the lint's boxing advice would only add noise.
#![allow(clippy::result_large_err)]

mod html;
mod http_util;
pub mod key_api;
pub mod redtail;
pub mod salesmate;
mod seed_data;
pub mod seed_oauth;
mod server;

pub use server::Running;
