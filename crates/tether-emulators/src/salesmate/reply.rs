//! Salesmate's response envelopes: `{"Status":"success","Data":...}` and the two failure
//! shapes the provider facts record (capitalised `Code/Name/Message` for documented errors,
//! lowercase `message/name` for authorization and link errors).
//!
//! Nothing here decides policy; it only shapes bodies. It must never put request secrets in
//! a message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `{"Status":"success","Data":data}` with HTTP 200.
pub(crate) fn success(data: Value) -> Response {
    Json(json!({ "Status": "success", "Data": data })).into_response()
}

/// The documented failure shape `{"Status":"failure","Error":{"Code","Name","Message"}}`.
pub(crate) fn failure(status: StatusCode, code: &str, name: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "Status": "failure",
            "Error": { "Code": code, "Name": name, "Message": message },
        })),
    )
        .into_response()
}

/// The real API's validation error, which arrives with HTTP 200.
pub(crate) fn validation_error(message: &str) -> Response {
    failure(StatusCode::OK, "4001", "ValidationError", message)
}

/// The lowercase-keyed failure seen on authorization and link errors.
pub(crate) fn lowercase_failure(status: StatusCode, name: &str) -> Response {
    (
        status,
        Json(json!({
            "Status": "failure",
            "Error": { "message": "", "name": name },
        })),
    )
        .into_response()
}
