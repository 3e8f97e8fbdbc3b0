//! What Tether's tests share, kept out of the shipped crates so that no test-only item is
//! part of their public API.
//!
//! - [`eventually`]: wait for an outcome, bounded, never for a fixed time.
//! - [`Loopback`]: serve a test's own HTTP service (an upstream, a provider stand-in) on a free
//!   loopback port, stopped when dropped.
//! - [`Receiver`]: the app's webhook endpoint on loopback, recording every request.
//! - [`TetherProcess`]: the built `tether` binary started with a clean environment, waited for
//!   until it listens, its output captured, and stopped by its pid.

#![forbid(unsafe_code)]

mod eventually;
mod loopback;
mod process;
mod receiver;

pub use eventually::{Outcome, eventually};
pub use loopback::Loopback;
pub use process::{TetherProcess, tether_command};
pub use receiver::{Received, Receiver};
