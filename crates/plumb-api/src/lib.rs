//! plumb-api: plumbd's HTTP API over a unix socket.
//!
//! - The Docker Engine API's network subset ([`networks`]) and what clients ask first
//!   ([`system`]), reachable both unversioned and under `/v1.NN/`.
//! - plumb's own sandbox resource under `/plumb/v1/` ([`sandboxes`]).
//!
//! [`serve`] takes a bound listener and a shutdown signal, so tests drive it directly.

pub mod convert;
pub mod error;
pub mod events;
pub mod filters;
pub mod networks;
pub mod peer;
pub mod render;
pub mod sandboxes;
pub mod system;
pub mod types;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;
use plumb_core::Controller;
use std::future::Future;
use std::sync::Arc;
use tower::Layer;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Produces a text document on demand (metrics, the firewall table).
pub type TextFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Produces a JSON document on demand, asynchronously (the plugins, asked what they are).
pub type JsonFn =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, serde_json::Value> + Send + Sync>;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The controller.
    pub ctl: Arc<Controller>,
    /// Event history and live feed.
    pub events: Arc<events::EventLog>,
    /// Metrics of the parts plumbd wired in (the DNS resolver).
    pub metrics: Option<TextFn>,
    /// plumb's firewall table as the OS shows it.
    pub firewall: Option<TextFn>,
    /// The plugins plumbd knows of.
    pub plugins: Option<JsonFn>,
}

impl AppState {
    /// State for `ctl`; starts recording its events (call inside the runtime).
    pub fn new(ctl: Arc<Controller>, metrics: Option<TextFn>, firewall: Option<TextFn>) -> Self {
        let events = events::EventLog::start(&ctl);
        AppState {
            ctl,
            events,
            metrics,
            firewall,
            plugins: None,
        }
    }

    /// With the plugin listing.
    pub fn with_plugins(mut self, plugins: Option<JsonFn>) -> Self {
        self.plugins = plugins;
        self
    }
}

/// `GET /plumb/v1/firewall`.
async fn firewall(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    // Listing the table runs the nft command: off the async workers.
    let body = match s.firewall.clone() {
        Some(f) => tokio::task::spawn_blocking(move || f())
            .await
            .unwrap_or_default(),
        None => String::new(),
    };
    ([(axum::http::header::CONTENT_TYPE, "text/plain")], body)
}

/// `GET /plumb/v1/metrics`.
async fn metrics(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    let body = s.metrics.as_ref().map(|f| f()).unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

/// `GET /plumb/v1/nodes`: the cluster's nodes (empty without a cluster store).
async fn nodes(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, error::ApiError> {
    let me = s.ctl.node().map(|n| n.name.clone());
    let list: Vec<serde_json::Value> = s
        .ctl
        .nodes()
        .await?
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "Name": n.record.node.name,
                "Addr": n.record.node.addr.to_string(),
                "Alive": n.alive,
                "Self": Some(&n.record.node.name) == me.as_ref(),
                "Since": render::rfc3339_nanos(n.record.since_unix_nanos),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::Value::Array(list)))
}

/// `GET /plumb/v1/plugins`: the plugins installed or in use, what they implement, their
/// address and state.
async fn plugins(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    let v = match &s.plugins {
        Some(f) => f().await,
        None => serde_json::Value::Array(Vec::new()),
    };
    axum::Json(v)
}

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// The API version a request asked for in its path, if any.
#[derive(Debug, Clone, Copy)]
struct RequestedVersion(u32, u32);

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Answers Docker's 400 for API versions outside what plumbd supports.
async fn check_version(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(RequestedVersion(a, b)) = req.extensions().get::<RequestedVersion>().copied() {
        let min = parse_version(system::MIN_API_VERSION).unwrap_or((1, 24));
        let max = parse_version(system::API_VERSION).unwrap_or((1, 51));
        if (a, b) < min {
            return error::ApiError::bad_request(format!(
                "client version {a}.{b} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                system::MIN_API_VERSION
            ))
            .into_response();
        }
        if (a, b) > max {
            return error::ApiError::bad_request(format!(
                "client version {a}.{b} is too new. Maximum supported API version is {}",
                system::API_VERSION
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// Refuses a body announced larger than [`MAX_BODY`] before reading any of it.
async fn reject_large(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return error::ApiError::bad_request(format!(
            "request body too large: at most {MAX_BODY} bytes"
        ))
        .into_response();
    }
    next.run(req).await
}

/// The API's routes (unversioned paths).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", axum::routing::any(system::no_swarm))
        .route("/swarm/{*rest}", axum::routing::any(system::no_swarm))
        .route("/services", axum::routing::any(system::no_swarm))
        .route("/services/{*rest}", axum::routing::any(system::no_swarm))
        .route("/nodes", axum::routing::any(system::no_swarm))
        .route("/nodes/{*rest}", axum::routing::any(system::no_swarm))
        .route("/tasks", axum::routing::any(system::no_swarm))
        .route("/tasks/{*rest}", axum::routing::any(system::no_swarm))
        .route("/secrets", axum::routing::any(system::no_swarm))
        .route("/secrets/{*rest}", axum::routing::any(system::no_swarm))
        .route("/configs", axum::routing::any(system::no_swarm))
        .route("/configs/{*rest}", axum::routing::any(system::no_swarm))
        .route("/events", get(events::events))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::delete),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/plumb/v1/openapi.json", get(openapi))
        .route("/plumb/v1/metrics", get(metrics))
        .route("/plumb/v1/firewall", get(firewall))
        .route("/plumb/v1/nodes", get(nodes))
        .route("/plumb/v1/plugins", get(plugins))
        .route(
            "/plumb/v1/sandboxes",
            get(sandboxes::list).post(sandboxes::create),
        )
        .route(
            "/plumb/v1/sandboxes/{id}",
            get(sandboxes::inspect).delete(sandboxes::delete),
        )
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(check_version))
        .layer(axum::middleware::from_fn(reject_large))
        .layer(axum::middleware::map_response(
            |mut r: axum::response::Response| async move {
                system::common_headers(r.headers_mut());
                r
            },
        ))
        .with_state(state)
}

/// Strips a `/v1.NN` prefix so versioned and unversioned paths route alike.
fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((ver, tail)) = rest.split_once('/') {
            let is_version = !ver.is_empty()
                && ver.split('.').count() == 2
                && ver
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if is_version {
                if let Some((a, b)) = parse_version(ver) {
                    req.extensions_mut().insert(RequestedVersion(a, b));
                }
                let mut pq = format!("/{tail}");
                if let Some(q) = req.uri().query() {
                    pq.push('?');
                    pq.push_str(q);
                }
                let mut parts = req.uri().clone().into_parts();
                if let Ok(p) = pq.parse() {
                    parts.path_and_query = Some(p);
                    if let Ok(uri) = Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                }
            }
        }
    }
    req
}

/// Who may talk to plumbd: peers whose uid or primary gid is listed (root always may).
#[derive(Debug, Clone, Default)]
pub struct AllowedPeers {
    /// Allowed user ids.
    pub uids: Vec<u32>,
    /// Allowed group ids.
    pub gids: Vec<u32>,
}

/// A unix listener that drops connections from peers not in [`AllowedPeers`] (checked with
/// SO_PEERCRED), a second line behind the socket's 0660 mode.
pub struct PeerCheckedListener {
    inner: tokio::net::UnixListener,
    allowed: AllowedPeers,
}

impl PeerCheckedListener {
    /// Wraps a bound listener.
    pub fn new(inner: tokio::net::UnixListener, allowed: AllowedPeers) -> Self {
        PeerCheckedListener { inner, allowed }
    }

    fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || self.allowed.uids.contains(&uid) || self.allowed.gids.contains(&gid)
    }
}

impl axum::serve::Listener for PeerCheckedListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match stream.peer_cred() {
                Ok(c) if self.allows(c.uid(), c.gid()) => return (stream, addr),
                Ok(c) => tracing::warn!(
                    uid = c.uid(),
                    gid = c.gid(),
                    "refused a connection from a user not allowed to use plumbd"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "refused a connection without peer credentials")
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: PeerCheckedListener,
    ctl: Arc<Controller>,
    metrics: Option<TextFn>,
    firewall: Option<TextFn>,
    plugins: Option<JsonFn>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = tower::util::MapRequestLayer::new(strip_version).layer(router(
        AppState::new(ctl, metrics, firewall).with_plugins(plugins),
    ));
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<peer::Peer>(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_is_valid_json_and_lists_every_route() {
        let v: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        for p in [
            "/networks",
            "/networks/create",
            "/networks/{id}/connect",
            "/events",
            "/plumb/v1/sandboxes/{id}",
        ] {
            assert!(v["paths"][p].is_object(), "{p} missing");
        }
    }
}
