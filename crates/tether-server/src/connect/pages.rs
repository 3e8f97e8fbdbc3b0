//! Rendering the pages an end user sees, with the security headers every page carries: a
//! strict Content-Security-Policy with a per-response nonce, `frame-ancestors` limited to the
//! app's origins, `Referrer-Policy: no-referrer` (the callback URL carries a code),
//! `X-Content-Type-Options: nosniff`, and `Cache-Control: no-store`.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use crate::config::{DEFAULT_ACCENT, GatewayConfig, is_hex_color};

/// What every page shows around its content: the app's branding and the response's nonce.
pub struct Chrome {
    pub app_name: String,
    /// `#rgb`/`#rrggbb` only: it is written into a `<style>` element.
    pub accent: String,
    /// Text drawn on the accent (white or near-black, whichever contrasts more).
    pub accent_ink: String,
    /// Focus rings and links: the accent, unless it is too pale to see on white (WCAG 1.4.11
    /// asks 3:1 for focus indicators), then near-black.
    pub focus: String,
    pub logo_url: Option<String>,
    pub nonce: String,
}

/// Near-black used for text.
const INK: &str = "#111827";

impl Chrome {
    pub fn new(config: &GatewayConfig) -> Self {
        // Checked again here so that nothing but a hex colour ever reaches the CSS.
        let accent = if is_hex_color(config.accent_color()) {
            config.accent_color().to_owned()
        } else {
            DEFAULT_ACCENT.to_owned()
        };
        let on_white = contrast(&accent, "#ffffff");
        let accent_ink = if on_white >= contrast(&accent, INK) {
            "#ffffff"
        } else {
            INK
        };
        Chrome {
            app_name: config.app_name.clone(),
            focus: if on_white >= 3.0 {
                accent.clone()
            } else {
                INK.into()
            },
            accent_ink: accent_ink.into(),
            accent,
            logo_url: config.logo_url().map(|u| u.to_string()),
            nonce: tether_core::random::token(),
        }
    }
}

/// WCAG 2.x contrast ratio of two `#rgb`/`#rrggbb` colours.
pub fn contrast(a: &str, b: &str) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// WCAG relative luminance; 0 for anything that is not a hex colour.
fn luminance(color: &str) -> f64 {
    if !is_hex_color(color) {
        return 0.0;
    }
    let hex = &color[1..];
    let channel = |i: usize| -> f64 {
        let v = if hex.len() == 3 {
            let d = u8::from_str_radix(&hex[i..i + 1], 16).unwrap_or(0);
            d * 17
        } else {
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)
        };
        let c = f64::from(v) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
}

/// One integration offered on the Connect page.
pub struct ConnectItem {
    pub key: String,
    pub name: String,
    pub href: String,
    pub mark_text: String,
    pub mark_color: String,
    /// What happens on click, in a few words ("You sign in on ...'s site").
    pub hint: String,
}

#[derive(Template)]
#[template(path = "connect.html")]
pub struct ConnectPage {
    pub chrome: Chrome,
    pub items: Vec<ConnectItem>,
    /// Whom the link connects (the email or name the app gave), so a person who was sent
    /// someone else's link notices.
    pub for_whom: Option<String>,
}

#[derive(Template)]
#[template(path = "result.html")]
pub struct ResultPage {
    pub chrome: Chrome,
    pub success: bool,
    pub heading: String,
    pub message: String,
    pub reference: Option<String>,
    pub retry_href: Option<String>,
    /// Offer "Try again" pointing at the last connect link this tab followed (remembered in
    /// `sessionStorage` by the Connect page), for outcomes where the server no longer knows
    /// the session token (the OAuth callback keeps only its hash).
    pub retry_last_start: bool,
    /// JSON posted to `window.opener` (popup mode), already safe to embed in a script.
    pub message_json: Option<String>,
    pub origins_json: String,
}

/// Serialises a value as JSON that is safe inside a `<script>` element.
pub fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Renders a page with its security headers.
pub fn render(
    config: &GatewayConfig,
    status: StatusCode,
    nonce: &str,
    html: Result<String, askama::Error>,
) -> Response {
    html_response(status, html, &content_security_policy(config, nonce))
}

/// An HTML page (the Connect pages' and the console's) with the headers every page carries:
/// its Content-Security-Policy, no referrer, no sniffing, no caching. A template that fails
/// to render is a 500 with a reference in the log.
pub(crate) fn html_response(
    status: StatusCode,
    html: Result<String, askama::Error>,
    csp: &str,
) -> Response {
    let html = match html {
        Ok(html) => html,
        Err(err) => {
            let reference = crate::http::reference::new();
            tracing::error!(reference = %reference, error = %err, "page failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response();
        }
    };
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The pages' Content-Security-Policy: nothing loads but this response's own nonce'd style
/// and script, and the configured logo; forms post only here, or (the redirect after a form)
/// to the app; only the app's origins may frame the page.
pub fn content_security_policy(config: &GatewayConfig, nonce: &str) -> String {
    let origins: Vec<String> = config
        .allowed_return_origins
        .iter()
        .map(|o| o.ascii_serialization())
        .filter(|o| o != "null")
        .collect();
    let frame_ancestors = if origins.is_empty() {
        "'none'".to_owned()
    } else {
        origins.join(" ")
    };
    // Chromium applies form-action to the redirect that follows a form post too, so the app's
    // origins must be listed for the credential form's redirect to the return URL.
    let mut form_action = vec!["'self'".to_owned()];
    form_action.extend(origins.iter().cloned());
    let img_src = config
        .logo_url()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "'none'".into());
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         img-src {img_src}; form-action {form_action}; base-uri 'none'; \
         frame-ancestors {frame_ancestors}",
        form_action = form_action.join(" "),
    )
}

/// A result page for an outcome that is not a success.
pub struct Failure {
    pub status: StatusCode,
    pub heading: &'static str,
    pub message: String,
    /// Set when the failure is logged, so the person can quote it.
    pub reference: Option<String>,
    pub retry_href: Option<String>,
    /// Offer to follow the last connect link again (see [`ResultPage::retry_last_start`]).
    pub retry_last_start: bool,
    /// Stable code posted to the opener in popup mode (`tether:error`).
    pub code: &'static str,
    /// Seconds for a `Retry-After` header (rate limits).
    pub retry_after: Option<u64>,
}

impl Failure {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        heading: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            status,
            heading,
            message: message.into(),
            reference: None,
            retry_href: None,
            retry_last_start: false,
            code,
            retry_after: None,
        }
    }
}

impl Failure {
    /// An internal error: logged with its detail under a reference the page shows; the page
    /// says only `message`.
    /// A store that cannot reach its database is not a bug: the page says to try again in a
    /// moment (503, code `database_unavailable`), as the API does.
    pub fn internal<E: std::fmt::Debug + std::any::Any>(
        what: &str,
        err: &E,
        message: &'static str,
    ) -> Self {
        let any: &dyn std::any::Any = err;
        let store_error = any.downcast_ref::<tether_store::StoreError>().or_else(|| {
            any.downcast_ref::<crate::connection_service::persist::SaveError>()
                .and_then(|e| e.store_error())
        });
        if store_error.is_some_and(tether_store::StoreError::is_unavailable) {
            tracing::warn!(error = ?err, "{what}: database unavailable");
            let mut failure = Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Try again in a moment",
                "We could not reach our database just now. Wait a moment, then try again.",
            );
            failure.retry_last_start = true;
            failure.retry_after = Some(5);
            return failure;
        }
        let reference = crate::http::reference::new();
        tracing::error!(reference = %reference, error = ?err, "{what}");
        let mut failure = Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong",
            message,
        );
        failure.reference = Some(reference);
        failure
    }

    /// The failure as a page. When the page has a `window.opener` (the app opened it with
    /// `window.open`), it also posts `tether:error` to the opener and closes: a failure can come
    /// before the page knew it was a popup (an expired link opened straight in one).
    pub fn into_page(self, config: &GatewayConfig) -> Response {
        let chrome = Chrome::new(config);
        let nonce = chrome.nonce.clone();
        let message_json = Some(script_json(&serde_json::json!({
            "type": "tether:error",
            "code": self.code,
            "reference": self.reference,
        })));
        let page = ResultPage {
            chrome,
            success: false,
            heading: self.heading.to_owned(),
            message: self.message,
            reference: self.reference,
            retry_href: self.retry_href,
            retry_last_start: self.retry_last_start,
            message_json,
            origins_json: origins_json(config),
        };
        let mut response = render(config, self.status, &nonce, page.render());
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The allowed origins as a JSON array for `postMessage` targets.
pub fn origins_json(config: &GatewayConfig) -> String {
    let origins: Vec<String> = config
        .allowed_return_origins
        .iter()
        .map(|o| o.ascii_serialization())
        .collect();
    script_json(&serde_json::json!(origins))
}

/// A connection that was just stored, and where its browser goes next.
pub struct Outcome<'a> {
    pub integration: &'a str,
    pub display_name: &'a str,
    /// The connect session's return URL (already checked against the allow-list).
    pub return_url: Option<&'a str>,
    pub connection_id: &'a str,
    pub popup: bool,
}

/// The success outcome of any connect flow: back to the app's return URL with
/// `connection_id` and `integration`, or a "Connected" page that tells the opener (popup).
pub fn connected(config: &GatewayConfig, outcome: &Outcome<'_>) -> Response {
    if let Some(mut url) = outcome
        .return_url
        .filter(|_| !outcome.popup)
        .and_then(|u| Url::parse(u).ok())
    {
        url.query_pairs_mut()
            .append_pair("connection_id", outcome.connection_id)
            .append_pair("integration", outcome.integration);
        return Redirect::to(url.as_str()).into_response();
    }
    let chrome = Chrome::new(config);
    let nonce = chrome.nonce.clone();
    let page = ResultPage {
        chrome,
        success: true,
        heading: "Connected".into(),
        message: format!(
            "Your {} account is connected. You can close this window.",
            outcome.display_name
        ),
        reference: None,
        retry_href: None,
        retry_last_start: false,
        message_json: outcome.popup.then(|| {
            script_json(&serde_json::json!({
                "type": "tether:connected",
                "connection_id": outcome.connection_id,
                "integration": outcome.integration,
            }))
        }),
        origins_json: origins_json(config),
    };
    render(config, StatusCode::OK, &nonce, page.render())
}
