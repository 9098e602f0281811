//! plumb: drives plumbd over its socket (networks, sandboxes) and runs commands inside
//! sandboxes.

mod client;
mod events;
mod exec;
mod network;
mod node;
mod plugin;
mod sandbox;
mod table;

use clap::{Parser, Subcommand};
use client::Client;

/// Command-line interface.
#[derive(Parser, Debug)]
#[command(name = "plumb", version, about = "Container networking, CNM style")]
struct Cli {
    /// plumbd socket (unix:///path).
    #[arg(
        short = 'H',
        long = "host",
        env = "PLUMB_HOST",
        default_value = "unix:///run/plumb/plumb.sock",
        global = true
    )]
    host: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage sandboxes.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCmd),
    /// Run a command inside an existing sandbox.
    Exec(exec::ExecArgs),
    /// Run a command in a new sandbox connected to networks; remove the sandbox after.
    Run(exec::RunArgs),
    /// Stream events (network create, connect, disconnect, destroy; sandbox create, destroy).
    Events(events::EventsArgs),
    /// plumb's firewall.
    #[command(subcommand)]
    Firewall(FirewallCmd),
    /// The hosts of the cluster (with --cluster-store).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Network and IPAM plugins (Docker's plugin protocol).
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
}

#[derive(Subcommand, Debug)]
enum FirewallCmd {
    /// Print plumb's nftables table.
    Show,
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Run(_)) {
        // A reader that goes away early (`| head`, `| grep -q`) ends plumb quietly, as it ends
        // other Unix tools; Rust ignores SIGPIPE by default and print! would panic instead.
        // `run` keeps ignoring it: it must remove its sandbox whatever happens to stdout.
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plumb: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        let client = Client::new(&cli.host)?;
        match cli.cmd {
            Cmd::Network(c) => network::run(&client, c).await.map(|_| 0),
            Cmd::Sandbox(c) => sandbox::run(&client, c).await.map(|_| 0),
            Cmd::Exec(a) => exec::exec(&client, a).await,
            Cmd::Run(a) => exec::run(&client, a).await,
            Cmd::Events(a) => events::run(&client, a).await.map(|_| 0),
            Cmd::Node(c) => node::run(&client, c).await.map(|_| 0),
            Cmd::Plugin(c) => plugin::run(&client, c).await.map(|_| 0),
            Cmd::Firewall(FirewallCmd::Show) => {
                let v = client
                    .ok(hyper::Method::GET, "/plumb/v1/firewall", None)
                    .await?;
                print!("{}", v.as_str().unwrap_or_default());
                Ok(0)
            }
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}
