//! Log lines that values cannot forge. Field values carry what end users and providers sent
//! (an OAuth `error` from the callback's query, a provider's error text): written as they are,
//! a CR/LF would forge a log line, an ESC sequence would drive the operator's terminal, and a
//! right-to-left override would reorder what the operator reads. Escaping here, once, for every
//! event and span field, means no call site can forget to.
//!
//! The text format gets a field formatter that escapes ([`EscapedFields`]). The JSON format
//! already escapes CR, LF and the other C0 controls inside strings; [`JsonEscaping`] also
//! writes DEL, the C1 controls, the bidirectional controls and the Unicode line separators as
//! `\uXXXX` escapes, which a JSON reader turns back into the same value.

use std::error::Error;
use std::fmt::{self, Write};
use std::io;

use tether_core::text::EscapeControls;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;

/// Formats fields as `name=value` separated by spaces (the message bare), as the default
/// formatter does, with every control, bidirectional control and line separator escaped.
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapedVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        EscapedVisitor {
            writer,
            result: Ok(()),
            first: true,
        }
    }
}

pub struct EscapedVisitor<'a> {
    writer: Writer<'a>,
    result: fmt::Result,
    first: bool,
}

impl Visit for EscapedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.record_debug(field, &format_args!("{}", Chain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // What the `log` bridge adds; the formatter shows it as the target already.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.writer.write_char(' ')?;
            }
            if name != "message" {
                // Field names are the code's own identifiers.
                write!(self.writer, "{name}=")?;
            }
            write!(EscapeControls(&mut self.writer), "{value:?}")
        })();
    }
}

impl VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// An error and its sources, `: `-separated.
struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Stderr for the JSON format, with the characters JSON leaves raw escaped (see the module).
pub struct JsonEscaping;

impl<'a> MakeWriter<'a> for JsonEscaping {
    type Writer = JsonEscaper<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscaper(io::stderr())
    }
}

/// Writes JSON lines with [`tether_core::text::needs_escape`] characters other than the line's
/// own `\n` as `\uXXXX`. Outside strings JSON is ASCII, so every such character is inside a
/// string, where the escape is valid and means the same character.
pub struct JsonEscaper<W>(W);

impl<W: io::Write> io::Write for JsonEscaper<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let escape = |c: char| c != '\n' && tether_core::text::needs_escape(c);
        // The formatter writes one whole line per call; bytes that are not UTF-8 (never
        // produced by serde_json) pass through as they are.
        match std::str::from_utf8(buf) {
            Ok(line) if line.chars().any(escape) => {
                let mut out = String::with_capacity(line.len() + 16);
                for c in line.chars() {
                    if escape(c) {
                        // All of them are in the Basic Multilingual Plane: one `\uXXXX`.
                        let _ = write!(out, "\\u{:04x}", u32::from(c));
                    } else {
                        out.push(c);
                    }
                }
                self.0.write_all(out.as_bytes())?;
            }
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_read_back_as_the_same_value() {
        let value = "a\u{7f}\u{85}\u{9b}\u{2028}\u{202e}b \"q\" \u{1b}";
        let line = serde_json::json!({ "v": value }).to_string() + "\n";
        let mut out = JsonEscaper(Vec::new());
        io::Write::write_all(&mut out, line.as_bytes()).unwrap();
        let written = String::from_utf8(out.0).unwrap();
        assert!(written.ends_with('\n'));
        assert!(
            !written
                .trim_end_matches('\n')
                .chars()
                .any(tether_core::text::needs_escape),
            "{written}"
        );
        let back: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(back["v"], value);
    }
}
