//! Tiny HTML helpers for the pages emulators serve (error pages, the consent page, the
//! "bad gateway" fault page).
//!
//! Every value placed in a page goes through [`escape`]; this module must never interpolate
//! raw request input into markup.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for use in HTML element content and double-quoted attribute values.
pub(crate) fn escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A complete HTML document with `title` and an already-escaped `body_html`.
pub(crate) fn document(title: &str, body_html: &str) -> String {
    let mut out = String::from("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>");
    out.push_str(&escape(title));
    out.push_str("</title></head>\n<body>\n");
    out.push_str(body_html);
    out.push_str("\n</body></html>\n");
    out
}

/// An HTML response with the given status.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// The kind of page a load balancer in front of a provider returns when the backend is down:
/// clients must not try to parse it as JSON.
pub(crate) fn bad_gateway_page() -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        document(
            "502 Bad Gateway",
            "<h1>502 Bad Gateway</h1>\n<p>The upstream server is temporarily unavailable.</p>",
        ),
    )
}
