//! `/plumb/v1/sandboxes`: plumb's own sandbox resource.

use crate::convert;
use crate::error::body_bytes;
use crate::error::{parse_json, ApiError};
use crate::render;
use crate::types::{Connect, SandboxCreate};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

/// `GET /plumb/v1/sandboxes`.
pub async fn list(State(s): State<AppState>) -> Json<Value> {
    let v = s.ctl.sandboxes().await;
    Json(Value::Array(v.iter().map(render::sandbox).collect()))
}

/// `GET /plumb/v1/sandboxes/{id}`.
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = s.ctl.sandbox(&id).await?;
    let mut v = render::sandbox(&view);
    // What each endpoint's driver tells of it (plugins' EndpointOperInfo), when anything.
    for (i, (ep, net)) in view.endpoints.iter().enumerate() {
        let info = s.ctl.endpoint_driver_info(net, ep).await;
        if !info.is_empty() {
            v["Endpoints"][i]["DriverInfo"] = json!(info);
        }
    }
    Ok(Json(v))
}

/// `POST /plumb/v1/sandboxes`.
pub async fn create(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mut req: SandboxCreate = parse_json(&body_bytes(body)?)?;
    let auto_remove = req.auto_remove;
    // Every endpoint's settings are checked before anything is made.
    let mut endpoints = Vec::new();
    for (network, cfg) in std::mem::take(&mut req.networks) {
        let connect = Connect {
            container: String::new(),
            endpoint_config: Some(cfg),
        };
        endpoints.push((network, convert::endpoint_spec(&connect)?));
    }
    let mut spec = convert::sandbox_spec(req)?;
    if auto_remove {
        let peer = ext
            .get::<axum::extract::ConnectInfo<crate::peer::Peer>>()
            .and_then(|p| p.owner());
        spec.owner = Some(peer.ok_or_else(|| {
            ApiError::bad_request(
                "invalid AutoRemove: the calling process cannot be seen from plumbd (another PID namespace?): remove the sandbox yourself",
            )
        })?);
    }
    let sb = s.ctl.create_sandbox(spec).await?;
    let id = sb.id.to_string();
    for (network, ep) in endpoints {
        if let Err(e) = s.ctl.connect(&network, &id, ep).await {
            // All or nothing: the sandbox goes with the endpoints made so far.
            if let Err(undo) = s.ctl.delete_sandbox(&id).await {
                tracing::warn!(sandbox = %sb.spec.name, error = %undo, "could not remove a half-made sandbox");
            }
            return Err(e.into());
        }
    }
    let view = s.ctl.sandbox(&id).await?;
    Ok((StatusCode::CREATED, Json(render::sandbox(&view))))
}

/// `DELETE /plumb/v1/sandboxes/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.ctl.delete_sandbox(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
