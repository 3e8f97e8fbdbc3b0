//! Integration tests of the emulators over real loopback HTTP: each test spawns its own
//! emulator on port 0, so tests run in parallel and never share state.

mod emulators {
    pub mod helpers;
    pub mod redtail;
    pub mod salesmate;
    pub mod seed_oauth;
}
