//! Tether's domain: what a provider is (the catalog), what an integration and a connection's
//! credentials are, how each auth mode runs its flow, and the vault that seals secrets.
//!
//! This crate knows no HTTP framework and no database. It talks to providers through the
//! outbound client in [`outbound`], which follows no redirects and trusts no response's size.

#![forbid(unsafe_code)]

pub mod account_check;
pub mod address_policy;
pub mod catalog;
pub mod credential_flow;
pub mod credentials;
pub mod ids;
pub mod integration;
pub mod name_resolver;
pub mod oauth2;
pub mod outbound;
pub mod pkce;
pub mod random;
pub mod secret;
pub mod template;
pub mod text;
pub mod unix_time;
pub mod vault;

pub use secret::{
    AccessToken, ClientSecret, PkceVerifier, RefreshToken, SecretString, SessionToken,
};
