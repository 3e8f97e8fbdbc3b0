//! Characters that change how text is laid out rather than what it says: control characters
//! (which can end a log line early or drive a terminal) and Unicode bidirectional controls
//! (which reorder what a reader sees). Values from end users and providers reach log lines and
//! pages; this module decides which characters are refused there and how they are made visible.

use std::fmt;

/// True for the Unicode bidirectional formatting characters (UAX #9): the embeddings and
/// overrides U+202A–U+202E, the isolates U+2066–U+2069, the marks U+200E/U+200F and the
/// Arabic letter mark U+061C. One of them in a name can make "moc.elpmaxe@ada" read as a
/// different address.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// True for a character that must not reach a log line as it is: C0 and C1 control
/// characters and DEL (CR/LF forge lines, ESC drives the terminal), bidirectional controls,
/// and the Unicode line and paragraph separators (which some viewers break lines on).
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// A [`fmt::Write`] adapter that writes every character [`needs_escape`] flags as a visible
/// escape (`\n`, `\r`, `\t`, or `\u{1b}`), and everything else unchanged.
pub struct EscapeControls<W>(pub W);

impl<W: fmt::Write> fmt::Write for EscapeControls<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Unchanged runs are written whole: most values have nothing to escape.
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "{}", c.escape_unicode())?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// `value` as it is written through [`EscapeControls`].
pub fn escaped(value: &str) -> String {
    let mut out = EscapeControls(String::with_capacity(value.len()));
    let _ = fmt::Write::write_str(&mut out, value);
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_become_visible_escapes() {
        assert_eq!(
            escaped("x\r\nfake line\u{1b}[31m"),
            "x\\r\\nfake line\\u{1b}[31m"
        );
        assert_eq!(escaped("a\tb\u{7f}\u{9b}"), "a\\tb\\u{7f}\\u{9b}");
        assert_eq!(escaped("\u{202e}moc"), "\\u{202e}moc");
        assert_eq!(escaped("line\u{2028}sep"), "line\\u{2028}sep");
        // Ordinary text, accents and other scripts pass unchanged.
        assert_eq!(escaped("Zoë — 東京 \\n"), "Zoë — 東京 \\n");
    }

    #[test]
    fn bidi_controls_are_exactly_the_uax9_formatting_characters() {
        let all: Vec<char> = ('\u{0}'..='\u{FFFF}')
            .filter(|&c| is_bidi_control(c))
            .collect();
        assert_eq!(
            all,
            [
                '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
                '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'
            ]
        );
    }

    #[test]
    fn no_escaped_output_holds_a_character_that_needs_escaping() {
        // Every character of the first planes, alone and inside text.
        for c in ('\u{0}'..='\u{FFFF}').chain(['\u{10FFFF}']) {
            let out = escaped(&format!("a{c}b"));
            assert!(!out.chars().any(needs_escape), "{:?}", c);
        }
    }
}
