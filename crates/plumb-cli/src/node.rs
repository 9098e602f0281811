//! `plumb node`: the hosts of the cluster this plumbd is part of.

use crate::client::Client;
use crate::table;
use clap::Subcommand;
use hyper::Method;

/// Node subcommands.
#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List the cluster's nodes, their addresses and whether they are alive.
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// Runs a node subcommand.
pub async fn run(c: &Client, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Ls { format } => {
            let v = c.ok(Method::GET, "/plumb/v1/nodes", None).await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    let status = if n["Alive"].as_bool() == Some(true) {
                        "up"
                    } else {
                        "down"
                    };
                    let me = if n["Self"].as_bool() == Some(true) {
                        " *"
                    } else {
                        ""
                    };
                    vec![
                        format!("{}{me}", s(&n["Name"])),
                        s(&n["Addr"]),
                        status.to_owned(),
                    ]
                })
                .collect();
            table::print(&["NAME", "ADDRESS", "STATUS"], &rows);
        }
    }
    Ok(())
}
