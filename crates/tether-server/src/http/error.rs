//! The API's one error type. Every error leaves as RFC 9457 `application/problem+json` with a
//! stable `code`. Internal errors log their detail under a reference and return a generic 500:
//! a client never sees `err.to_string()` of something internal.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered by the JSON API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no or wrong API key.
    #[error("a valid API key is required")]
    Unauthorized,
    /// `/mcp` without a valid agent token (its challenge is added by the MCP edge).
    #[error("{0}")]
    AgentUnauthorized(&'static str),
    /// 400: the request is malformed; `code` says how, `detail` says what to change.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 422: the request is well-formed but a value in it cannot be accepted (an address the
    /// outbound policy refuses, imported metadata over its bounds); `detail` names the field.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// 403: the request comes from somewhere it may not (a browser page of an origin
    /// `/mcp` does not accept).
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    /// 404: the thing does not exist (or is not the caller's to see).
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// 409: the request conflicts with what exists (a configured integration, one in use).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 409: the connection must be connected again by its end user.
    #[error("the connection needs to be connected again by its end user")]
    NeedsReauth,
    /// 413: the request body is over the proxy's buffer.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 408: the client took longer than the request deadline (slow body, or a handler that
    /// waited too long on something).
    #[error("the request took longer than the server allows")]
    RequestTimeout,
    /// 429: too many attempts; retry after this many seconds.
    #[error("too many attempts; try again in {0} seconds")]
    RateLimited(u64),
    /// 429 from the proxy, without calling the provider: the provider's budget for this
    /// connection is spent (`provider_rate_limited`) or the operator's is
    /// (`budget_exceeded`); retry after this many seconds.
    #[error("{detail}")]
    Throttled {
        code: &'static str,
        detail: String,
        retry_after: u64,
    },
    /// 502: the provider answered, but not usefully.
    #[error("{0}")]
    Provider(String),
    /// 503: the provider is unreachable or rate limiting; try later.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// 504: the provider did not send its answer's head within the proxy's total deadline.
    #[error("{0}")]
    ProviderTimeout(String),
    /// 503: Tether's own database cannot be reached (down, restarting, every connection
    /// busy, a statement timed out). Nothing was changed; the same request may be sent again.
    /// The cause is logged, never sent.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable,
    /// 503: this instance cannot seal secrets: the database announces a sealing key (key
    /// rotation) that it does not hold. Nothing was stored; another instance, or this one once
    /// its keys are updated, can take the request. The key id is logged, not sent.
    #[error(
        "this instance cannot store secrets until its encryption keys include the sealing key \
         the database names; try again shortly"
    )]
    SealingKeyUnavailable,
    /// 500: our fault. The detail is logged with a reference, never sent.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// An RFC 9457 problem: how every API error is answered (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// A URI naming the kind of problem: `https://tether.dev/problems/{code}`.
    #[serde(rename = "type")]
    kind: String,
    /// A short summary of the kind of problem.
    title: &'a str,
    /// The HTTP status code.
    status: u16,
    /// What went wrong with this request, and what to change.
    detail: String,
    /// A stable code to branch on: `unauthorized`, `connection_not_found`, `needs_reauth`,
    /// `provider_error`, `rate_limited`, ...
    code: &'a str,
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// A seal the vault refused: [`ApiError::SealingKeyUnavailable`] when it lacks the
    /// announced key (logged at error, for the operator), internal otherwise.
    pub fn cannot_seal(err: tether_core::vault::VaultError) -> Self {
        if let tether_core::vault::VaultError::SealingKeyNotHeld(_) = &err {
            tracing::error!(error = %err, "refusing to seal");
            return ApiError::SealingKeyUnavailable;
        }
        ApiError::Internal(anyhow::Error::new(err).context("sealing"))
    }

    pub fn connection_not_found() -> Self {
        ApiError::NotFound {
            code: "connection_not_found",
            detail: "no connection has this id".into(),
        }
    }

    /// The stable `code` this error is answered with.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::AgentUnauthorized(_) => {
                (StatusCode::UNAUTHORIZED, "invalid_token", "Unauthorized")
            }
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, "Bad request"),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code, "Forbidden"),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code, "Not found"),
            ApiError::Unprocessable { code, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Unprocessable content",
            ),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code, "Conflict"),
            ApiError::NeedsReauth => (
                StatusCode::CONFLICT,
                "needs_reauth",
                "Needs reauthorization",
            ),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
            ),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            ApiError::Throttled { code, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, code, "Too many requests")
            }
            ApiError::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_error", "Provider error"),
            ApiError::ProviderUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                "Provider unavailable",
            ),
            ApiError::ProviderTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "provider_timeout",
                "Provider timeout",
            ),
            ApiError::DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Database unavailable",
            ),
            ApiError::SealingKeyUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "sealing_key_unavailable",
                "Sealing key unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            ),
        }
    }
}

impl From<tether_store::StoreError> for ApiError {
    fn from(err: tether_store::StoreError) -> Self {
        if err.is_unavailable() {
            // Logged once per failed request, at warn: an outage is an operator's concern,
            // not a bug, and its detail (which host, which error) is not the client's.
            tracing::warn!(error = ?err, "database unavailable");
            return ApiError::DatabaseUnavailable;
        }
        ApiError::Internal(anyhow::Error::new(err).context("store"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        let detail = match &self {
            ApiError::Internal(err) => {
                let reference = crate::http::reference::new();
                tracing::error!(reference = %reference, error = ?err, "internal error");
                format!("something went wrong on our side (reference {reference})")
            }
            other => other.to_string(),
        };
        let problem = Problem {
            kind: format!("https://tether.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::DatabaseUnavailable) {
            // A database restart or failover usually takes seconds.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::RateLimited(seconds)
        | ApiError::Throttled {
            retry_after: seconds,
            ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Rejections of axum's extractors (bad JSON, bad query) as problem+json too.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::bad_request("invalid_body", rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}
