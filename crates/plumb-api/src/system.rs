//! `/_ping` and `/version`, what clients ask first.

use axum::http::header::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

/// The newest Docker Engine API version plumbd answers as.
pub const API_VERSION: &str = "1.51";
/// The oldest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

/// Headers Docker puts on every response.
pub fn common_headers(h: &mut HeaderMap) {
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("plumb/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    h.insert("Ostype", HeaderValue::from_static("linux"));
}

/// `GET|HEAD /_ping`.
pub async fn ping() -> impl IntoResponse {
    let mut h = HeaderMap::new();
    h.insert("Builder-Version", HeaderValue::from_static(""));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    (h, "OK")
}

/// `GET /version`.
pub async fn version() -> impl IntoResponse {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "plumb"},
        "Components": [{"Name": "plumb", "Version": v, "Details": {}}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
        "KernelVersion": "",
        "Experimental": false,
        "BuildTime": "",
    }))
}
