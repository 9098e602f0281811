//! `/networks`: list, inspect, create, delete, connect, disconnect, prune.

use crate::convert;
use crate::error::{parse_json, ApiError};
use crate::render;
use crate::types::{Connect, Disconnect, NetworkCreate};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

/// `GET /networks`.
pub async fn list(State(s): State<AppState>) -> Json<Value> {
    let nets = s.ctl.networks().await;
    Json(Value::Array(
        nets.iter()
            .map(|v| render::network_summary(&v.network))
            .collect(),
    ))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = s.ctl.network(&id).await?;
    Ok(Json(render::network_inspect(&v)))
}

/// `POST /networks/create`.
pub async fn create(State(s): State<AppState>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let req: NetworkCreate = parse_json(&body)?;
    let spec = convert::network_spec(req)?;
    let n = s.ctl.create_network(spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": n.id.to_string(), "Warning": ""})),
    ))
}

/// `DELETE /networks/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.ctl.delete_network(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: Connect = parse_json(&body)?;
    if req.container.is_empty() {
        return Err(ApiError::bad_request(
            "invalid Container: a sandbox name or id is required",
        ));
    }
    let spec = convert::endpoint_spec(&req)?;
    s.ctl.connect(&id, &req.container, spec).await?;
    Ok(StatusCode::OK)
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: Disconnect = parse_json(&body)?;
    if req.container.is_empty() {
        return Err(ApiError::bad_request(
            "invalid Container: a sandbox name or id is required",
        ));
    }
    s.ctl.disconnect(&id, &req.container).await?;
    Ok(StatusCode::OK)
}

/// `POST /networks/prune`.
pub async fn prune(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let deleted = s.ctl.prune_networks(|_| false).await?;
    Ok(Json(json!({ "NetworksDeleted": deleted })))
}
