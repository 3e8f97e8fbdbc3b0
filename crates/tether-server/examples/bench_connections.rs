//! Stored connections for the benchmark (`scripts/bench-proxy.sh`): creates (migrates) a SQLite
//! database, then prints SQL that inserts N active OAuth connections of one integration, each
//! sealed with the vault in `TETHER_ENCRYPTION_KEYS`, for `sqlite3` to run in one transaction.
//!
//! ```sh
//! TETHER_ENCRYPTION_KEYS=... cargo run --release -p tether-server --example bench_connections \
//!     -- sqlite://bench.db crm 1000000 | sqlite3 bench.db
//! ```
//!
//! Ids are `conn_` and the row number as 32 hex digits (`conn_000…0001`), so a load generator
//! can name any of them without a list. Every access token is `benchmark-access-token`, valid
//! for 30 days and with no refresh token, so no read refreshes and the refresher has no work.
//! Going through the API instead would take hours at a million rows; the rows are exactly
//! what the store would write (the same sealing, the same columns).

use std::io::Write;

use anyhow::Context;
use tether_core::AccessToken;
use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::unix_time;
use tether_core::vault::Vault;
use tether_store::SqliteStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_connections DATABASE_URL INTEGRATION COUNT";
    let url = args.next().context(usage)?;
    let integration = args.next().context(usage)?;
    let count: u64 = args.next().context(usage)?.parse().context(usage)?;
    let keys = std::env::var("TETHER_ENCRYPTION_KEYS").context("TETHER_ENCRYPTION_KEYS")?;
    let vault = Vault::from_spec(&keys)?;
    // Creates the database and runs the migrations, as `tether serve` would.
    drop(SqliteStore::connect(&url).await?);

    let now = unix_time::now();
    let expires = now + 30 * 24 * 3600;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "PRAGMA journal_mode = WAL;\nPRAGMA synchronous = OFF;\nBEGIN;"
    )?;
    for n in 1..=count {
        let id = format!("conn_{n:032x}");
        let credentials = Credentials::Oauth2(OAuth2Tokens {
            access_token: AccessToken::new("benchmark-access-token"),
            refresh_token: None,
            token_type: "Bearer".into(),
            scope: None,
            expires_at: Some(expires),
            extra: Default::default(),
        });
        let sealed = hex::encode(credentials.seal(&vault, &id).expect("a fresh vault seals"));
        writeln!(
            out,
            "INSERT INTO connections (id, integration, end_user_id, status, credentials, \
             credentials_version, access_expires_at, metadata, created_at, updated_at) \
             VALUES ('{id}', '{integration}', 'bench-{n}', 'active', X'{sealed}', 1, {expires}, \
             '{{}}', {now}, {now});"
        )?;
    }
    writeln!(out, "COMMIT;")?;
    out.flush()?;
    Ok(())
}
