//! Helpers shared by the end-to-end scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_testkit::CmdOutput;
pub use plumb_testkit::TestHost;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A started host, or None (with a message) when the machine lacks root or tools outside CI.
pub fn host() -> Option<TestHost> {
    plumb_testkit::prerequisites().then(TestHost::started)
}

/// Runs the real docker CLI against the host's plumbd.
pub fn docker(h: &TestHost, args: &[&str]) -> CmdOutput {
    std::process::Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", h.socket.display()))
        .env("DOCKER_CONFIG", h.dir.join("docker-config"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("the docker CLI is needed for this test: {e}"))
        .into()
}

/// The inspect JSON of a sandbox.
pub fn sandbox(h: &TestHost, name: &str) -> Value {
    let out = h.plumb_ok(&["sandbox", "inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// The IPv4 address (without prefix) of a sandbox's endpoint on `network`.
pub fn ip_on(h: &TestHost, sandbox_name: &str, network: &str) -> String {
    address_on(h, sandbox_name, network, "IPv4Address")
}

/// The IPv6 address (without prefix) of a sandbox's endpoint on `network`.
pub fn ip6_on(h: &TestHost, sandbox_name: &str, network: &str) -> String {
    address_on(h, sandbox_name, network, "IPv6Address")
}

fn address_on(h: &TestHost, sandbox_name: &str, network: &str, field: &str) -> String {
    let sb = sandbox(h, sandbox_name);
    let ep = sb["Endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Network"] == network)
        .unwrap_or_else(|| panic!("{sandbox_name} has no endpoint on {network}: {sb}"));
    ep[field]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// True when `from` can ping `ip` (one echo, one second).
pub fn can_ping(h: &TestHost, from: &str, ip: &str) -> bool {
    h.in_sandbox(from, &format!("ping -c1 -W1 {ip} >/dev/null 2>&1"))
        .ok()
}

/// The network inspect JSON.
pub fn network(h: &TestHost, name: &str) -> Value {
    let out = h.plumb_ok(&["network", "inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// The echo peer script (tests/clients/echo_peer.py).
pub fn echo() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients/echo_peer.py")
        .display()
        .to_string()
}

/// Echo servers inside a sandbox, killed on drop (also when an assertion fails).
pub struct Servers(Child);

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` and waits for the "ready" line it prints once it listens.
pub fn spawn_ready(cmd: &mut Command) -> Servers {
    let mut c = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let servers = Servers(c);
    assert_eq!(line.trim(), "ready");
    servers
}

/// Starts the echo servers inside a sandbox and waits until they listen.
pub fn serve(h: &TestHost, sb: &str, ports: &[&str]) -> Servers {
    spawn_ready(
        Command::new(plumb_testkit::bin_dir().join("plumb"))
            .args([
                "-H",
                &format!("unix://{}", h.socket.display()),
                "exec",
                sb,
                "--",
                "python3",
                &echo(),
                "serve",
            ])
            .args(ports),
    )
}

/// What the echo server at `host`:`port` saw as the client's address, asked from namespace
/// `ns` (None when nothing answered).
pub fn client_in_ns(h: &TestHost, ns: &str, proto: &str, host: &str, port: u16) -> Option<String> {
    let o = h.sh_in(ns, &format!("python3 {} {proto} {host} {port}", echo()));
    o.ok().then(|| o.stdout.trim().to_owned())
}
