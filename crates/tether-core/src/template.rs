//! The catalog's small template language for header values and base URLs.
//!
//! A template is literal text with `${...}` expressions. An expression is a reference
//! `scope.name` (scopes: `credential`, `connection`, `settings`, `input`) or a call
//! `base64(arg, arg, ...)` whose arguments are references or single-quoted literals, joined
//! and then base64-encoded. Examples:
//!
//! ```text
//! Bearer ${credential.access_token}
//! UserKeyAuth ${base64(settings.api_key, ':', credential.user_key)}
//! https://${connection.link_name}.salesmate.io
//! ```
//!
//! Written by hand because it is Tether's own: a general template engine would let catalog
//! files do far more than build a header, and would not know which scopes hold secrets.
//! Rendering never logs values; an error names only the missing reference.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A parsed template, checked once when the catalog loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// As written, to show operators what is configured.
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Ref(Reference),
    Base64(Vec<Arg>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Arg {
    Ref(Reference),
    Literal(String),
}

/// `scope.name`: where a value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub scope: Scope,
    pub name: String,
}

/// The places a template may read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The connection's secret credential values (`access_token`, `user_key`, ...).
    Credential,
    /// The connection's non-secret metadata (`link_name`, ...).
    Connection,
    /// The integration's operator-configured settings (`api_key`, ...).
    Settings,
    /// What the end user typed into the Connect form (during an exchange or probe only).
    Input,
}

/// A template that does not parse, or a value that is missing at render time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax: {0}")]
    Syntax(String),
    #[error("no value for {0}")]
    Missing(String),
}

/// Supplies values for references while rendering.
pub trait Values {
    fn get(&self, scope: Scope, name: &str) -> Option<&str>;
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = find_close(after)
                .ok_or_else(|| TemplateError::Syntax(format!("unclosed ${{ in {text:?}")))?;
            parts.push(Part::Expr(parse_expr(after[..end].trim())?));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every reference the template reads, so the catalog loader can check them.
    pub fn references(&self) -> Vec<&Reference> {
        let mut refs = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(_) => {}
                Part::Expr(Expr::Ref(r)) => refs.push(r),
                Part::Expr(Expr::Base64(args)) => {
                    refs.extend(args.iter().filter_map(|a| match a {
                        Arg::Ref(r) => Some(r),
                        Arg::Literal(_) => None,
                    }))
                }
            }
        }
        refs
    }

    pub fn render(&self, values: &dyn Values) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Expr(Expr::Ref(r)) => out.push_str(lookup(values, r)?),
                Part::Expr(Expr::Base64(args)) => {
                    let mut joined = String::new();
                    for arg in args {
                        match arg {
                            Arg::Literal(text) => joined.push_str(text),
                            Arg::Ref(r) => joined.push_str(lookup(values, r)?),
                        }
                    }
                    out.push_str(&STANDARD.encode(joined.as_bytes()));
                    zeroize::Zeroize::zeroize(&mut joined);
                }
            }
        }
        Ok(out)
    }
}

fn lookup<'a>(values: &'a dyn Values, r: &Reference) -> Result<&'a str, TemplateError> {
    values
        .get(r.scope, &r.name)
        .ok_or_else(|| TemplateError::Missing(format!("{}.{}", r.scope.as_str(), r.name)))
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Credential => "credential",
            Scope::Connection => "connection",
            Scope::Settings => "settings",
            Scope::Input => "input",
        }
    }
}

/// Index of the `}` closing an expression, skipping quoted literals.
fn find_close(text: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_expr(text: &str) -> Result<Expr, TemplateError> {
    if let Some(inner) = text
        .strip_prefix("base64(")
        .and_then(|t| t.strip_suffix(')'))
    {
        let args = split_args(inner)?
            .into_iter()
            .map(|arg| {
                if let Some(lit) = arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')) {
                    Ok(Arg::Literal(lit.to_owned()))
                } else {
                    parse_ref(arg).map(Arg::Ref)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if args.is_empty() {
            return Err(TemplateError::Syntax("base64() needs arguments".into()));
        }
        return Ok(Expr::Base64(args));
    }
    parse_ref(text).map(Expr::Ref)
}

fn split_args(text: &str) -> Result<Vec<&str>, TemplateError> {
    let mut args = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                args.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(TemplateError::Syntax(format!("unclosed quote in {text:?}")));
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        args.push(last);
    }
    Ok(args)
}

fn parse_ref(text: &str) -> Result<Reference, TemplateError> {
    let (scope, name) = text
        .split_once('.')
        .ok_or_else(|| TemplateError::Syntax(format!("expected scope.name, got {text:?}")))?;
    let scope = match scope {
        "credential" => Scope::Credential,
        "connection" => Scope::Connection,
        "settings" => Scope::Settings,
        "input" => Scope::Input,
        other => return Err(TemplateError::Syntax(format!("unknown scope {other:?}"))),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(TemplateError::Syntax(format!("bad name {name:?}")));
    }
    Ok(Reference {
        scope,
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<(&'static str, &'static str), &'static str>);
    impl Values for Map {
        fn get(&self, scope: Scope, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|((s, n), _)| *s == scope.as_str() && *n == name)
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn renders_references_and_base64() {
        let values = Map(HashMap::from([
            (("settings", "api_key"), "KEY"),
            (("credential", "user_key"), "UK"),
            (("credential", "access_token"), "tok"),
        ]));
        let t =
            Template::parse("UserKeyAuth ${base64(settings.api_key, ':', credential.user_key)}")
                .unwrap();
        assert_eq!(t.render(&values).unwrap(), "UserKeyAuth S0VZOlVL");
        let t = Template::parse("Bearer ${credential.access_token}").unwrap();
        assert_eq!(t.render(&values).unwrap(), "Bearer tok");
        assert_eq!(t.references().len(), 1);
        let t = Template::parse("${credential.nope}").unwrap();
        assert_eq!(
            t.render(&values),
            Err(TemplateError::Missing("credential.nope".into()))
        );
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "${",
            "${nope}",
            "${secret.x}",
            "${base64()}",
            "${base64('x)}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Template::parse("plain")
                .unwrap()
                .render(&Map(HashMap::new()))
                .unwrap(),
            "plain"
        );
    }

    mod properties {
        //! Property tests: the parser is fed arbitrary text (it must never panic), and
        //! templates assembled from known pieces must parse back into those pieces and render
        //! to exactly the text the pieces describe.

        use super::super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        /// Values keyed by `scope.name`, owned so generated values can be used.
        struct Owned(HashMap<(&'static str, String), String>);
        impl Values for Owned {
            fn get(&self, scope: Scope, name: &str) -> Option<&str> {
                self.0
                    .get(&(scope.as_str(), name.to_owned()))
                    .map(String::as_str)
            }
        }

        /// One piece of a generated template, with the text it stands for.
        #[derive(Clone, Debug)]
        enum Piece {
            /// Literal text outside any expression; never contains `${`.
            Text(String),
            Ref(Scope, String),
            /// `base64(...)` with references (`Ok`) and quoted literals (`Err`).
            Base64(Vec<Result<(Scope, String), String>>),
        }

        fn scope() -> impl Strategy<Value = Scope> {
            prop_oneof![
                Just(Scope::Credential),
                Just(Scope::Connection),
                Just(Scope::Settings),
                Just(Scope::Input),
            ]
        }

        fn reference() -> impl Strategy<Value = (Scope, String)> {
            (scope(), "[a-z_][a-z0-9_-]{0,7}")
        }

        fn piece() -> impl Strategy<Value = Piece> {
            prop_oneof![
                // `$` and `{` appear, but a literal `${` would start an expression.
                "[a-zA-Z0-9 :/.,'(){}$_-]{1,12}"
                    .prop_filter("no ${ in literal text", |t| !t.contains("${"))
                    .prop_map(Piece::Text),
                reference().prop_map(|(s, n)| Piece::Ref(s, n)),
                proptest::collection::vec(
                    prop_oneof![
                        reference().prop_map(Ok),
                        // Quoted literals may hold `,`, `}` and `)`; never a quote.
                        "[a-zA-Z0-9 :,}){(=-]{0,6}".prop_map(Err),
                    ],
                    1..4
                )
                .prop_map(Piece::Base64),
            ]
        }

        /// Pieces joined as template text; adjacent literals are merged as the parser would.
        fn source(pieces: &[Piece]) -> String {
            let mut out = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Ref(s, n) => {
                        out.push_str("${");
                        out.push_str(s.as_str());
                        out.push('.');
                        out.push_str(n);
                        out.push('}');
                    }
                    Piece::Base64(args) => {
                        out.push_str("${ base64(");
                        for (i, arg) in args.iter().enumerate() {
                            if i > 0 {
                                out.push_str(", ");
                            }
                            match arg {
                                Ok((s, n)) => {
                                    out.push_str(s.as_str());
                                    out.push('.');
                                    out.push_str(n);
                                }
                                Err(lit) => {
                                    out.push('\'');
                                    out.push_str(lit);
                                    out.push('\'');
                                }
                            }
                        }
                        out.push_str(") }");
                    }
                }
            }
            out
        }

        fn value_of(values: &Owned, scope: Scope, name: &str) -> String {
            values.get(scope, name).unwrap().to_owned()
        }

        proptest! {
            #[test]
            fn parse_never_panics(text in any::<String>()) {
                let _ = Template::parse(&text);
            }

            #[test]
            fn parse_never_panics_on_template_like_text(
                text in "[$\\{\\}'(),. a-z_:-]{0,40}|(\\$\\{[a-z64(),.' _:-]{0,20}\\}?){0,4}"
            ) {
                if let Ok(t) = Template::parse(&text) {
                    // Whatever parsed renders or names a missing reference; it never panics.
                    let _ = t.render(&Owned(HashMap::new()));
                }
            }

            #[test]
            fn known_pieces_round_trip(
                pieces in proptest::collection::vec(piece(), 0..6).prop_filter(
                    "two literal pieces would join into ${",
                    |ps| !ps.windows(2).any(|w| matches!(
                        (&w[0], &w[1]),
                        (Piece::Text(a), Piece::Text(b)) if a.ends_with('$') && b.starts_with('{')
                    )),
                ),
                secret in "[ -~]{0,16}",
            ) {
                let text = source(&pieces);
                let template = Template::parse(&text).unwrap();

                // Every reference gets a value derived from its name, plus a generated part.
                let mut values = HashMap::new();
                let mut expected_refs = Vec::new();
                for piece in &pieces {
                    let refs: Vec<&(Scope, String)> = match piece {
                        Piece::Text(_) => vec![],
                        Piece::Ref(s, n) => {
                            values.insert((s.as_str(), n.clone()), format!("{}={secret}", n));
                            expected_refs.push((*s, n.clone()));
                            continue;
                        }
                        Piece::Base64(args) => args.iter().filter_map(|a| a.as_ref().ok()).collect(),
                    };
                    for (s, n) in refs {
                        values.insert((s.as_str(), n.clone()), format!("{}={secret}", n));
                        expected_refs.push((*s, n.clone()));
                    }
                }
                let values = Owned(values);

                let found: Vec<(Scope, String)> = template
                    .references()
                    .into_iter()
                    .map(|r| (r.scope, r.name.clone()))
                    .collect();
                prop_assert_eq!(found, expected_refs);

                let mut expected = String::new();
                for piece in &pieces {
                    match piece {
                        Piece::Text(t) => expected.push_str(t),
                        Piece::Ref(s, n) => expected.push_str(&value_of(&values, *s, n)),
                        Piece::Base64(args) => {
                            let mut joined = String::new();
                            for arg in args {
                                match arg {
                                    Ok((s, n)) => joined.push_str(&value_of(&values, *s, n)),
                                    Err(lit) => joined.push_str(lit),
                                }
                            }
                            expected.push_str(&STANDARD.encode(joined.as_bytes()));
                        }
                    }
                }
                prop_assert_eq!(template.render(&values).unwrap(), expected);
            }

            /// A missing value is an error naming the reference, never a partial render.
            #[test]
            fn missing_values_name_the_reference((s, n) in reference(), prefix in "[a-z ]{0,8}") {
                let mut text = prefix;
                text.push_str(&source(&[Piece::Ref(s, n.clone())]));
                let rendered = Template::parse(&text).unwrap().render(&Owned(HashMap::new()));
                prop_assert_eq!(rendered, Err(TemplateError::Missing(format!("{}.{n}", s.as_str()))));
            }
        }
    }
}
