//! `plumb sandbox ...`.

use crate::client::{seg, Client};
use crate::network::s;
use crate::table;
use anyhow::bail;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

/// Sandbox subcommands.
#[derive(Subcommand, Debug)]
pub enum SandboxCmd {
    /// Create a sandbox (a network namespace with loopback, hosts and resolv.conf).
    Create(CreateArgs),
    /// List sandboxes.
    #[command(alias = "list")]
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show sandboxes in detail.
    Inspect {
        /// Sandboxes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List a sandbox's published ports, as `docker port` does.
    Port {
        /// Sandbox.
        name: String,
        /// Only this container port (PORT or PORT/PROTO).
        port: Option<String>,
    },
    /// Remove sandboxes (their endpoints are disconnected and deleted).
    #[command(alias = "remove")]
    Rm {
        /// Sandboxes.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// The options of a new sandbox, shared by `sandbox create` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct SandboxOpts {
    /// Hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Domain name (the hosts file also names the sandbox HOSTNAME.DOMAINNAME).
    #[arg(long)]
    pub domainname: Option<String>,
    /// Nameserver (repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// Search domain (repeatable).
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// resolv.conf option (repeatable).
    #[arg(long)]
    pub dns_option: Vec<String>,
    /// Extra hosts entry name:ip (repeatable).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|udp|sctp] (repeatable).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
}

/// `sandbox create`.
#[derive(Args, Debug, Clone, Default)]
pub struct CreateArgs {
    /// Name.
    pub name: String,
    /// Share the host's network stack.
    #[arg(long = "host-network")]
    pub host_network: bool,
    /// The sandbox's options.
    #[command(flatten)]
    pub opts: SandboxOpts,
    /// Remove the sandbox when this process ends (`plumb run`).
    #[arg(skip)]
    pub auto_remove: bool,
    /// Adopt this network namespace (made by a runtime) instead of making one; plumb never
    /// deletes it.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<String>,
}

/// Creates a sandbox; returns its inspect JSON.
pub async fn create(c: &Client, a: &CreateArgs) -> anyhow::Result<Value> {
    let body = json!({
        "Name": a.name,
        "Hostname": a.opts.hostname.clone().unwrap_or_default(),
        "Domainname": a.opts.domainname.clone().unwrap_or_default(),
        "HostMode": a.host_network,
        "Dns": a.opts.dns,
        "DnsSearch": a.opts.dns_search,
        "DnsOptions": a.opts.dns_option,
        "ExtraHosts": a.opts.add_host,
        "Ports": a.opts.publish,
        "AutoRemove": a.auto_remove,
        "Netns": a.netns,
    });
    let v = c
        .ok(Method::POST, "/plumb/v1/sandboxes", Some(&body))
        .await?;
    inspect(c, &s(&v["Id"])).await
}

/// The inspect JSON of one sandbox.
pub async fn inspect(c: &Client, name: &str) -> anyhow::Result<Value> {
    c.ok(
        Method::GET,
        &format!("/plumb/v1/sandboxes/{}", seg(name)),
        None,
    )
    .await
}

/// Removes one sandbox.
pub async fn remove(c: &Client, name: &str) -> anyhow::Result<()> {
    c.ok(
        Method::DELETE,
        &format!("/plumb/v1/sandboxes/{}", seg(name)),
        None,
    )
    .await
    .map(|_| ())
}

/// Runs a sandbox subcommand.
pub async fn run(c: &Client, cmd: SandboxCmd) -> anyhow::Result<()> {
    match cmd {
        SandboxCmd::Create(a) => {
            let v = create(c, &a).await?;
            println!("{}", s(&v["Id"]));
        }
        SandboxCmd::Ls { format } => {
            let v = c.ok(Method::GET, "/plumb/v1/sandboxes", None).await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|sb| {
                    let nets: Vec<String> = sb["Endpoints"]
                        .as_array()
                        .map(|a| a.iter().map(|e| s(&e["Network"])).collect())
                        .unwrap_or_default();
                    vec![
                        s(&sb["Id"]).chars().take(12).collect(),
                        s(&sb["Name"]),
                        nets.join(","),
                        s(&sb["Key"]),
                    ]
                })
                .collect();
            table::print(&["SANDBOX ID", "NAME", "NETWORKS", "KEY"], &rows);
        }
        SandboxCmd::Port { name, port } => {
            let v = inspect(c, &name).await?;
            let lines = port_lines(&v["Ports"], port.as_deref())?;
            if lines.is_empty() && port.is_some() {
                bail!(
                    "no published port {} in sandbox {name}",
                    port.unwrap_or_default()
                );
            }
            for l in lines {
                println!("{l}");
            }
        }
        SandboxCmd::Inspect { names } => {
            let mut out = Vec::new();
            for n in names {
                out.push(inspect(c, &n).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        SandboxCmd::Rm { names } => {
            let mut failed = false;
            for n in names {
                match remove(c, &n).await {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some sandboxes could not be removed");
            }
        }
    }
    Ok(())
}

/// Whether a `-p` value names its host port (`8080:80`), or leaves the pick to plumbd (`80`,
/// `127.0.0.1::80`).
pub fn names_host_port(spec: &str) -> bool {
    plumb_core::ports::parse(spec).is_ok_and(|m| m.iter().all(|m| m.host_port != 0))
}

/// `docker port` lines ("80/tcp -> 0.0.0.0:8080") for the `Ports` of a sandbox's inspect,
/// only those of container port `only` (PORT or PORT/PROTO) when given.
pub fn port_lines(ports: &Value, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    use std::net::IpAddr;
    let mut out = Vec::new();
    for p in ports.as_array().into_iter().flatten() {
        for m in plumb_core::ports::parse(&s(p))? {
            let container = format!("{}/{}", m.container_port, m.proto.as_str());
            let wanted = match only {
                None => true,
                Some(o) if o.contains('/') => o == container,
                Some(o) => o == m.container_port.to_string(),
            };
            if !wanted {
                continue;
            }
            let hosts = match m.host_ip {
                None => vec!["0.0.0.0".to_owned(), "[::]".to_owned()],
                Some(IpAddr::V6(a)) => vec![format!("[{a}]")],
                Some(a) => vec![a.to_string()],
            };
            for h in hosts {
                out.push(format!("{container} -> {h}:{}", m.host_port));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lines_read_like_docker_port() {
        let ports = json!(["8080:80/tcp", "127.0.0.1:53:53/udp", "[::]:8443:443/tcp"]);
        assert_eq!(
            port_lines(&ports, None).unwrap(),
            [
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> [::]:8080",
                "53/udp -> 127.0.0.1:53",
                "443/tcp -> [::]:8443"
            ]
        );
        assert_eq!(
            port_lines(&ports, Some("53/udp")).unwrap(),
            ["53/udp -> 127.0.0.1:53"]
        );
        assert!(port_lines(&ports, Some("53/tcp")).unwrap().is_empty());
    }
}
