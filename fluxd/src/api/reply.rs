//! What handlers answer with, where several resources answer alike: a written versioned
//! object ([`written`]) and one page of a listing with the cursor of the next
//! ([`page`]).
//!
//! Guarantees: a write answers 201 only when it created the object, and always carries the
//! version it wrote in `x-flux-version` (which the audit record reads); a page's body is the
//! bare array, its next cursor (absent on the last page) is in [`NEXT_CURSOR_HEADER`].

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Response header of a listing (`GET /v1/jobs`, `GET /v1/rollouts`) carrying the cursor of
/// the next page (absent on the last page); the body stays the array of items.
pub const NEXT_CURSOR_HEADER: &str = "x-flux-next-cursor";

/// The answer to a write of a versioned object: 201 if it created the object, 200 otherwise,
/// with the object's version in `x-flux-version` and the object as the body.
pub fn written<V: Serialize>(created: bool, version: u64, view: V) -> Response {
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (code, [("x-flux-version", version.to_string())], Json(view)).into_response()
}

/// One page of a listing: the items as the body, the next page's cursor (if any) in
/// [`NEXT_CURSOR_HEADER`]. Cursors are base64url, so always a valid header value.
pub fn page<T: Serialize>(items: T, next_cursor: Option<String>) -> Response {
    let mut resp = Json(items).into_response();
    if let Some(c) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(NEXT_CURSOR_HEADER, c);
    }
    resp
}
