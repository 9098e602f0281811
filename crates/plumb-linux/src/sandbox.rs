//! [`SandboxOs`] on Linux: a bound network namespace per sandbox, with its files.

use crate::error::LinuxError;
use crate::files::{render_hosts, write_atomic, ResolvConf};
use crate::namespaces::Namespaces;
use crate::netns;
use async_trait::async_trait;
use ipnet::IpNet;
use plumb_core::driver::{DefaultRoute, SandboxOs};
use plumb_core::model::Sandbox;
use plumb_core::{BoxError, SandboxId};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sandboxes as network namespaces bound under `<run-dir>/netns`.
pub struct LinuxSandboxOs {
    run_dir: PathBuf,
    ns: Arc<Namespaces>,
    host_resolv: ResolvConf,
    embedded_dns: bool,
}

impl LinuxSandboxOs {
    /// Sets up `<run_dir>/netns` (a shared mount) and `<run_dir>/sandboxes`. With
    /// `embedded_dns`, sandboxes with their own stack get `nameserver 127.0.0.11`.
    pub async fn new(
        run_dir: &Path,
        ns: Arc<Namespaces>,
        host_resolv: ResolvConf,
        embedded_dns: bool,
    ) -> Result<Self, LinuxError> {
        netns::prepare_dir(run_dir.join("netns")).await?;
        let files = run_dir.join("sandboxes");
        std::fs::create_dir_all(&files).map_err(|e| LinuxError::io("create", &files, e))?;
        Ok(LinuxSandboxOs {
            run_dir: run_dir.to_path_buf(),
            ns,
            host_resolv,
            embedded_dns,
        })
    }

    fn resolv_for(&self, sb: &Sandbox) -> ResolvConf {
        let mut r = if sb.spec.host_mode {
            self.host_resolv.clone()
        } else if self.embedded_dns {
            // The resolver inside the sandbox answers container names and forwards the rest
            // (to the sandbox's own --dns servers when it has some).
            ResolvConf {
                nameservers: vec![std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11))],
                search: self.host_resolv.search.clone(),
                options: vec!["ndots:0".to_owned()],
            }
        } else {
            ResolvConf::for_sandbox(&self.host_resolv)
        };
        if !sb.spec.dns.is_empty() && (sb.spec.host_mode || !self.embedded_dns) {
            r.nameservers = sb.spec.dns.clone();
        }
        if !sb.spec.dns_search.is_empty() {
            r.search = sb.spec.dns_search.clone();
        }
        if !sb.spec.dns_options.is_empty() {
            r.options.extend(sb.spec.dns_options.iter().cloned());
        }
        r
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LinuxError + 'a {
    move |e| LinuxError::io(op, path, e)
}

#[async_trait]
impl SandboxOs for LinuxSandboxOs {
    fn key_for(&self, sandbox: &SandboxId) -> String {
        self.run_dir
            .join("netns")
            .join(sandbox.as_str())
            .to_string_lossy()
            .into_owned()
    }

    fn dir_for(&self, sandbox: &SandboxId) -> String {
        self.run_dir
            .join("sandboxes")
            .join(sandbox.as_str())
            .to_string_lossy()
            .into_owned()
    }

    async fn check_adoptable(&self, path: &str) -> Result<(), String> {
        let p = Path::new(path);
        if !netns::is_netns(p) {
            return Err(format!("{path} is not a network namespace (a bind-mounted /proc/PID/ns/net, as runtimes make)"));
        }
        if netns::same_namespace(p, Path::new("/proc/self/ns/net")) {
            return Err(format!("{path} is plumbd's own network namespace"));
        }
        Ok(())
    }

    fn adopted_key(&self, sandbox: &SandboxId, path: &str) -> String {
        if path.starts_with("/proc/") {
            // Valid only while that process lives, and a later process may get its pid:
            // plumb binds its own handle.
            self.key_for(sandbox)
        } else {
            path.to_owned()
        }
    }

    async fn create(&self, sb: &Sandbox) -> Result<(), BoxError> {
        let key = PathBuf::from(&sb.key);
        match sb.spec.netns.as_deref() {
            None => netns::create(key.clone(), sb.spec.host_mode).await?,
            Some(src) if src != sb.key => netns::bind(PathBuf::from(src), key.clone()).await?,
            Some(_) => {}
        }
        if !netns::is_netns(&key) {
            return Err(format!("adopted namespace {} is gone", key.display()).into());
        }
        if !sb.spec.host_mode {
            let nl = self.ns.get(&key).await?;
            if let Some(lo) = nl.link("lo").await? {
                nl.set_up(lo.index, true).await?;
            }
        }
        let dir = PathBuf::from(&sb.dir);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let resolv = dir.join("resolv.conf");
        write_atomic(&resolv, &self.resolv_for(sb).render()).map_err(io("write", &resolv))?;
        let hostname = dir.join("hostname");
        write_atomic(&hostname, &format!("{}\n", sb.hostname())).map_err(io("write", &hostname))?;
        Ok(())
    }

    async fn exists(&self, sb: &Sandbox) -> bool {
        netns::is_netns(Path::new(&sb.key))
    }

    async fn delete(&self, sb: &Sandbox) -> Result<(), BoxError> {
        let key = PathBuf::from(&sb.key);
        self.ns.forget(&key);
        // An adopted namespace is its runtime's: only plumb's files go, and plumb's own
        // handle on it where it made one.
        if sb.spec.netns.as_deref() != Some(sb.key.as_str()) {
            netns::remove(key).await?;
        }
        match std::fs::remove_dir_all(&sb.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LinuxError::io("remove", &sb.dir, e).into()),
        }
    }

    async fn write_hosts(
        &self,
        sb: &Sandbox,
        entries: &[(IpAddr, Vec<String>)],
    ) -> Result<(), BoxError> {
        let mut all = entries.to_vec();
        for (name, ip) in &sb.spec.extra_hosts {
            all.push((*ip, vec![name.clone()]));
        }
        let path = Path::new(&sb.dir).join("hosts");
        write_atomic(&path, &render_hosts(&all)).map_err(io("write", &path))?;
        Ok(())
    }

    async fn set_default_route(
        &self,
        sb: &Sandbox,
        route: Option<&DefaultRoute>,
    ) -> Result<(), BoxError> {
        let nl = self.ns.get(Path::new(&sb.key)).await?;
        let index = match route {
            Some(r) => nl.link(&r.ifname).await?.map(|l| l.index),
            None => None,
        };
        match (route.and_then(|r| r.v4), index) {
            (Some(gw), Some(i)) => nl.replace_default(i, gw.into()).await?,
            _ => nl.del_default(false).await?,
        }
        match (route.and_then(|r| r.v6), index) {
            (Some(gw), Some(i)) => nl.replace_default(i, gw.into()).await?,
            _ => nl.del_default(true).await?,
        }
        Ok(())
    }

    async fn host_routes(&self) -> Result<Vec<IpNet>, BoxError> {
        Ok(self.ns.host().routed_prefixes().await?)
    }

    async fn sweep(&self, known: &[&Sandbox]) -> Result<(), BoxError> {
        let keep: std::collections::HashSet<&str> = known.iter().map(|s| s.id.as_str()).collect();
        for sub in ["netns", "sandboxes"] {
            let dir = self.run_dir.join(sub);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(name.as_str()) {
                    continue;
                }
                tracing::info!(sandbox = %name, "removing leftover sandbox {sub}");
                let path = entry.path();
                if sub == "netns" {
                    self.ns.forget(&path);
                    netns::remove(path).await?;
                } else {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        Ok(())
    }
}
