//! 10,000 malformed requests: plumbd answers each with a 4xx and a JSON message, never a 5xx
//! or a dropped connection, and its state (networks, sandboxes, kernel links) is unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::host;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Values of the wrong type for any field.
fn wrong_value(r: &mut Rng) -> Value {
    match r.below(8) {
        0 => json!(r.next()),
        1 => json!(-1.5e300),
        2 => json!(true),
        3 => json!([1, [2, [3]]]),
        4 => json!({"nested": {"deeper": null}}),
        5 => json!(vec!["x"; 3]),
        6 => json!(-(r.below(1000) as i64)),
        _ => json!({"\u{0}": "\u{fffd}"}),
    }
}

fn bad_string(r: &mut Rng) -> String {
    let choices = [
        " ",
        "-lead",
        "a/b",
        "a b",
        "ünïcødé",
        "../../etc",
        "x\u{0}y",
        "300.1.1.1/24",
        "10.0.0.0/33",
        "::::",
        "fd00::/129",
        "10.0.0.1/8",
        "zz:zz:zz:zz:zz:zz",
        "01:00:5e:00:00:01",
    ];
    let s = *r.pick(&choices);
    if r.below(4) == 0 {
        s.repeat(200)
    } else {
        s.to_owned()
    }
}

/// A network name dockerd also refuses: empty, control characters, padded, too long.
fn bad_network_name(r: &mut Rng) -> String {
    let choices = ["", " ", " lead", "trail ", "x\u{0}y", "a\nb", "tab\there"];
    if r.below(5) == 0 {
        "n".repeat(256)
    } else {
        (*r.pick(&choices)).to_owned()
    }
}

/// One malformed request: (method, path, raw body).
fn request(r: &mut Rng) -> (String, String, Vec<u8>) {
    let fields = [
        "Name",
        "Driver",
        "IPAM",
        "Options",
        "Labels",
        "Internal",
        "EnableIPv6",
        "Scope",
        "ConfigOnly",
    ];
    match r.below(9) {
        // Random bytes as a body.
        0 => {
            let n = r.below(300);
            let body: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            let path = *r.pick(&[
                "/networks/create",
                "/plumb/v1/sandboxes",
                "/networks/bridge/connect",
                "/networks/none/disconnect",
            ]);
            ("POST".into(), path.into(), body)
        }
        // Truncated or broken JSON.
        1 => {
            let full =
                json!({"Name": "fz", "IPAM": {"Config": [{"Subnet": "10.3.0.0/24"}]}}).to_string();
            let cut = r.below(full.len().saturating_sub(1)).max(1);
            (
                "POST".into(),
                "/networks/create".into(),
                full.as_bytes()[..cut].to_vec(),
            )
        }
        // A field of the wrong type.
        2 => {
            let mut body = json!({"Name": "fz-ok"});
            body[*r.pick(&fields)] = wrong_value(r);
            if body["Name"].is_string() {
                body["Driver"] = json!(r.next());
            }
            (
                "POST".into(),
                "/networks/create".into(),
                body.to_string().into_bytes(),
            )
        }
        // Invalid values of the right type.
        3 => {
            let body = match r.below(5) {
                0 => json!({"Name": bad_network_name(r)}),
                1 => json!({"Name": "fz", "IPAM": {"Config": [{"Subnet": bad_string(r)}]}}),
                2 => {
                    json!({"Name": "fz", "IPAM": {"Config": [{"Subnet": "10.4.0.0/24", "Gateway": bad_string(r)}]}})
                }
                3 => {
                    json!({"Name": "fz", "Options": {"com.docker.network.driver.mtu": bad_string(r)}})
                }
                _ => json!({"Name": "fz", "Driver": bad_string(r)}),
            };
            (
                "POST".into(),
                "/networks/create".into(),
                body.to_string().into_bytes(),
            )
        }
        // Connect with bad endpoint settings or unknown sandboxes.
        4 => {
            let body = match r.below(7) {
                0 => json!({"Container": bad_string(r)}),
                1 => {
                    json!({"Container": "fuzzbox", "EndpointConfig": {"IPAMConfig": {"IPv4Address": bad_string(r)}}})
                }
                2 => {
                    json!({"Container": "fuzzbox", "EndpointConfig": {"MacAddress": bad_string(r)}})
                }
                3 => json!({"Container": "fuzzbox", "EndpointConfig": {
                    "DriverOpts": {"com.docker.network.portmap": bad_string(r)}}}),
                4 => json!({"Container": "fuzzbox", "EndpointConfig": {
                    "PortBindings": {bad_string(r): [{"HostIp": bad_string(r), "HostPort": bad_string(r)}]}}}),
                5 => {
                    json!({"Container": "fuzzbox", "EndpointConfig": {"PortBindings": wrong_value(r)}})
                }
                _ => json!({"Container": wrong_value(r)}),
            };
            (
                "POST".into(),
                "/networks/fuzznet/connect".into(),
                body.to_string().into_bytes(),
            )
        }
        // Unknown objects.
        5 => {
            let m = *r.pick(&["GET", "DELETE"]);
            let p = *r.pick(&["/networks/", "/plumb/v1/sandboxes/", "/v1.44/networks/"]);
            (m.into(), format!("{p}nope{}", r.next()), Vec::new())
        }
        // Bad filters and timestamps.
        6 => {
            let p = match r.below(4) {
                0 => "/networks?filters=%7Bbroken".to_owned(),
                1 => "/networks?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D".to_owned(),
                2 => "/networks/prune?filters=%7B%22until%22%3A%5B%22someday%22%5D%7D".to_owned(),
                _ => "/events?since=tomorrow".to_owned(),
            };
            let m = if p.contains("prune") { "POST" } else { "GET" };
            (m.into(), p, Vec::new())
        }
        // Bad versions and methods.
        7 => {
            let p = *r.pick(&[
                "/v0.1/networks",
                "/v9.99/networks",
                "/v1.2.3/networks",
                "/networks/create",
            ]);
            let m = if p == "/networks/create" {
                "PUT"
            } else {
                "GET"
            };
            (m.into(), p.into(), Vec::new())
        }
        // Sandboxes with bad fields.
        _ => {
            let body = match r.below(4) {
                0 => json!({"Name": bad_string(r)}),
                1 => json!({"Name": "fz-sb", "Dns": [bad_string(r)]}),
                2 => json!({"Name": "fz-sb", "Ports": [bad_string(r)]}),
                _ => json!({"Name": "fz-sb", "ExtraHosts": [bad_string(r)]}),
            };
            (
                "POST".into(),
                "/plumb/v1/sandboxes".into(),
                body.to_string().into_bytes(),
            )
        }
    }
}

fn send(sock: &std::path::Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn ten_thousand_malformed_requests() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.2.0.0/24", "fuzznet"]);
    h.plumb_ok(&["sandbox", "create", "fuzzbox"]);
    h.plumb_ok(&["network", "connect", "fuzznet", "fuzzbox"]);
    let state = |h: &plumb_e2e::TestHost| {
        (
            h.api("GET", "/networks", None).1,
            h.api("GET", "/plumb/v1/sandboxes", None).1,
            h.links(),
        )
    };
    let before = state(&h);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..10_000 {
        let (m, p, b) = request(&mut r);
        let (code, text) = send(&h.socket, &m, &p, &b);
        assert!(
            (400..500).contains(&code),
            "request {i}: {m} {p} {:?} got {code}:\n{text}",
            String::from_utf8_lossy(&b)
        );
    }
    assert_eq!(state(&h), before, "malformed requests changed nothing");
    assert_eq!(h.api("GET", "/_ping", None).0, 200, "plumbd still serves");
}
