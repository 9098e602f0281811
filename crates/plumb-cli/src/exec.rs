//! `plumb exec` and `plumb run`: processes inside a sandbox's network namespace, with the
//! sandbox's resolv.conf, hosts and hostname in a private mount and UTS namespace.

use crate::client::{seg, Client};
use crate::network::s;
use crate::sandbox::{self, CreateArgs, SandboxOpts};
use anyhow::{bail, Context};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};

/// `exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Sandbox.
    sandbox: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Sandbox name (generated when absent).
    #[arg(long)]
    name: Option<String>,
    /// Network to connect (repeatable; default: bridge). `host` shares the host's stack.
    #[arg(long = "network", alias = "net")]
    networks: Vec<String>,
    /// Static IPv4 address on the first network.
    #[arg(long)]
    ip: Option<String>,
    /// Static IPv6 address on the first network.
    #[arg(long)]
    ip6: Option<String>,
    /// DNS alias on every network (repeatable).
    #[arg(long)]
    alias: Vec<String>,
    /// The sandbox's options.
    #[command(flatten)]
    opts: SandboxOpts,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Runs a command in an existing sandbox; returns its exit code.
pub async fn exec(c: &Client, a: ExecArgs) -> anyhow::Result<i32> {
    let v = sandbox::inspect(c, &a.sandbox).await?;
    spawn_in(&v, &a.cmd, true)
}

/// Runs a command in a new sandbox, then removes the sandbox; returns the command's exit code.
pub async fn run(c: &Client, a: RunArgs) -> anyhow::Result<i32> {
    let networks = if a.networks.is_empty() {
        vec!["bridge".to_owned()]
    } else {
        a.networks.clone()
    };
    let host_network = networks.iter().any(|n| n == "host");
    let create = CreateArgs {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| format!("run-{:08x}", rand::random::<u32>())),
        host_network,
        opts: a.opts.clone(),
    };
    let sb = sandbox::create(c, &create).await?;
    let id = s(&sb["Id"]);
    let result = async {
        for (i, net) in networks.iter().enumerate() {
            let (ip, ip6) = if i == 0 {
                (a.ip.clone().unwrap_or_default(), a.ip6.clone().unwrap_or_default())
            } else {
                (String::new(), String::new())
            };
            let body = json!({
                "Container": id,
                "EndpointConfig": {"IPAMConfig": {"IPv4Address": ip, "IPv6Address": ip6}, "Aliases": a.alias},
            });
            c.ok(Method::POST, &format!("/networks/{}/connect", seg(net)), Some(&body))
                .await
                .with_context(|| format!("connecting to network {net}"))?;
        }
        let sb = sandbox::inspect(c, &id).await?;
        // Ports given without a host port got a free one: say which before the command runs.
        if a.opts.publish.iter().any(|p| !sandbox::names_host_port(p)) {
            for line in sandbox::port_lines(&sb["Ports"], None)? {
                eprintln!("published {line}");
            }
        }
        spawn_in(&sb, &a.cmd, false)
    }
    .await;
    if let Err(e) = sandbox::remove(c, &id).await {
        eprintln!("Error: removing sandbox {}: {e}", create.name);
    }
    result
}

fn cstr(s: &str) -> anyhow::Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"))
}

/// Runs `cmd` inside the sandbox described by `sb` (its inspect JSON). With `replace`, plumb
/// becomes the command (exec: same pid, signals and exit status); otherwise it waits for the
/// command, which dies with plumb (PR_SET_PDEATHSIG), so `run` can clean up after it.
fn spawn_in(sb: &Value, cmd: &[String], replace: bool) -> anyhow::Result<i32> {
    let Some((prog, args)) = cmd.split_first() else {
        bail!("no command given");
    };
    let key = s(&sb["Key"]);
    let netns = std::fs::File::open(&key)
        .with_context(|| format!("opening sandbox namespace {key} (plumb exec needs root)"))?;
    let host_mode = sb["HostMode"].as_bool().unwrap_or(false);
    // Everything the child needs is allocated before fork: no allocation after it.
    let resolv_src = cstr(&s(&sb["ResolvConfPath"]))?;
    let hosts_src = cstr(&s(&sb["HostsPath"]))?;
    let resolv_dst = cstr("/etc/resolv.conf")?;
    let hosts_dst = cstr("/etc/hosts")?;
    let root = cstr("/")?;
    let hostname = s(&sb["Hostname"]).into_bytes();
    let ns_fd = netns.as_raw_fd();
    let mut command = std::process::Command::new(prog);
    command.args(args);
    // SAFETY: the closure only makes raw syscalls on data prepared above; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS) != 0 {
                return fail();
            }
            let null = std::ptr::null();
            if libc::mount(
                null,
                root.as_ptr(),
                null,
                libc::MS_REC | libc::MS_SLAVE,
                null as _,
            ) != 0
            {
                return fail();
            }
            let bind = |src: &CString, dst: &CString| {
                libc::mount(src.as_ptr(), dst.as_ptr(), null, libc::MS_BIND, null as _)
            };
            // A missing /etc/resolv.conf or /etc/hosts on the host is not fatal.
            let _ = bind(&resolv_src, &resolv_dst);
            if !host_mode {
                let _ = bind(&hosts_src, &hosts_dst);
                if libc::sethostname(hostname.as_ptr().cast(), hostname.len()) != 0 {
                    return fail();
                }
            }
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return fail();
            }
            if !replace && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return fail();
            }
            Ok(())
        });
    }
    if replace {
        // Only returns on failure.
        let e = command.exec();
        bail!("starting {prog}: {e}");
    }
    let status = command
        .status()
        .with_context(|| format!("starting {prog}"))?;
    drop(netns);
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
