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
    /// Seconds to wait after forwarding SIGINT/SIGTERM/SIGHUP before killing the command and
    /// everything it started.
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
    /// The sandbox's options.
    #[command(flatten)]
    opts: SandboxOpts,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Runs a command in an existing sandbox: plumb becomes the command (same pid, signals and
/// exit status).
pub async fn exec(c: &Client, a: ExecArgs) -> anyhow::Result<i32> {
    let v = sandbox::inspect(c, &a.sandbox).await?;
    let mut command = command_in(&v, &a.cmd, false)?;
    // Only returns on failure.
    let e = command.exec();
    bail!("starting {}: {e}", a.cmd[0]);
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
        // plumbd removes the sandbox if this process dies without doing so (kill -9).
        auto_remove: true,
        netns: None,
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
        run_in(&sb, &a.cmd, std::time::Duration::from_secs(a.stop_timeout)).await
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

/// Runs `cmd` in the sandbox `sb` (its inspect JSON) as the first process of a PID namespace
/// of its own: when it ends, every process it started ends with it. SIGINT, SIGTERM and
/// SIGHUP are forwarded to it; if it is still running `stop_timeout` after the first, it is
/// killed. If plumb itself dies, the command gets SIGKILL (PR_SET_PDEATHSIG). Returns the
/// command's exit code (128 + signal when a signal ended it).
async fn run_in(
    sb: &Value,
    cmd: &[String],
    stop_timeout: std::time::Duration,
) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut command = command_in(sb, cmd, true)?;
    let handler = |kind| signal(kind).context("installing signal handlers");
    let mut int = handler(SignalKind::interrupt())?;
    let mut term = handler(SignalKind::terminate())?;
    let mut hup = handler(SignalKind::hangup())?;
    // A thread of its own starts the command: after unshare(CLONE_NEWPID) its next child is
    // the first process of a new PID namespace, and the kernel refuses new threads to a
    // thread in that state, so this must not be a thread that spawns others. It waits for the
    // command and lives as long as it (PR_SET_PDEATHSIG follows the parent thread).
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (tx, mut done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        // SAFETY: unshare has no memory-safety preconditions.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            let _ = started_tx.send(Err(std::io::Error::last_os_error()));
            return;
        }
        match command.spawn() {
            Ok(mut child) => {
                let _ = started_tx.send(Ok(child.id()));
                let _ = tx.send(child.wait());
            }
            Err(e) => {
                let _ = started_tx.send(Err(e));
            }
        }
    });
    let pid = started
        .await
        .context("starting the command")?
        .with_context(|| format!("starting {} in a PID namespace of its own", cmd[0]))?
        as libc::pid_t;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        let forwarded = tokio::select! {
            r = &mut done => break r.context("waiting for the command")??,
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
            _ = sleep_until(kill_at) => libc::SIGKILL,
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, forwarded) };
        if kill_at.is_none() {
            kill_at = Some(tokio::time::Instant::now() + stop_timeout);
        }
    };
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The command `cmd` set up to start inside the sandbox described by `sb` (its inspect
/// JSON): its network namespace, a private mount namespace with the sandbox's resolv.conf and
/// hosts, a UTS namespace with its hostname. With `own_pids` (a child in a new PID namespace)
/// it also gets a /proc of its own and dies with its parent.
fn command_in(sb: &Value, cmd: &[String], own_pids: bool) -> anyhow::Result<std::process::Command> {
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
    let proc_dir = cstr("/proc")?;
    let proc_fs = cstr("proc")?;
    let hostname = s(&sb["Hostname"]).into_bytes();
    let mut command = std::process::Command::new(prog);
    command.args(args);
    // SAFETY: the closure only makes raw syscalls on data prepared above; it allocates nothing.
    // The namespace file stays open in the closure until the command starts.
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
            if own_pids {
                // ps and /proc/self show the command's own PID namespace; not fatal.
                let _ = libc::mount(
                    proc_fs.as_ptr(),
                    proc_dir.as_ptr(),
                    proc_fs.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    null as _,
                );
            }
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return fail();
            }
            if own_pids && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return fail();
            }
            Ok(())
        });
    }
    Ok(command)
}
