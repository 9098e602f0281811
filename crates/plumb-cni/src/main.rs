//! plumb-cni: a CNI plugin (spec 1.1; 0.4.0 and 1.0.0 results for older runtimes) that hands
//! a container's networking to plumbd. The network configuration names a plumb network:
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "web", "type": "plumb", "network": "web",
//!  "socket": "/run/plumb/plumb.sock"}
//! ```
//!
//! ADD adopts the container's namespace as the sandbox `cni-<container id>` and connects it
//! (interface CNI_IFNAME; `runtimeConfig` `portMappings`, `ips`, `mac` and `aliases`; the pod
//! name from CNI_ARGS `K8S_POD_NAME` as a DNS name; published ports are forwarded, their host
//! sockets left to the runtime unless the configuration says `"holdPorts": true`), DEL disconnects it and removes the
//! sandbox with its last network (never the namespace), CHECK compares, GC removes the
//! sandboxes of containers the runtime no longer has, STATUS asks plumbd whether it answers.

use plumb_cni::http;

use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;

/// The CNI versions whose results this plugin writes.
const VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];
/// Prefix of the sandboxes this plugin makes.
const PREFIX: &str = "cni-";

/// A CNI error: code, message, details (CNI's well-known codes where one fits).
struct CniError {
    code: u32,
    msg: String,
    details: String,
}

fn err(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}

/// What the runtime said: the environment and the configuration.
struct Call {
    command: String,
    container: String,
    netns: String,
    ifname: String,
    args: Vec<(String, String)>,
    conf: Value,
    socket: PathBuf,
    network: String,
    version: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn read_call() -> Result<Call, CniError> {
    let command = env("CNI_COMMAND");
    let mut input = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut input)
        .map_err(|e| err(6, "cannot read the network configuration", e.to_string()))?;
    let conf: Value = if input.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&input)
            .map_err(|e| err(6, "the network configuration is not JSON", e.to_string()))?
    };
    let version = conf["cniVersion"].as_str().unwrap_or("1.0.0").to_owned();
    let network = conf["network"]
        .as_str()
        .or(conf["name"].as_str())
        .unwrap_or_default()
        .to_owned();
    let socket = PathBuf::from(conf["socket"].as_str().unwrap_or("/run/plumb/plumb.sock"));
    let args = env("CNI_ARGS")
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(Call {
        command,
        container: env("CNI_CONTAINERID"),
        netns: env("CNI_NETNS"),
        ifname: env("CNI_IFNAME"),
        args,
        conf,
        socket,
        network,
        version,
    })
}

impl Call {
    fn sandbox(&self) -> String {
        sandbox_name(&self.container)
    }

    fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CniError> {
        http::request(&self.socket, method, path, body)
            .map_err(|e| err(11, "plumbd is not answering; try again later", e.0))
    }

    fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Checks what every call but VERSION, STATUS and GC needs.
    fn require(&self, netns: bool) -> Result<(), CniError> {
        if !VERSIONS.contains(&self.version.as_str()) {
            return Err(err(
                1,
                format!("CNI version {} is not supported", self.version),
                VERSIONS.join(", "),
            ));
        }
        if self.network.is_empty() {
            return Err(err(
                7,
                "the configuration names no network (\"network\" or \"name\")",
                "",
            ));
        }
        if self.container.is_empty() || sandbox_name(&self.container).len() > 128 {
            return Err(err(4, "CNI_CONTAINERID is missing or too long", ""));
        }
        if netns && !self.netns.starts_with('/') {
            return Err(err(
                4,
                "CNI_NETNS must be an absolute path",
                self.netns.clone(),
            ));
        }
        if self.ifname.is_empty() {
            return Err(err(4, "CNI_IFNAME is missing", ""));
        }
        Ok(())
    }
}

/// The sandbox of a container: `cni-` and the id's letters, digits, '_', '.', '-'.
fn sandbox_name(container: &str) -> String {
    let clean: String = container
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{clean}")
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_owned()
}

fn add(c: &Call) -> Result<Value, CniError> {
    c.require(true)?;
    let sb = c.sandbox();
    let cfg = endpoint_config(c);
    // Runtimes bind published host ports themselves (Podman) or expect forwarding only (the
    // portmap plugin's way), so plumb holds no socket unless `holdPorts` asks it to.
    let hold = c.conf["holdPorts"].as_bool().unwrap_or(false);
    let mut body = json!({"Name": sb, "Netns": c.netns, "RuntimeHoldsPorts": !hold,
                          "Networks": {c.network.as_str(): cfg}});
    // The pod name is the hosts file's name where it is a host name (Podman's generated names
    // have '_', which DNS aliases allow and host names do not).
    if let Some(pod) = c
        .arg("K8S_POD_NAME")
        .filter(|p| plumb_core::validate::is_hostname(p))
    {
        body["Hostname"] = json!(pod);
    }
    // One request makes the sandbox connected, or nothing.
    let (st, v) = c.api("POST", "/plumb/v1/sandboxes", Some(&body))?;
    match st {
        201 => return result(c, &v),
        409 if message(&v).contains("already exists") => {}
        _ => return Err(connect_error(c, st, &v)),
    }
    // The container is plumbed already: a repeated ADD, or ADD for another network.
    let (_, v) = c.api("GET", &format!("/plumb/v1/sandboxes/{sb}"), None)?;
    if v["Key"] != c.netns.as_str() {
        return Err(err(
            100,
            format!("container {} is plumbed in another namespace", c.container),
            v["Key"].as_str().unwrap_or_default(),
        ));
    }
    let body = json!({"Container": sb, "EndpointConfig": cfg});
    let (st, v) = c.api(
        "POST",
        &format!("/networks/{}/connect", c.network),
        Some(&body),
    )?;
    // 409: attached already (a repeated ADD): the result is what is there.
    if st != 200 && st != 409 {
        return Err(connect_error(c, st, &v));
    }
    let (_, v) = c.api("GET", &format!("/plumb/v1/sandboxes/{sb}"), None)?;
    result(c, &v)
}

/// The endpoint settings from the runtime's configuration: interface name, `aliases`, `ips`,
/// `mac`, `portMappings`, and the pod name as an alias.
fn endpoint_config(c: &Call) -> Value {
    let rc = &c.conf["runtimeConfig"];
    let mut aliases: Vec<Value> = rc["aliases"].as_array().cloned().unwrap_or_default();
    if let Some(pod) = c.arg("K8S_POD_NAME") {
        aliases.push(json!(pod));
    }
    let mut cfg =
        json!({"Aliases": aliases, "DriverOpts": {"com.docker.network.endpoint.ifname": c.ifname}});
    for ip in rc["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let addr = ip.split('/').next().unwrap_or_default();
        let key = if addr.contains(':') {
            "IPv6Address"
        } else {
            "IPv4Address"
        };
        cfg["IPAMConfig"][key] = json!(addr);
    }
    if let Some(mac) = rc["mac"].as_str() {
        cfg["MacAddress"] = json!(mac);
    }
    let mut bindings = serde_json::Map::new();
    for m in rc["portMappings"].as_array().into_iter().flatten() {
        let proto = m["protocol"].as_str().unwrap_or("tcp");
        let key = format!("{}/{proto}", m["containerPort"]);
        let entry = bindings.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": m["hostIP"].as_str().unwrap_or_default(), "HostPort": m["hostPort"].to_string()}));
        }
    }
    if !bindings.is_empty() {
        cfg["PortBindings"] = Value::Object(bindings);
    }
    cfg
}

/// The CNI error for plumbd refusing to make or connect the container's sandbox.
fn connect_error(c: &Call, status: u16, v: &Value) -> CniError {
    if status == 404 && message(v).contains("network") {
        return err(
            7,
            format!("plumb network {} not found", c.network),
            message(v),
        );
    }
    let what = if message(v).starts_with("invalid Netns") {
        "plumbd refused the container's namespace".to_owned()
    } else {
        format!(
            "plumbing container {} into network {} failed",
            c.container, c.network
        )
    };
    err(100, what, message(v))
}

/// The CNI result of the container's endpoint on the network, from the sandbox's inspect.
fn result(c: &Call, sb: &Value) -> Result<Value, CniError> {
    let ep = sb["Endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["Network"] == c.network.as_str())
        .cloned()
        .ok_or_else(|| {
            err(
                100,
                format!("container {} has no endpoint on {}", c.container, c.network),
                "",
            )
        })?;
    let legacy = c.version == "0.4.0";
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for (key, v6) in [("IPv4Address", false), ("IPv6Address", true)] {
        let Some(addr) = ep[key].as_str().filter(|a| !a.is_empty()) else {
            continue;
        };
        let gw = ep[if v6 { "IPv6Gateway" } else { "Gateway" }]
            .as_str()
            .filter(|g| !g.is_empty());
        let mut ip = json!({"address": addr, "interface": 0});
        if let Some(g) = gw {
            ip["gateway"] = json!(g);
            if ep["IsGateway"] == true {
                routes.push(json!({"dst": if v6 { "::/0" } else { "0.0.0.0/0" }, "gw": g}));
            }
        }
        if legacy {
            ip["version"] = json!(if v6 { "6" } else { "4" });
        }
        ips.push(ip);
    }
    Ok(json!({
        "cniVersion": c.version,
        "interfaces": [{"name": ep["InterfaceName"], "mac": ep["MacAddress"], "sandbox": c.netns}],
        "ips": ips,
        "routes": routes,
        "dns": {"nameservers": ["127.0.0.11"]},
    }))
}

fn del(c: &Call) -> Result<(), CniError> {
    c.require(false)?;
    let sb = c.sandbox();
    let body = json!({"Container": sb, "Force": true});
    // Not attached, no such sandbox, no such network: gone already, which DEL accepts.
    let (st, v) = c.api(
        "POST",
        &format!("/networks/{}/disconnect", c.network),
        Some(&body),
    )?;
    if st != 200 && st != 400 && st != 404 {
        return Err(err(
            100,
            format!("disconnecting from {} failed", c.network),
            message(&v),
        ));
    }
    remove_if_unused(c, &sb)
}

/// Removes the sandbox when it has no endpoint left (the namespace stays the runtime's).
fn remove_if_unused(c: &Call, sb: &str) -> Result<(), CniError> {
    let (st, v) = c.api("GET", &format!("/plumb/v1/sandboxes/{sb}"), None)?;
    if st == 200 && v["Endpoints"].as_array().is_none_or(Vec::is_empty) {
        let (st, v) = c.api("DELETE", &format!("/plumb/v1/sandboxes/{sb}"), None)?;
        if st != 204 && st != 404 {
            return Err(err(
                100,
                format!("removing sandbox {sb} failed"),
                message(&v),
            ));
        }
    }
    Ok(())
}

fn check(c: &Call) -> Result<(), CniError> {
    c.require(true)?;
    let (_, sb) = c.api("GET", &format!("/plumb/v1/sandboxes/{}", c.sandbox()), None)?;
    let got = result(c, &sb)?;
    if got["interfaces"][0]["name"] != c.ifname.as_str() {
        return Err(err(
            100,
            format!(
                "the interface is {}, not {}",
                got["interfaces"][0]["name"], c.ifname
            ),
            "",
        ));
    }
    if !std::path::Path::new(&c.netns).exists() {
        return Err(err(100, format!("the namespace {} is gone", c.netns), ""));
    }
    let prev = &c.conf["prevResult"]["ips"];
    if let Some(prev) = prev.as_array() {
        for p in prev {
            let listed = got["ips"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["address"] == p["address"]);
            if !listed {
                return Err(err(
                    100,
                    format!("address {} is not the container's any more", p["address"]),
                    "",
                ));
            }
        }
    }
    Ok(())
}

fn gc(c: &Call) -> Result<(), CniError> {
    let valid: Vec<String> = c.conf["cni.dev/valid-attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["containerID"].as_str().map(sandbox_name))
        .collect();
    let (_, list) = c.api("GET", "/plumb/v1/sandboxes", None)?;
    for sb in list.as_array().into_iter().flatten() {
        let name = sb["Name"].as_str().unwrap_or_default();
        let on_this_network = sb["Endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["Network"] == c.network.as_str());
        if name.starts_with(PREFIX) && on_this_network && !valid.iter().any(|v| v == name) {
            let body = json!({"Container": name, "Force": true});
            c.api(
                "POST",
                &format!("/networks/{}/disconnect", c.network),
                Some(&body),
            )?;
            remove_if_unused(c, name)?;
        }
    }
    Ok(())
}

fn run(c: &Call) -> Result<Option<Value>, CniError> {
    match c.command.as_str() {
        "ADD" => add(c).map(Some),
        "DEL" => del(c).map(|_| None),
        "CHECK" => check(c).map(|_| None),
        "GC" => gc(c).map(|_| None),
        "STATUS" => match c.api("GET", "/_ping", None) {
            Ok((200, _)) => Ok(None),
            _ => Err(err(
                50,
                "plumbd is not answering",
                c.socket.display().to_string(),
            )),
        },
        "VERSION" => Ok(Some(
            json!({"cniVersion": "1.1.0", "supportedVersions": VERSIONS}),
        )),
        other => Err(err(4, format!("unknown CNI_COMMAND {other:?}"), "")),
    }
}

fn main() {
    let (version, outcome) = match read_call() {
        Ok(c) => (c.version.clone(), run(&c)),
        Err(e) => ("1.1.0".to_owned(), Err(e)),
    };
    match outcome {
        Ok(Some(v)) => println!("{v}"),
        Ok(None) => {}
        Err(e) => {
            println!(
                "{}",
                json!({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details})
            );
            std::process::exit(1);
        }
    }
}
