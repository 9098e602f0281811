//! `plumb plugin`: the network and IPAM plugins plumbd finds, what they implement, their
//! address and state.

use crate::client::Client;
use crate::table;
use clap::Subcommand;
use hyper::Method;
use serde_json::Value;

/// Plugin subcommands.
#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// List the plugins installed or in use.
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show one plugin as JSON.
    Inspect {
        /// The plugin's name.
        name: String,
    },
}

/// Runs a plugin subcommand.
pub async fn run(c: &Client, cmd: PluginCmd) -> anyhow::Result<()> {
    let v = c.ok(Method::GET, "/plumb/v1/plugins", None).await?;
    let list = v.as_array().cloned().unwrap_or_default();
    match cmd {
        PluginCmd::Ls { format } => {
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if format != "table" {
                anyhow::bail!("--format {format:?}: use table or json");
            }
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    let implements: Vec<String> = p["Implements"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect())
                        .unwrap_or_default();
                    vec![
                        s(&p["Name"]),
                        implements.join(","),
                        s(&p["Addr"]),
                        s(&p["State"]),
                    ]
                })
                .collect();
            table::print(&["NAME", "IMPLEMENTS", "ADDRESS", "STATE"], &rows);
        }
        PluginCmd::Inspect { name } => {
            let Some(p) = list.iter().find(|p| p["Name"] == name.as_str()) else {
                anyhow::bail!("plugin {name} not found");
            };
            println!("{}", serde_json::to_string_pretty(p)?);
        }
    }
    Ok(())
}
