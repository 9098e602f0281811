//! plumb-oci-hook: an OCI runtime hook (runc, crun, Podman's hooks directory) that plumbs a
//! container's network namespace with plumbd. In the container's `config.json`:
//!
//! ```json
//! "hooks": {
//!   "createRuntime": [{"path": "/usr/local/bin/plumb-oci-hook", "args": ["plumb-oci-hook", "createRuntime"]}],
//!   "poststop": [{"path": "/usr/local/bin/plumb-oci-hook", "args": ["plumb-oci-hook", "poststop"]}]
//! }
//! ```
//!
//! The runtime writes the container's state on stdin (`id`, `pid`, `annotations`). The
//! annotations say what to do: `io.plumb.network` (networks, comma-separated),
//! `io.plumb.ports` (`-p` values, comma-separated), `io.plumb.alias` (DNS aliases,
//! comma-separated), `io.plumb.socket` (plumbd's socket, default `/run/plumb/plumb.sock` or
//! `PLUMB_SOCKET`). createRuntime adopts `/proc/<pid>/ns/net` as sandbox `oci-<id>` and
//! connects it; on any failure it undoes what it did and exits 1, so the runtime does not
//! start the container. poststop removes the sandbox (the namespace is the runtime's).

use plumb_cni::http;
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;

fn fail(msg: String) -> ! {
    eprintln!("plumb-oci-hook: {msg}");
    std::process::exit(1);
}

fn list(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn main() {
    let phase = std::env::args().nth(1).unwrap_or_default();
    let mut input = String::new();
    if let Err(e) = std::io::stdin().take(1 << 20).read_to_string(&mut input) {
        fail(format!("cannot read the container state: {e}"));
    }
    let state: Value = serde_json::from_str(&input)
        .unwrap_or_else(|e| fail(format!("the container state is not JSON: {e}")));
    let id = state["id"].as_str().unwrap_or_default();
    let ok_id = !id.is_empty()
        && id.len() <= 120
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok_id {
        fail(format!("container id {id:?} is not usable"));
    }
    let notes = &state["annotations"];
    let socket = notes["io.plumb.socket"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| std::env::var("PLUMB_SOCKET").ok())
        .unwrap_or_else(|| "/run/plumb/plumb.sock".into());
    let socket = PathBuf::from(socket);
    let sb = format!("oci-{id}");
    let api = |method: &str, path: &str, body: Option<&Value>| {
        http::request(&socket, method, path, body).unwrap_or_else(|e| fail(e.0))
    };
    match phase.as_str() {
        "createRuntime" | "prestart" => {
            let networks = list(&notes["io.plumb.network"]);
            if networks.is_empty() {
                return; // Not plumb's container.
            }
            let pid = state["pid"].as_u64().filter(|p| *p > 1).unwrap_or_else(|| {
                fail("the container state has no pid".into());
            });
            // One request: the sandbox is made connected to every network, or not at all,
            // so the container never starts half-plumbed.
            let aliases = list(&notes["io.plumb.alias"]);
            let endpoints: serde_json::Map<String, Value> = networks
                .iter()
                .map(|net| (net.clone(), json!({"Aliases": aliases})))
                .collect();
            let body = json!({"Name": sb, "Netns": format!("/proc/{pid}/ns/net"),
                              "Ports": list(&notes["io.plumb.ports"]), "Networks": endpoints});
            let (st, v) = api("POST", "/plumb/v1/sandboxes", Some(&body));
            if st != 201 {
                fail(format!("plumbing the container: {}", v["message"]));
            }
        }
        "poststop" => {
            let (st, v) = api("DELETE", &format!("/plumb/v1/sandboxes/{sb}"), None);
            if st != 204 && st != 404 {
                fail(format!("removing sandbox {sb}: {}", v["message"]));
            }
        }
        other => fail(format!(
            "unknown hook phase {other:?}: give createRuntime or poststop as the first argument"
        )),
    }
}
