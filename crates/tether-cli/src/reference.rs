//! The settings table of `docs/configuration.md`, generated from the declarations in `config`
//! and `tuning` (keys, reference text, and defaults read from the gateway's own), so the
//! reference says what the code does. The prose around the table is written by hand; the
//! table sits between two markers, and a test fails when it is not current
//! (`UPDATE_DOCS=1 cargo test -p tether-cli --bin tether configuration_doc` rewrites it).
#![cfg(test)]

use crate::config::{ApiSection, ConnectSection, DatabaseSection, LogSection, ServerSection};
use crate::settings::Row;
use crate::tuning::{
    CacheSection, ChecksSection, ConsoleSection, OutboundSection, ProxySection, RefreshSection,
    WebhookTuning,
};

const BEGIN: &str =
    "<!-- settings table: generated from crates/tether-cli/src/{config,tuning}.rs -->\n";
const END: &str = "<!-- end of generated settings table -->\n";

/// The sections in the order the reference lists them, each with the note on its heading row.
fn sections() -> Vec<(&'static str, &'static str, Vec<Row>)> {
    vec![
        ("server", "", ServerSection::rows()),
        ("database", "", DatabaseSection::rows()),
        ("log", "", LogSection::rows()),
        ("api", "", ApiSection::rows()),
        ("connect", "", ConnectSection::rows()),
        ("refresh", "", RefreshSection::rows()),
        (
            "checks",
            "health checks, keep-alive refreshes and grant-end notices",
            ChecksSection::rows(),
        ),
        (
            "outbound",
            "Tether's own calls to providers: token endpoints, exchanges, probes, revocation",
            OutboundSection::rows(),
        ),
        ("proxy", "", ProxySection::rows()),
        (
            "cache",
            "opened credentials of recently used connections, so a proxied call with a fresh token reads no database",
            CacheSection::rows(),
        ),
        ("webhooks", "", webhook_rows()),
        ("console", "", ConsoleSection::rows()),
        (
            "mcp",
            "the MCP server at `/mcp`, its agent tokens, and MCP clients signing in through OAuth",
            crate::mcp_settings::McpSettings::rows(),
        ),
    ]
}

/// `[webhooks]`: its two required keys (which have no default, so they are not in a
/// `settings!` declaration), then the delivery settings.
fn webhook_rows() -> Vec<Row> {
    let mut rows = vec![
        Row {
            key: "url",
            default: "none".into(),
            doc: "the app's endpoint; without `[webhooks]` no events are sent".into(),
        },
        Row {
            key: "secret",
            default: "none".into(),
            doc: "the HMAC-SHA256 key of `Tether-Signature`".into(),
        },
    ];
    rows.extend(WebhookTuning::rows());
    rows
}

/// The table, markers included.
fn table() -> String {
    let mut out = String::from(BEGIN);
    out.push_str("| key | default | what it does |\n| --- | --- | --- |\n");
    for (section, note, rows) in sections() {
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(" {note}")
        };
        out.push_str(&format!("| **`[{section}]`** | |{note} |\n"));
        for row in rows {
            // A number is shown bare; text defaults carry their own Markdown.
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                row.key, row.default, row.doc
            ));
        }
    }
    out.push_str(
        "| **`[integrations.KEY]`** | | one table per integration; the keys depend on the provider: \
         see [provider-guide.md](provider-guide.md) and [providers.md](providers.md) |\n",
    );
    out.push_str(END);
    out
}

/// `document` with its generated table replaced by the current one.
fn regenerate(document: &str) -> Option<String> {
    let start = document.find(BEGIN)?;
    let end = document[start..].find(END)? + start + END.len();
    Some(format!(
        "{}{}{}",
        &document[..start],
        table(),
        &document[end..]
    ))
}

/// `docs/configuration.md`'s table is generated: regenerate it with `UPDATE_DOCS=1`.
#[test]
fn configuration_doc_matches_the_declarations() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let document = std::fs::read_to_string(&path).unwrap();
    let expected = regenerate(&document).expect("docs/configuration.md has lost its table markers");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk == expected,
        "docs/configuration.md is out of date: run UPDATE_DOCS=1 cargo test -p tether-cli --bin tether configuration_doc"
    );
}
