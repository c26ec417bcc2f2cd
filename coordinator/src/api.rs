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

/// Checks a key header (constant-time compare).
pub fn require_key(headers: &HeaderMap, name: &str, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Length leaks nothing useful; compare every byte regardless.
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong {name} header"),
        ))
    }
}
