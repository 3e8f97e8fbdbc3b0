//! Whether a browser's POST comes from Tether's own pages: the one check the Connect forms
//! and the console share.

use axum::http::{HeaderMap, header};

use crate::config::GatewayConfig;

/// Whether a POST comes from where it says it comes from: a browser's `Sec-Fetch-Site`
/// must be `same-origin` (or `none`, typed by the user), and an `Origin` must be Tether's own.
/// `Origin: null` passes: browsers send it for forms on pages that say
/// `Referrer-Policy: no-referrer`, as Tether's do. Requests without either header (scripts,
/// old browsers) still need what the page itself guards with (the console's CSRF token, the
/// Connect form's unguessable session token).
pub fn same_origin(config: &GatewayConfig, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return false;
    }
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None | Some(Ok("null")) => true,
        Some(Ok(origin)) => origin == config.public_url.origin().ascii_serialization(),
        Some(Err(_)) => false,
    }
}
