//! Several hosts on one wire: an underlay (a bridge in a namespace of its own, each test host
//! attached by a veth with its own address, like NICs on a switch) and etcd, from Debian's
//! `etcd-server`, running inside the underlay namespace, one member or three.

use crate::host::{run_cmd, TestHost};
use crate::{unique_tag, NS_PREFIX, SWEEP, TEST_ROOT};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The underlay's subnet: `10.98.0.0/24`, the underlay namespace itself at `.1`.
pub const UNDERLAY_PREFIX: &str = "10.98.0";

/// Name of a host's underlay interface (what a NIC would be called).
pub const UNDERLAY_IF: &str = "ens5";

/// A switch the test hosts plug into, with its own namespace.
pub struct Underlay {
    /// The underlay's namespace (holds the bridge `ul0` at `10.98.0.1/24`).
    pub ns: String,
    attached: usize,
}

impl Underlay {
    /// Creates the namespace and its bridge.
    pub fn new() -> Self {
        SWEEP.call_once(crate::sweep);
        let ns = format!("{NS_PREFIX}{}", unique_tag());
        let o = run_cmd(Command::new("ip").args(["netns", "add", &ns]));
        assert!(o.ok(), "ip netns add {ns}: {}", o.stderr);
        let u = Underlay { ns, attached: 0 };
        u.sh(&format!(
            "ip link set lo up && ip link add ul0 type bridge && ip addr add {UNDERLAY_PREFIX}.1/24 dev ul0 && ip link set ul0 up"
        ));
        u
    }

    /// Runs a shell script in the underlay namespace and asserts it succeeds.
    pub fn sh(&self, script: &str) -> String {
        let o = run_cmd(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, "sh", "-c"])
                .arg(script),
        );
        assert!(o.ok(), "underlay: {script}: {}", o.stderr);
        o.stdout
    }

    /// Plugs `host` in: a veth `ens5` in the host with `10.98.0.<n>/24`, its peer on the
    /// bridge. Returns the host's underlay address.
    pub fn attach(&mut self, host: &TestHost) -> String {
        self.attached += 1;
        let n = self.attached + 10;
        let addr = format!("{UNDERLAY_PREFIX}.{n}");
        self.sh(&format!(
            "ip link add u{n} type veth peer name {UNDERLAY_IF} netns {hns} && ip link set u{n} master ul0 up",
            hns = host.ns
        ));
        let o = host.sh(&format!(
            "ip addr add {addr}/24 dev {UNDERLAY_IF} && ip link set {UNDERLAY_IF} up"
        ));
        assert!(
            o.ok(),
            "addressing the underlay of {}: {}",
            host.ns,
            o.stderr
        );
        addr
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        crate::sweep::kill_in_netns(&self.ns);
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// One etcd member process.
struct Member {
    name: String,
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
}

/// etcd running in a namespace: one member, or three on ports 2379/2381/2383.
pub struct Etcd {
    ns: String,
    dir: PathBuf,
    members: Vec<Member>,
    /// Client endpoints (`IP:PORT`), one per member.
    pub endpoints: Vec<String>,
    /// etcdctl's TLS flags, when clients need them.
    tls: Option<Vec<String>>,
}

impl Etcd {
    /// Starts `members` etcd members listening on `ip` inside `ns` and waits until the
    /// cluster answers.
    pub fn start(ns: &str, ip: &str, members: usize) -> Self {
        Self::start_opt(ns, ip, members, None)
    }

    /// One member serving clients over TLS with `pki`'s server certificate, and requiring
    /// client certificates signed by its CA.
    pub fn start_tls(ns: &str, ip: &str, pki: &Pki) -> Self {
        Self::start_opt(ns, ip, 1, Some(pki))
    }

    fn start_opt(ns: &str, ip: &str, members: usize, pki: Option<&Pki>) -> Self {
        let bin = "etcd";
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
            .unwrap_or(false);
        assert!(
            found,
            "etcd not found: install Debian's etcd-server package (scripts/deps.sh does)"
        );
        let dir = PathBuf::from(TEST_ROOT).join(format!("{}-etcd", unique_tag()));
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
        let client = |i: usize| format!("{ip}:{}", 2379 + 2 * i);
        let peer = |i: usize| format!("http://{ip}:{}", 2380 + 2 * i);
        let cluster: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={}", peer(i)))
            .collect();
        let scheme = if pki.is_some() { "https" } else { "http" };
        let mut etcd = Etcd {
            ns: ns.to_owned(),
            dir: dir.clone(),
            members: Vec::new(),
            endpoints: (0..members).map(client).collect(),
            tls: pki.map(|p| {
                vec![
                    format!("--cacert={}", p.ca.display()),
                    format!("--cert={}", p.client_cert.display()),
                    format!("--key={}", p.client_key.display()),
                ]
            }),
        };
        for (i, name) in names.iter().enumerate() {
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", dir.join(name).display()),
                format!("--listen-client-urls={scheme}://{}", client(i)),
                format!("--advertise-client-urls={scheme}://{}", client(i)),
                format!("--listen-peer-urls={}", peer(i)),
                format!("--initial-advertise-peer-urls={}", peer(i)),
                format!("--initial-cluster={}", cluster.join(",")),
                "--initial-cluster-state=new".to_owned(),
                "--initial-cluster-token=plumb-test".to_owned(),
                "--heartbeat-interval=50".to_owned(),
                "--election-timeout=500".to_owned(),
                "--logger=zap".to_owned(),
                "--log-outputs=stderr".to_owned(),
            ];
            if let Some(p) = pki {
                args.extend([
                    format!("--cert-file={}", p.server_cert.display()),
                    format!("--key-file={}", p.server_key.display()),
                    format!("--trusted-ca-file={}", p.ca.display()),
                    "--client-cert-auth".to_owned(),
                ]);
            }
            etcd.members.push(Member {
                name: name.clone(),
                child: None,
                args,
                log: dir.join(format!("{name}.log")),
            });
        }
        for i in 0..members {
            etcd.start_member(i);
        }
        etcd.wait_healthy(&etcd.endpoints.clone());
        etcd
    }

    fn start_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "etcd member {} already running", m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("etcd")
            .args(&m.args)
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        m.child = Some(child);
    }

    /// Waits until every endpoint in `endpoints` reports healthy.
    fn wait_healthy(&self, endpoints: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.etcdctl(endpoints, &["endpoint", "health"]);
            if o.ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within 30 s: {}\n{}",
                o.stderr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs etcdctl (API v3) against `endpoints` inside the namespace.
    pub fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> crate::CmdOutput {
        run_cmd(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.ns))
                .arg("etcdctl")
                .arg(format!("--endpoints={}", endpoints.join(",")))
                .arg("--dial-timeout=1s")
                .arg("--command-timeout=2s")
                .args(self.tls.iter().flatten())
                .args(args)
                .env("ETCDCTL_API", "3"),
        )
    }

    /// The `--cluster-store` value for plumbd: `etcd://IP:PORT,...`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops every member (SIGKILL): the cluster store is unreachable.
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Starts every stopped member again (with its data) and waits until healthy.
    pub fn resume(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.start_member(i);
            }
        }
        self.wait_healthy(&self.endpoints.clone());
    }

    /// The members' logs, for failure messages.
    pub fn log(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ---\n{}", m.name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a thread that entered the network namespace `ns` (sockets it opens, and the
/// threads it starts, live there), and returns its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace file we hold open; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Hosts on one underlay with etcd, each running plumbd with the cluster store.
pub struct TestCluster {
    /// The hosts, named `node1`, `node2`, ... in the cluster.
    pub hosts: Vec<TestHost>,
    /// The cluster store.
    pub etcd: Etcd,
    /// Each host's underlay address, in the order of `hosts`.
    pub addrs: Vec<String>,
    /// The wire (dropped last).
    pub underlay: Underlay,
}

impl TestCluster {
    /// `n` furnished hosts on one underlay with a one-member etcd; plumbd in each runs with
    /// `--cluster-store`, `--cluster-advertise ens5` and `--cluster-node-ttl ttl`.
    pub fn start(n: usize, ttl: &str) -> Self {
        Self::start_with(n, ttl, 1)
    }

    /// Like [`TestCluster::start`] with an etcd of `members` members (1 or 3).
    pub fn start_with(n: usize, ttl: &str, members: usize) -> Self {
        let mut underlay = Underlay::new();
        let etcd = Etcd::start(&underlay.ns, &format!("{UNDERLAY_PREFIX}.1"), members);
        let mut hosts = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..n {
            let mut h = TestHost::new();
            h.furnish();
            addrs.push(underlay.attach(&h));
            let name = format!("node{}", i + 1);
            h.set_daemon_args(&[
                "--cluster-store",
                &etcd.url(),
                "--cluster-advertise",
                UNDERLAY_IF,
                "--cluster-node-ttl",
                ttl,
                "--node-name",
                &name,
            ]);
            h.start();
            hosts.push(h);
        }
        TestCluster {
            hosts,
            etcd,
            addrs,
            underlay,
        }
    }
}

/// Creates an attachable overlay network through `h`'s API.
pub fn create_overlay(h: &TestHost, name: &str, subnet: &str) {
    let (st, body) = h.api(
        "POST",
        "/networks/create",
        Some(
            &serde_json::json!({"Name": name, "Driver": "overlay", "Attachable": true,
                     "IPAM": {"Config": [{"Subnet": subnet}]}}),
        ),
    );
    assert_eq!(st, 201, "{body}\n{}", h.log());
}

/// The FDB entries with a remote tunnel end and the neighbour entries of every overlay
/// network's VXLAN device on `h`, as `bridge fdb` and `ip neigh` print them (empty when the
/// host keeps no namespace for any overlay network).
pub fn tunnel_entries(h: &TestHost) -> String {
    let dir = h.dir.join("run/overlay");
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            let o = h.sh(&format!(
                "nsenter --net={p} bridge fdb show dev vxlan0 2>/dev/null | grep dst; nsenter --net={p} ip neigh show dev vxlan0 2>/dev/null",
                p = p.display()
            ));
            out.push_str(&o.stdout);
        }
    }
    out
}

/// A throwaway PKI made with the openssl command: a CA, a server certificate for an IP
/// address, and a client certificate, all signed by the CA.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// The client's certificate.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
    dir: PathBuf,
}

impl Pki {
    /// Makes the files in a directory of their own, the server certificate valid for `ip`.
    pub fn new(ip: &str) -> Self {
        let dir = PathBuf::from(TEST_ROOT).join(format!("{}-pki", unique_tag()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let script = format!(
            "set -e; cd {d}; \
             openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=plumb-test-ca -keyout ca.key -out ca.pem 2>/dev/null; \
             openssl req -newkey rsa:2048 -nodes -subj /CN=etcd -keyout server.key -out server.csr 2>/dev/null; \
             printf 'subjectAltName=IP:{ip}\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext; \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null; \
             openssl req -newkey rsa:2048 -nodes -subj /CN=plumbd -keyout client.key -out client.csr 2>/dev/null; \
             printf 'extendedKeyUsage=clientAuth\\n' > client.ext; \
             openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null"
        );
        let o = run_cmd(Command::new("sh").arg("-c").arg(&script));
        assert!(
            o.ok(),
            "making test certificates with openssl: {}",
            o.stderr
        );
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            dir,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
