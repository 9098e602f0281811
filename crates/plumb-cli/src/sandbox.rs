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
}

/// Creates a sandbox; returns its inspect JSON.
pub async fn create(c: &Client, a: &CreateArgs) -> anyhow::Result<Value> {
    let body = json!({
        "Name": a.name,
        "Hostname": a.opts.hostname.clone().unwrap_or_default(),
        "HostMode": a.host_network,
        "Dns": a.opts.dns,
        "DnsSearch": a.opts.dns_search,
        "DnsOptions": a.opts.dns_option,
        "ExtraHosts": a.opts.add_host,
        "Ports": a.opts.publish,
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
