//! plumbd: opens the store, reconciles the kernel with it, serves the API on a unix socket.

mod dns;
mod orphans;

use anyhow::{bail, Context};
use clap::Parser;
use plumb_core::ipam::DefaultPool;
use plumb_core::{Config, Controller};
use plumb_drivers::bridge::BridgeDriver;
use plumb_drivers::lower::{Flavor, LowerDriver};
use plumb_drivers::overlay::OverlayDriver;
use plumb_drivers::passive::PassiveDriver;
use plumb_linux::files::ResolvConf;
use plumb_linux::namespaces::Namespaces;
use plumb_linux::sandbox::LinuxSandboxOs;
use plumb_linux::{nft, sysctl};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// jemalloc gives freed memory back to the OS: with glibc's allocator plumbd's RSS kept
/// growing over rounds of creating and removing 1,000 sandboxes (40 -> 83 MB over 10 rounds)
/// although nothing leaked (the same rounds stay flat under jemalloc; `plumb-bench soak`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings: freed pages go back to the OS within a second (the default waits
/// ten), purged by jemalloc's own background thread rather than on the request path.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(name = "plumbd", version, about = "Container networking daemon (CNM)")]
struct Args {
    /// Directory of persistent state.
    #[arg(long, default_value = "/var/lib/plumb")]
    root: PathBuf,
    /// Directory of namespace files, sandbox files and the socket.
    #[arg(long, default_value = "/run/plumb")]
    run_dir: PathBuf,
    /// API socket (default <run-dir>/plumb.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// State store: "local" (embedded redb file under --root).
    #[arg(long, default_value = "local")]
    store: String,
    /// Upstream DNS servers for sandboxes (default: the host's resolv.conf).
    #[arg(long)]
    dns: Vec<IpAddr>,
    /// Pools for networks created without a subnet: base=CIDR,size=N (repeatable).
    #[arg(long = "default-address-pool")]
    default_address_pool: Vec<String>,
    /// Bridge name of the predefined `bridge` network.
    #[arg(long, default_value = plumb_core::controller::DEFAULT_BRIDGE)]
    default_bridge: String,
    /// Do not run the embedded resolver: sandboxes get the upstream servers in resolv.conf.
    #[arg(long)]
    no_embedded_dns: bool,
    /// The host's resolv.conf.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Cluster store for global networks (overlay): etcd://HOST:PORT[,HOST:PORT...].
    #[arg(long)]
    cluster_store: Option<String>,
    /// Where other hosts reach this one (tunnel end): an address, or an interface whose
    /// first IPv4 address is taken. A `:port` suffix (Docker's form) is accepted and ignored.
    #[arg(long)]
    cluster_advertise: Option<String>,
    /// Cluster store options: kv.cacertfile=PATH, kv.certfile=PATH, kv.keyfile=PATH
    /// (repeatable, or comma-separated).
    #[arg(long = "cluster-store-opt")]
    cluster_store_opt: Vec<String>,
    /// How long this node counts as alive without renewing its lease (e.g. 10s, 3s).
    #[arg(long, default_value = "10s")]
    cluster_node_ttl: String,
    /// This node's name in the cluster (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Where plugins are looked for (repeatable; replaces the defaults: /run/docker/plugins,
    /// <run-dir>/plugins, /etc/docker/plugins, /etc/plumb/plugins, /usr/lib/docker/plugins).
    #[arg(long = "plugin-dir")]
    plugin_dir: Vec<PathBuf>,
    /// How long a plugin may take to answer one call.
    #[arg(long, default_value = "10s")]
    plugin_timeout: String,
    /// How long a plugin that is not installed yet is waited for when first named (Docker
    /// waits about 15 s).
    #[arg(long, default_value = "15s")]
    plugin_wait: String,
}

/// Parses a duration written as `<n>s` or `<n>ms`.
fn parse_duration(flag: &str, v: &str) -> anyhow::Result<std::time::Duration> {
    let d = if let Some(ms) = v.strip_suffix("ms") {
        ms.parse::<u64>().ok().map(std::time::Duration::from_millis)
    } else {
        v.strip_suffix('s')
            .unwrap_or(v)
            .parse::<u64>()
            .ok()
            .map(std::time::Duration::from_secs)
    };
    match d {
        Some(d) if d >= std::time::Duration::from_secs(1) => Ok(d),
        _ => bail!("{flag} {v:?}: give a duration of at least 1s, such as 10s"),
    }
}

/// `--plugin-wait`: a duration, where 0s means "do not wait".
fn parse_wait(v: &str) -> anyhow::Result<std::time::Duration> {
    if v == "0" || v == "0s" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration("--plugin-wait", v)
}

/// The plugin listing as the API answers it.
fn plugins_json(list: &[plumb_plugin::PluginInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        list.iter()
            .map(|p| {
                serde_json::json!({
                    "Name": p.name,
                    "Addr": p.addr,
                    "Implements": p.implements,
                    "State": p.state,
                })
            })
            .collect(),
    )
}

/// The cluster side of the daemon: the store, this node, and its underlay's MTU.
struct ClusterSetup {
    cluster: plumb_core::controller::Cluster,
    underlay_mtu: u32,
}

/// Connects to the cluster store and works out this node's address.
async fn cluster_setup(args: &Args, ns: &Namespaces) -> anyhow::Result<Option<ClusterSetup>> {
    let Some(url) = &args.cluster_store else {
        if args.cluster_advertise.is_some() {
            bail!("--cluster-advertise needs --cluster-store");
        }
        return Ok(None);
    };
    let Some(rest) = url.strip_prefix("etcd://") else {
        bail!("--cluster-store {url:?}: only etcd://HOST:PORT[,HOST:PORT...] is supported");
    };
    let endpoints: Vec<String> = rest
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        bail!("--cluster-store {url:?}: name at least one etcd member");
    }
    let mut opts = plumb_store::EtcdOptions::new(endpoints);
    for kv in args.cluster_store_opt.iter().flat_map(|o| o.split(',')) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--cluster-store-opt {kv:?}: expected key=value"))?;
        match k {
            "kv.cacertfile" => opts.ca_file = Some(v.into()),
            "kv.certfile" => opts.cert_file = Some(v.into()),
            "kv.keyfile" => opts.key_file = Some(v.into()),
            other => bail!(
                "--cluster-store-opt {other}: unknown option (kv.cacertfile, kv.certfile, kv.keyfile)"
            ),
        }
    }
    let Some(adv) = &args.cluster_advertise else {
        bail!(
            "--cluster-store needs --cluster-advertise IP|IFACE (where other hosts reach this one)"
        );
    };
    let adv = match adv.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => h,
        _ => adv.as_str(),
    };
    let host = ns.host();
    let links = host.links().await?;
    let addrs = host.addresses().await?;
    let (addr, index) = match adv.parse::<IpAddr>() {
        Ok(ip) => {
            let index = addrs.iter().find(|(_, a)| a.addr() == ip).map(|(i, _)| *i);
            if index.is_none() {
                bail!("--cluster-advertise {ip}: no interface of this host has that address");
            }
            (ip, index)
        }
        Err(_) => {
            let Some(l) = links.iter().find(|l| l.name == adv) else {
                bail!("--cluster-advertise {adv}: no such interface or address");
            };
            let ip = addrs
                .iter()
                .filter(|(i, _)| *i == l.index)
                .map(|(_, a)| a.addr())
                .find(IpAddr::is_ipv4)
                .with_context(|| {
                    format!("--cluster-advertise {adv}: the interface has no IPv4 address")
                })?;
            (ip, Some(l.index))
        }
    };
    let underlay_mtu = links
        .iter()
        .find(|l| Some(l.index) == index)
        .and_then(|l| l.mtu)
        .unwrap_or(1500);
    let name = match &args.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname (give --node-name)")?
            .trim()
            .to_owned(),
    };
    plumb_core::model::validate_name("--node-name", &name)?;
    let ttl = parse_duration("--cluster-node-ttl", &args.cluster_node_ttl)?;
    let store = plumb_store::EtcdStore::connect(opts).await?;
    Ok(Some(ClusterSetup {
        cluster: plumb_core::controller::Cluster {
            store: Arc::new(store),
            node: plumb_core::model::NodeRef { name, addr },
            ttl,
        },
        underlay_mtu,
    }))
}

/// Raises the open-file limit to its hard maximum: every sandbox holds a netlink socket.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Grows the file table to `FD_TABLE` entries while the process is still single-threaded.
/// In a threaded process every growth of the table waits for an RCU grace period
/// (milliseconds); without this, the connect or publish that crosses 1,024 or 2,048 open
/// files (resolver sockets, held ports, namespace sockets) would pay for it.
fn reserve_fd_table() {
    const FD_TABLE: libc::c_int = 8192;
    use nix::sys::resource::{getrlimit, Resource};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let top = libc::c_int::try_from(soft.min(FD_TABLE as u64)).unwrap_or(FD_TABLE) - 1;
    // SAFETY: duplicates stderr onto a descriptor number nobody uses yet, then closes it.
    unsafe {
        if libc::fcntl(top, libc::F_GETFD) == -1 && libc::dup2(2, top) == top {
            libc::close(top);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_nofile();
    reserve_fd_table();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .context("invalid --log-level")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.store != "local" {
        bail!(
            "--store {:?}: only the embedded store (\"local\") is available in this build",
            args.store
        );
    }
    let mut pools = Vec::new();
    for p in &args.default_address_pool {
        pools.push(DefaultPool::parse(p)?);
    }
    // Each family's pools replace that family's defaults only (an IPv6 base alone keeps
    // Docker's IPv4 pools; the unique-local IPv6 default is added where no IPv6 base is given).
    if !pools.iter().any(|p| p.base.addr().is_ipv4()) {
        pools.extend(plumb_core::ipam::docker_default_pools());
    }
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("creating {}", args.root.display()))?;
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("creating {}", args.run_dir.display()))?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| args.run_dir.join("plumb.sock"));
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        bail!("another plumbd is serving {}", socket.display());
    }

    let store = Arc::new(plumb_store::RedbStore::open(&args.root.join("state.redb"))?);
    sysctl::set(None, "net.ipv4.ip_forward", "1").await?;
    if let Err(e) = sysctl::set(None, "net.ipv6.conf.all.forwarding", "1").await {
        tracing::warn!(error = %e, "IPv6 forwarding not enabled");
    }
    tokio::task::spawn_blocking(nft::load_tables).await??;

    let mut resolv = std::fs::read_to_string(&args.resolv_conf)
        .map(|t| ResolvConf::parse(&t))
        .unwrap_or_default();
    if !args.dns.is_empty() {
        resolv.nameservers = args.dns.clone();
    }
    let upstreams: Vec<std::net::SocketAddr> = resolv
        .nameservers
        .iter()
        .take(plumb_dns::upstream::MAX_SERVERS)
        .map(|ip| std::net::SocketAddr::new(*ip, 53))
        .collect();
    let ns = Arc::new(Namespaces::new().await?);
    let embedded = !args.no_embedded_dns;
    let os = Arc::new(LinuxSandboxOs::new(&args.run_dir, ns.clone(), resolv, embedded).await?);
    let cluster = cluster_setup(&args, &ns).await?;
    if let Some(c) = &cluster {
        tracing::info!(
            node = %c.cluster.node.name,
            addr = %c.cluster.node.addr,
            underlay_mtu = c.underlay_mtu,
            "member of a cluster"
        );
    }
    let mut drivers: Vec<Arc<dyn plumb_core::driver::NetworkDriver>> = vec![
        Arc::new(BridgeDriver::new(ns.clone())),
        Arc::new(LowerDriver::new(Flavor::MacVlan, ns.clone())),
        Arc::new(LowerDriver::new(Flavor::IpVlan, ns.clone())),
        Arc::new(PassiveDriver::host()),
        Arc::new(PassiveDriver::null()),
    ];
    // The overlay driver is always there, so that asking for an overlay network without a
    // cluster store says what is missing instead of "no such driver".
    let (local, mtu) = cluster
        .as_ref()
        .map(|c| (c.cluster.node.addr, c.underlay_mtu))
        .unwrap_or((IpAddr::from([0, 0, 0, 0]), 1500));
    drivers.push(Arc::new(
        OverlayDriver::new(ns.clone(), &args.run_dir, local, mtu)
            .await
            .map_err(|e| anyhow::anyhow!("overlay driver: {e}"))?,
    ));
    // The resolver reads the name index the controller maintains; both get the same one
    // before the controller starts (start-up attaches resolvers to restored sandboxes).
    let names = Arc::new(plumb_core::names::NameIndex::default());
    let dns_server = plumb_dns::DnsServer::new(names.clone(), upstreams);
    let discovery = if args.plugin_dir.is_empty() {
        plumb_plugin::Discovery::defaults(&args.run_dir)
    } else {
        plumb_plugin::Discovery::new(args.plugin_dir.clone())
    };
    let plugins = Arc::new(plumb_plugin::Plugins::new(
        plumb_plugin::manager::PluginSettings {
            discovery,
            call_timeout: parse_duration("--plugin-timeout", &args.plugin_timeout)?,
            wait: parse_wait(&args.plugin_wait)?,
        },
        ns.clone(),
    ));
    let config = Config {
        default_pools: pools,
        default_bridge: args.default_bridge.clone(),
        resolver: embedded.then(|| {
            Arc::new(dns::EmbeddedDns::new(dns_server.clone()))
                as Arc<dyn plumb_core::driver::SandboxResolver>
        }),
        names: Some(names),
        port_holder: Some(Arc::new(plumb_linux::host_ports::HostPorts::new())),
        resolvers: vec![Arc::new(plumb_plugin::manager::DriverPlugins(
            plugins.clone(),
        ))],
        ipams: Vec::new(),
        ipam_resolvers: vec![Arc::new(plumb_plugin::manager::IpamPlugins(
            plugins.clone(),
        ))],
        cluster: cluster.as_ref().map(|c| c.cluster.clone()),
    };
    let ctl = Arc::new(Controller::new(config, store, os, drivers).await?);
    if cluster.is_some() {
        // Global networks change under this daemon's feet: apply what other hosts commit.
        ctl.follow();
    }
    let dns_metrics = dns_server.metrics();
    let restores = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (ctl_m, restores_m) = (ctl.clone(), restores.clone());
    let metrics: plumb_api::TextFn = Arc::new(move || {
        let ports = ctl_m.published_ports();
        let restored = restores_m.load(std::sync::atomic::Ordering::Relaxed);
        let (recorded, done, pending) = ctl_m.repair_counts();
        format!(
            "{}# HELP plumb_published_ports Port mappings published now.\n# TYPE plumb_published_ports gauge\nplumb_published_ports {ports}\n# HELP plumb_firewall_restores_total Times plumb's nftables table was found gone and restored.\n# TYPE plumb_firewall_restores_total counter\nplumb_firewall_restores_total {restored}\n# HELP plumb_repairs_pending Failed undo steps waiting for a retry.\n# TYPE plumb_repairs_pending gauge\nplumb_repairs_pending {pending}\n# HELP plumb_repairs_recorded_total Undo steps that failed and were kept for a retry.\n# TYPE plumb_repairs_recorded_total counter\nplumb_repairs_recorded_total {recorded}\n# HELP plumb_repairs_completed_total Kept undo steps that a retry completed.\n# TYPE plumb_repairs_completed_total counter\nplumb_repairs_completed_total {done}\n",
            dns_metrics.render()
        )
    });

    // plumbd's own background tasks: tracked, and stopped on shutdown after the API has
    // finished the requests in flight.
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    heal_firewall(ctl.clone(), restores, &tasks, stop.clone())?;
    orphans::start(ctl.clone(), &tasks, stop.clone());
    retry_repairs(ctl.clone(), &tasks, stop.clone());

    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))?;
    let mut allowed = plumb_api::AllowedPeers {
        uids: vec![nix::unistd::geteuid().as_raw()],
        gids: Vec::new(),
    };
    if let Ok(Some(g)) = nix::unistd::Group::from_name("plumb") {
        let _ = nix::unistd::chown(&socket, None, Some(g.gid));
        allowed.gids.push(g.gid.as_raw());
    }
    let listener = plumb_api::PeerCheckedListener::new(listener, allowed);
    tracing::info!(socket = %socket.display(), "plumbd ready");
    let firewall: plumb_api::TextFn =
        Arc::new(|| nft::show().unwrap_or_else(|e| format!("cannot list the table: {e}\n")));
    let plugin_list: plumb_api::JsonFn = Arc::new(move || {
        let plugins = plugins.clone();
        Box::pin(async move { plugins_json(&plugins.list().await) })
    });
    plumb_api::serve(
        listener,
        ctl,
        Some(metrics),
        Some(firewall),
        Some(plugin_list),
        shutdown_signal(),
    )
    .await?;
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 5 s");
    }
    tracing::info!("plumbd stopped; kernel state left in place");
    Ok(())
}

/// Restores plumb's nftables table when someone flushes the ruleset or deletes the table.
fn heal_firewall(
    ctl: Arc<Controller>,
    restores: Arc<std::sync::atomic::AtomicU64>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    plumb_linux::nft_watch::watch(move || {
        // A full channel means a check is already pending.
        let _ = tx.try_send(());
    })?;
    tasks.spawn(async move {
        loop {
            let woke = tokio::select! {
                _ = stop.cancelled() => return,
                w = rx.recv() => w,
            };
            if woke.is_none() {
                return;
            }
            // Let a burst of changes settle, then look once.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            while rx.try_recv().is_ok() {}
            let present = tokio::task::spawn_blocking(nft::table_present).await;
            if !matches!(present, Ok(Ok(true))) {
                tracing::warn!(
                    "plumb's nftables table is gone (flushed from outside?): restoring it"
                );
                match tokio::task::spawn_blocking(nft::load_tables).await {
                    Ok(Ok(())) => {
                        ctl.reprogram().await;
                        restores.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "restoring the table failed"),
                    Err(e) => tracing::error!(error = %e, "restoring the table failed"),
                }
            }
        }
    });
    Ok(())
}

/// Retries failed undo steps every few seconds while some are pending.
fn retry_repairs(ctl: Arc<Controller>, tasks: &TaskTracker, stop: CancellationToken) {
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
            if ctl.repair_counts().2 > 0 {
                let left = ctl.repair().await;
                if left > 0 {
                    tracing::warn!(pending = left, "repair items still pending");
                }
            }
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
