//! Rendering the pages an end user sees, with the security headers every page carries: a
//! strict Content-Security-Policy with a per-response nonce, `frame-ancestors` limited to the
//! app's origins, `Referrer-Policy: no-referrer` (the callback URL carries a code),
//! `X-Content-Type-Options: nosniff`, and `Cache-Control: no-store`.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use crate::config::GatewayConfig;

/// What every page shows around its content.
pub struct Chrome {
    pub app_name: String,
    pub accent: String,
    pub logo_url: Option<String>,
    pub nonce: String,
}

impl Chrome {
    pub fn new(config: &GatewayConfig) -> Self {
        Chrome {
            app_name: config.app_name.clone(),
            accent: "#2563eb".into(),
            logo_url: None,
            nonce: tether_core::random::token(),
        }
    }
}

/// One integration offered on the Connect page.
pub struct ConnectItem {
    pub key: String,
    pub name: String,
    pub href: String,
    pub mark_text: String,
    pub mark_color: String,
}

#[derive(Template)]
#[template(path = "connect.html")]
pub struct ConnectPage {
    pub chrome: Chrome,
    pub items: Vec<ConnectItem>,
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
    let html = match html {
        Ok(html) => html,
        Err(err) => {
            tracing::error!(error = %err, "page failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response();
        }
    };
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    let mut frame_ancestors = String::new();
    for origin in &config.allowed_return_origins {
        frame_ancestors.push(' ');
        frame_ancestors.push_str(&origin.ascii_serialization());
    }
    if frame_ancestors.is_empty() {
        frame_ancestors.push_str(" 'none'");
    }
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         img-src 'self' data: https:; form-action 'self'; base-uri 'none'; \
         frame-ancestors{frame_ancestors}"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
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

/// A result page for an outcome that is not a success.
pub struct Failure {
    pub status: StatusCode,
    pub heading: &'static str,
    pub message: String,
    /// Set when the failure is logged, so the person can quote it.
    pub reference: Option<String>,
    pub retry_href: Option<String>,
    /// Stable code posted to the opener in popup mode (`tether:error`).
    pub code: &'static str,
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
            code,
        }
    }
}

impl Failure {
    /// The failure as a page; in popup mode it also posts `tether:error` to the opener.
    pub fn into_page(self, config: &GatewayConfig, popup: bool) -> Response {
        let chrome = Chrome::new(config);
        let nonce = chrome.nonce.clone();
        let message_json = popup.then(|| {
            script_json(&serde_json::json!({
                "type": "tether:error",
                "code": self.code,
                "reference": self.reference,
            }))
        });
        let page = ResultPage {
            chrome,
            success: false,
            heading: self.heading.to_owned(),
            message: self.message,
            reference: self.reference,
            retry_href: self.retry_href,
            message_json,
            origins_json: origins_json(config),
        };
        render(config, self.status, &nonce, page.render())
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
