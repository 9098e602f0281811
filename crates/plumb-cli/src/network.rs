//! `plumb network ...`.

use crate::client::{seg, Client};
use crate::table;
use anyhow::bail;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

/// Network subcommands.
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show networks in detail (Docker's inspect JSON).
    Inspect {
        /// Networks (name, id or id prefix).
        #[arg(required = true)]
        names: Vec<String>,
        /// Output format: json (the default).
        #[arg(long, short = 'f', default_value = "json")]
        format: String,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a sandbox to a network.
    Connect(ConnectArgs),
    /// Disconnect a sandbox from a network.
    Disconnect {
        /// Network.
        network: String,
        /// Sandbox.
        sandbox: String,
        /// Force.
        #[arg(long, short)]
        force: bool,
    },
    /// Remove all networks without endpoints.
    Prune {
        /// Do not ask (plumb never asks; accepted for Docker compatibility).
        #[arg(long, short)]
        force: bool,
    },
}

/// `network create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Network name.
    name: String,
    /// Driver.
    #[arg(short = 'd', long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form (repeatable: one IPv4 and one IPv6).
    #[arg(long)]
    subnet: Vec<String>,
    /// Gateway, matched to the subnet containing it.
    #[arg(long)]
    gateway: Vec<String>,
    /// Range dynamic addresses come from, matched to its subnet.
    #[arg(long)]
    ip_range: Vec<String>,
    /// Reserved address name=IP.
    #[arg(long)]
    aux_address: Vec<String>,
    /// No external connectivity.
    #[arg(long)]
    internal: bool,
    /// Enable IPv6.
    #[arg(long)]
    ipv6: bool,
    /// Enable IPv4 (`--ipv4=false` with `--ipv6` makes an IPv6-only network).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    ipv4: bool,
    /// Allow manual attachment.
    #[arg(long)]
    attachable: bool,
    /// Driver option key=value.
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    /// Label key=value.
    #[arg(long)]
    label: Vec<String>,
    /// IPAM driver (default: the built-in one).
    #[arg(long, default_value = "default")]
    ipam_driver: String,
    /// IPAM driver option key=value (repeatable).
    #[arg(long)]
    ipam_opt: Vec<String>,
}

/// `network ls`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    format: String,
}

/// `network connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Network.
    network: String,
    /// Sandbox.
    sandbox: String,
    /// Static IPv4 address.
    #[arg(long)]
    ip: Option<String>,
    /// Static IPv6 address.
    #[arg(long)]
    ip6: Option<String>,
    /// DNS alias (repeatable).
    #[arg(long)]
    alias: Vec<String>,
    /// MAC address.
    #[arg(long)]
    mac_address: Option<String>,
    /// Gateway priority (highest gives the default route).
    #[arg(long, default_value_t = 0)]
    gw_priority: i32,
    /// Publish a port while this endpoint is joined: [IP:]HOST[-END]:CONTAINER[-END][/PROTO]
    /// (repeatable).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Endpoint driver option key=value (repeatable).
    #[arg(long)]
    driver_opt: Vec<String>,
}

fn kv(field: &str, items: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for i in items {
        let Some((k, v)) = i.split_once('=') else {
            bail!("invalid {field} {i:?}: expected key=value");
        };
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(m)
}

/// Builds IPAM.Config from the repeated flags, pairing each gateway/range/aux with the subnet
/// that contains it.
fn ipam_config(a: &CreateArgs) -> anyhow::Result<Vec<Value>> {
    let mut configs: Vec<Map<String, Value>> = a
        .subnet
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("Subnet".into(), json!(s));
            m
        })
        .collect();
    let find =
        |configs: &mut Vec<Map<String, Value>>, ip: &str, what: &str| -> anyhow::Result<usize> {
            let addr: std::net::IpAddr = ip
                .split('/')
                .next()
                .unwrap_or(ip)
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid {what} {ip:?}: not an IP address"))?;
            for (i, c) in configs.iter().enumerate() {
                let sub = c.get("Subnet").and_then(Value::as_str).unwrap_or("");
                if let Some((net, len)) = sub.split_once('/') {
                    if let (Ok(n), Ok(l)) = (net.parse::<std::net::IpAddr>(), len.parse::<u32>()) {
                        if contains(n, l, addr) {
                            return Ok(i);
                        }
                    }
                }
            }
            bail!("invalid {what} {ip}: no --subnet contains it")
        };
    for g in &a.gateway {
        let i = find(&mut configs, g, "--gateway")?;
        configs[i].insert("Gateway".into(), json!(g));
    }
    for r in &a.ip_range {
        let i = find(&mut configs, r, "--ip-range")?;
        configs[i].insert("IPRange".into(), json!(r));
    }
    for aux in &a.aux_address {
        let Some((name, ip)) = aux.split_once('=') else {
            bail!("invalid --aux-address {aux:?}: expected name=IP");
        };
        let i = find(&mut configs, ip, "--aux-address")?;
        let entry = configs[i]
            .entry("AuxiliaryAddresses")
            .or_insert_with(|| json!({}));
        if let Value::Object(m) = entry {
            m.insert(name.to_owned(), json!(ip));
        }
    }
    Ok(configs.into_iter().map(Value::Object).collect())
}

fn contains(net: std::net::IpAddr, len: u32, ip: std::net::IpAddr) -> bool {
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Runs a network subcommand.
pub async fn run(c: &Client, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Create(a) => {
            let body = json!({
                "Name": a.name,
                "Driver": a.driver,
                "Internal": a.internal,
                "Attachable": a.attachable,
                "EnableIPv6": a.ipv6,
                "EnableIPv4": a.ipv4,
                "IPAM": {
                    "Driver": a.ipam_driver,
                    "Config": ipam_config(&a)?,
                    "Options": if a.ipam_opt.is_empty() { Value::Null } else { Value::Object(kv("--ipam-opt", &a.ipam_opt)?) },
                },
                "Options": kv("--opt", &a.opt)?,
                "Labels": kv("--label", &a.label)?,
            });
            let v = c.ok(Method::POST, "/networks/create", Some(&body)).await?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
        }
        NetworkCmd::Ls(a) => {
            let v = c.ok(Method::GET, "/networks", None).await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if a.format == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if a.quiet {
                for n in &list {
                    println!("{}", short(&n["Id"]));
                }
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|n| {
                        vec![
                            short(&n["Id"]),
                            s(&n["Name"]),
                            s(&n["Driver"]),
                            s(&n["Scope"]),
                        ]
                    })
                    .collect();
                table::print(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
            }
        }
        NetworkCmd::Inspect { names, format } => {
            if format != "json" {
                bail!("--format {format:?}: only json is supported");
            }
            let mut out = Vec::new();
            for n in names {
                out.push(
                    c.ok(Method::GET, &format!("/networks/{}", seg(&n)), None)
                        .await?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCmd::Rm { names } => {
            let mut failed = false;
            for n in names {
                match c
                    .ok(Method::DELETE, &format!("/networks/{}", seg(&n)), None)
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some networks could not be removed");
            }
        }
        NetworkCmd::Connect(a) => {
            let mut opts = kv("driver-opt", &a.driver_opt)?;
            if !a.publish.is_empty() {
                let ports = plumb_core::ports::PORTMAP_OPTION.to_owned();
                opts.insert(ports, Value::String(a.publish.join(",")));
            }
            let body = json!({
                "Container": a.sandbox,
                "EndpointConfig": {
                    "IPAMConfig": {"IPv4Address": a.ip.unwrap_or_default(), "IPv6Address": a.ip6.unwrap_or_default()},
                    "Aliases": a.alias,
                    "MacAddress": a.mac_address.unwrap_or_default(),
                    "GwPriority": a.gw_priority,
                    "DriverOpts": opts,
                },
            });
            c.ok(
                Method::POST,
                &format!("/networks/{}/connect", seg(&a.network)),
                Some(&body),
            )
            .await?;
        }
        NetworkCmd::Disconnect {
            network,
            sandbox,
            force,
        } => {
            let body = json!({"Container": sandbox, "Force": force});
            c.ok(
                Method::POST,
                &format!("/networks/{}/disconnect", seg(&network)),
                Some(&body),
            )
            .await?;
        }
        NetworkCmd::Prune { .. } => {
            let v = c.ok(Method::POST, "/networks/prune", None).await?;
            let deleted = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                for d in deleted {
                    println!("{}", s(&d));
                }
            }
        }
    }
    Ok(())
}

/// A JSON string value, or "".
pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn short(v: &Value) -> String {
    s(v).chars().take(12).collect()
}
