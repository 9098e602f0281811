//! `/_ping`, `/version` and `/info`, what clients ask first; the swarm routes' "not part of a
//! swarm" answer; the catch-all 404.

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

/// `GET /info`: the fields that concern networking, and neutral values for the rest (clients
/// call it at start and read only what they need).
pub async fn info(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
) -> impl IntoResponse {
    let networks = s.ctl.networks().await.len();
    let sandboxes = s.ctl.sandboxes().await.len();
    let pools: Vec<serde_json::Value> = s
        .ctl
        .default_pools()
        .iter()
        .map(|p| json!({"Base": p.base.to_string(), "Size": p.size}))
        .collect();
    let uname = nix_uname();
    Json(json!({
        "ID": "",
        "Name": uname.nodename,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "OSType": "linux",
        "OperatingSystem": "plumb",
        "KernelVersion": uname.release,
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": 0,
        "Containers": sandboxes,
        "ContainersRunning": sandboxes,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "Driver": "",
        "DriverStatus": [],
        // Built-in drivers and plugins found now, as dockerd lists them.
        "Plugins": {"Volume": [], "Network": s.ctl.driver_names(), "Authorization": null, "Log": []},
        "NetworkCount": networks,
        "DefaultAddressPools": pools,
        "IPv4Forwarding": true,
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "ExperimentalBuild": false,
        "LiveRestoreEnabled": true,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "SecurityOptions": [],
        "Warnings": null,
        "Labels": [],
        "Runtimes": {},
        "DefaultRuntime": "",
        "CgroupDriver": "",
        "CgroupVersion": "",
        "RegistryConfig": null,
        "IndexServerAddress": "",
        "DockerRootDir": "",
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
    }))
}

/// The kernel's name for this host and its release.
struct Uname {
    nodename: String,
    release: String,
}

fn nix_uname() -> Uname {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    Uname {
        nodename: read("/proc/sys/kernel/hostname"),
        release: read("/proc/sys/kernel/osrelease"),
    }
}

/// Swarm routes: a dockerd outside a swarm answers 503, which clients tolerate.
pub async fn no_swarm(uri: axum::http::Uri) -> crate::error::ApiError {
    let message = if uri.path().ends_with("/leave") {
        "This node is not part of a swarm".to_owned()
    } else {
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".to_owned()
    };
    crate::error::ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        message,
    }
}

/// Any other route: Docker's JSON 404.
pub async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        message: "page not found".to_owned(),
    }
}
