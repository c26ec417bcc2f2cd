//! What the HTTP API's handlers share: the error type (a JSON body with a
//! message, never internals) and the key check of `/api/*` and `/admin/*`.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An HTTP error with a JSON body.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Whether two keys are equal (every byte compared, whatever differs).
pub fn same_key(given: &str, expected: &str) -> bool {
    throng_ops::same_secret(given, expected)
}

/// Checks the admin key given as `x-admin-key` or as `Authorization: Bearer`
/// (how Prometheus sends a scrape credential).
pub fn require_admin(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(given) if same_key(given.trim(), expected) => Ok(()),
        _ => require_key(headers, "x-admin-key", expected),
    }
}

/// Checks a key header (constant-time compare).
pub fn require_key(headers: &HeaderMap, name: &str, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if same_key(given, expected) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong {name} header"),
        ))
    }
}
