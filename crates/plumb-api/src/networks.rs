//! `/networks`: list, inspect, create, delete, connect, disconnect, prune.

use crate::convert;
use crate::error::body_bytes;
use crate::error::{parse_json, ApiError};
use crate::filters::{self, Filters};
use crate::render;
use crate::types::{Connect, Disconnect, NetworkCreate};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Query with Docker's `filters`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct FilterQuery {
    filters: Option<String>,
}

/// `GET /networks`.
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<FilterQuery>,
) -> Result<Json<Value>, ApiError> {
    let f = Filters::parse(q.filters.as_deref(), filters::NETWORK_KEYS)?;
    let mut out = Vec::new();
    for v in s.ctl.networks().await {
        if filters::network_matches(&f, &v)? {
            out.push(render::network_summary(&v.network));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = s.ctl.network(&id).await?;
    let mut out = render::network_inspect(&v);
    let notes = s.ctl.network_notes(&v.network);
    if !notes.is_empty() {
        out["Notes"] = json!(notes);
    }
    Ok(Json(out))
}

/// `POST /networks/create`.
pub async fn create(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req: NetworkCreate = parse_json(&body_bytes(body)?)?;
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
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let req: Connect = parse_json(&body_bytes(body)?)?;
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
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let req: Disconnect = parse_json(&body_bytes(body)?)?;
    if req.container.is_empty() {
        return Err(ApiError::bad_request(
            "invalid Container: a sandbox name or id is required",
        ));
    }
    s.ctl.disconnect(&id, &req.container).await?;
    Ok(StatusCode::OK)
}

/// `POST /networks/prune` (filters `until`, `label`, `label!`).
pub async fn prune(
    State(s): State<AppState>,
    Query(q): Query<FilterQuery>,
) -> Result<Json<Value>, ApiError> {
    let f = Filters::parse(q.filters.as_deref(), &["until", "label", "label!"])?;
    let now = plumb_core::events::now_nanos();
    let until = match f.get("until") {
        Some([t]) => Some(filters::parse_time(t, now)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid filter 'until': give one value",
            ))
        }
        None => None,
    };
    let labels = f.get("label").map(<[String]>::to_vec);
    let not_labels = f.get("label!").map(<[String]>::to_vec);
    let keep = move |n: &plumb_core::model::Network| {
        let too_new = until.is_some_and(|u| n.created_unix_nanos > u);
        let lacks = labels
            .as_ref()
            .is_some_and(|l| !filters::labels_match(&n.spec.labels, l));
        let excluded = not_labels.as_ref().is_some_and(|l| {
            l.iter()
                .any(|x| filters::labels_match(&n.spec.labels, std::slice::from_ref(x)))
        });
        too_new || lacks || excluded
    };
    let deleted = s.ctl.prune_networks(keep).await?;
    Ok(Json(json!({ "NetworksDeleted": deleted })))
}
