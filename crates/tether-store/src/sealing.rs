//! What key rotation needs of the store: the sealing key the database announces to every
//! instance, and how many sealed values each vault key id still seals (so a rotation can prove
//! it finished, and a key that still seals something is never dropped unnoticed).
//!
//! Sealed values start with the vault's header, `0x01 | len(key id) | key id | ...` (see
//! `tether_core::vault`): the backends read the key id in SQL, so counting never moves a
//! sealed value out of the database. Only key ids are stored or returned, never key material.

/// How many values of one column one key id seals.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SealedCount {
    /// `connections` (credentials), `integrations` (API-managed configurations), `flows`
    /// (OAuth flows in progress) or `mcp signing key` (the key that signs MCP authorization
    /// requests).
    pub what: String,
    /// The id of the vault key the values name.
    pub key_id: String,
    pub count: u64,
}

/// The four sealed columns, as `(what, table, column)`: every value Tether keeps sealed.
/// Flows without anything sealed hold an empty value, which is not counted; nor is anything
/// that does not start with the vault's format byte (it is nobody's to open).
pub(crate) const SEALED_COLUMNS: [(&str, &str, &str); 4] = [
    ("connections", "connections", "credentials"),
    ("integrations", "integrations", "config"),
    ("flows", "flow_states", "pkce_verifier"),
    ("mcp signing key", "mcp_oauth_signing_key", "sealed_key"),
];

/// Rows of `(what, key id, count)` into [`SealedCount`]s, sorted.
pub(crate) fn counts(rows: Vec<(String, String, i64)>) -> Vec<SealedCount> {
    let mut counts: Vec<SealedCount> = rows
        .into_iter()
        .map(|(what, key_id, count)| SealedCount {
            what,
            key_id,
            count: count.max(0) as u64,
        })
        .collect();
    counts.sort();
    counts
}
