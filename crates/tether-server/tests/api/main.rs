//! Tether's integration tests: one binary, every test over real HTTP on loopback against a
//! gateway on port 0 with a fresh SQLite file, and providers served by the emulators.

mod helpers;

mod agents;
mod catalog;
mod clock;
mod console;
mod database_down;
mod edge;
mod header_injection;
mod history;
mod import;
mod integrations;
mod issuer;
mod lifecycle;
mod mcp_oauth;
mod new_providers;
mod oauth_flow;
mod observability;
mod openapi;
mod outbound;
mod pages;
mod provider_hosts;
mod providers;
mod proxy;
mod quirks;
mod rate_limits;
mod refresh;
mod refresh_on_read;
mod upstream_tls;
mod webhooks;
