//! [`TestHost`]: a network namespace running plumbd, torn down on drop.

use crate::sweep::{kill_in_netns, unmount_under};
use crate::{bin_dir, unique_tag, NS_PREFIX, SWEEP, TEST_ROOT};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CmdOutput {
    /// True when the command exited 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl From<std::process::Output> for CmdOutput {
    fn from(out: std::process::Output) -> Self {
        CmdOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub(crate) fn run_cmd(cmd: &mut Command) -> CmdOutput {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
        .into()
}

/// Runs `ip` with `args` in the machine's namespace (only for creating and deleting the
/// test's own namespaces and moving links into them).
fn ip(args: &[&str]) {
    let o = run_cmd(Command::new("ip").args(args));
    assert!(o.ok(), "ip {}: {}", args.join(" "), o.stderr);
}

/// A throwaway host: a network namespace with plumbd running inside.
pub struct TestHost {
    /// Name of the host's network namespace (under /run/netns).
    pub ns: String,
    /// The host's directory (root, run dir, socket, logs).
    pub dir: PathBuf,
    /// plumbd's API socket.
    pub socket: PathBuf,
    daemon: Option<Child>,
    bins: PathBuf,
    extra_ns: Vec<String>,
    daemon_args: Vec<String>,
}

impl TestHost {
    /// Creates the namespace (loopback up) and the directory; plumbd is not started yet.
    pub fn new() -> Self {
        SWEEP.call_once(crate::sweep);
        let tag = unique_tag();
        let ns = format!("{NS_PREFIX}{tag}");
        let dir = PathBuf::from(TEST_ROOT).join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        ip(&["netns", "add", &ns]);
        let host = TestHost {
            socket: dir.join("plumb.sock"),
            ns,
            dir,
            daemon: None,
            bins: bin_dir(),
            extra_ns: Vec::new(),
            daemon_args: Vec::new(),
        };
        host.sh("ip link set lo up");
        // The run dir lives on tmpfs, as /run does on a real host.
        let run = host.dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let o = run_cmd(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=0755", "plumb-test"])
                .arg(&run),
        );
        assert!(o.ok(), "mount tmpfs on {}: {}", run.display(), o.stderr);
        // Upstream DNS of this host: a TEST-NET address inside the test's own namespaces.
        std::fs::write(
            host.dir.join("resolv.conf"),
            "nameserver 198.51.100.53\nsearch test.example\n",
        )
        .unwrap();
        host
    }

    /// Creates a host and starts plumbd in it.
    pub fn started() -> Self {
        let mut h = Self::new();
        h.start();
        h
    }

    /// Extra plumbd flags for the next starts.
    pub fn set_daemon_args(&mut self, args: &[&str]) {
        self.daemon_args = args.iter().map(|s| s.to_string()).collect();
    }

    /// Starts plumbd in the host's namespace and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "plumbd already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("plumbd.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(self.bins.join("plumbd"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--resolv-conf")
            .arg(self.dir.join("resolv.conf"))
            .args(self.plugin_args())
            .args(&self.daemon_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("plumbd exited ({st}) during start:\n{}", self.log());
            }
            if self.api("GET", "/_ping", None).0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plumbd did not answer within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host's own plugin directory (never the machine's /run/docker/plugins), short
    /// plugin deadlines and no wait for missing plugins, unless the test gives its own.
    fn plugin_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        let given = |f: &str| self.daemon_args.iter().any(|a| a == f);
        if !given("--plugin-dir") {
            v.push("--plugin-dir".into());
            v.push(self.plugin_dir().display().to_string());
        }
        // No waiting for a plugin that is not there (a test of unknown driver names must
        // not wait); the tests of late plugins set their own window.
        for (flag, value) in [("--plugin-wait", "0s"), ("--plugin-timeout", "3s")] {
            if !given(flag) {
                v.push(flag.into());
                v.push(value.into());
            }
        }
        v
    }

    /// Where this host's plugins put their sockets.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// Kills plumbd with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops plumbd with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The pid of the running plumbd.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// plumbd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("plumbd.log")).unwrap_or_default()
    }

    /// Runs the plumb CLI against this host's plumbd.
    pub fn plumb(&self, args: &[&str]) -> CmdOutput {
        run_cmd(
            Command::new(self.bins.join("plumb"))
                .arg("-H")
                .arg(format!("unix://{}", self.socket.display()))
                .args(args),
        )
    }

    /// Runs the CLI and returns stdout; panics with stderr when it fails.
    pub fn plumb_ok(&self, args: &[&str]) -> String {
        let o = self.plumb(args);
        assert!(
            o.ok(),
            "plumb {} failed ({}): {}",
            args.join(" "),
            o.code,
            o.stderr
        );
        o.stdout
    }

    /// Runs the CLI expecting failure; returns stderr.
    pub fn plumb_err(&self, args: &[&str]) -> String {
        let o = self.plumb(args);
        assert!(
            !o.ok(),
            "plumb {} should have failed but printed: {}",
            args.join(" "),
            o.stdout
        );
        o.stderr
    }

    /// Runs a shell command inside a sandbox (through `plumb exec`).
    pub fn in_sandbox(&self, sandbox: &str, script: &str) -> CmdOutput {
        self.plumb(&["exec", sandbox, "--", "sh", "-c", script])
    }

    /// Runs a shell command in the host's namespace.
    pub fn sh(&self, script: &str) -> CmdOutput {
        self.sh_in(&self.ns.clone(), script)
    }

    /// Runs a shell command in another of this test's namespaces.
    pub fn sh_in(&self, ns: &str, script: &str) -> CmdOutput {
        run_cmd(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .args(["sh", "-c", script]),
        )
    }

    /// Adds an "outside world" namespace linked to the host by a veth: the host gets
    /// 198.51.100.1/24 on `uplink` and a default route via the outside end, 198.51.100.2.
    /// Returns the outside namespace's name.
    pub fn add_outside(&mut self) -> String {
        let out = self.adopt_namespace("o");
        ip(&["netns", "add", &out]);
        let o = self.sh(&format!(
            "ip link add uplink type veth peer name eth0 netns /run/netns/{out} && \
             ip addr add 198.51.100.1/24 dev uplink && ip link set uplink up && \
             ip route add default via 198.51.100.2"
        ));
        assert!(o.ok(), "uplink: {}", o.stderr);
        let o = self.sh_in(
            &out,
            "ip link set lo up && ip addr add 198.51.100.2/24 dev eth0 && ip link set eth0 up",
        );
        assert!(o.ok(), "outside: {}", o.stderr);
        out
    }

    /// The name of a further namespace `<host ns>-<suffix>` that this host removes when
    /// dropped (and the sweep removes after a crash); the caller creates it.
    pub fn adopt_namespace(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.ns);
        self.extra_ns.push(name.clone());
        name
    }

    /// One HTTP request to plumbd's socket: (status, JSON body or Null).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        Self::api_on(&self.socket, method, path, body)
    }

    /// One HTTP request to the plumbd at `socket` (for threads that do not own the host).
    pub fn api_on(
        socket: &std::path::Path,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let Ok(mut s) = UnixStream::connect(socket) else {
            return (0, Value::Null);
        };
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: plumb\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{data}",
            data.len()
        );
        // A server may answer and close before reading a large body: still read its answer.
        let _ = s.write_all(req.as_bytes());
        let mut resp = Vec::new();
        if s.read_to_end(&mut resp).is_err() {
            return (0, Value::Null);
        }
        parse_response(&resp)
    }

    /// Furnishes the host as a real one is before plumbd starts: Docker's default bridge and
    /// a Docker-named network bridge (`br-` + 12 hex) with addresses and a Docker-style veth,
    /// a NIC-like link with addresses, a veth whose name looks like plumb's but that carries an
    /// address, and a foreign nftables table. [`TestHost::furnishings`] shows them all.
    pub fn furnish(&self) {
        let o = self.sh(
            "ip link add docker0 type bridge && ip addr add 192.0.2.1/25 dev docker0 && \
             ip link add br-0d0c4e7a11e5 type bridge && \
             ip addr add 192.0.2.129/25 dev br-0d0c4e7a11e5 && ip link set br-0d0c4e7a11e5 up && \
             ip link add vethd0c4e7a type veth peer name vethd0c4e7b && \
             ip link set vethd0c4e7a master br-0d0c4e7a11e5 && \
             ip link add nic0 type veth peer name nic0peer && \
             ip addr add 203.0.113.5/24 dev nic0 && ip -6 addr add 2001:db8:5::5/64 dev nic0 nodad && \
             ip link set nic0 up && ip link set nic0peer up && \
             ip link add pv0123456789ab type veth peer name pvpeer && \
             ip addr add 203.0.114.1/30 dev pv0123456789ab && \
             printf 'table inet mysite {\n chain input { type filter hook input priority 0; tcp dport 2222 drop; }\n}\n' | nft -f -",
        );
        assert!(o.ok(), "furnishing the host: {}", o.stderr);
    }

    /// What [`TestHost::furnish`] put there, as the kernel shows it now (links with their
    /// kind, master and addresses; the foreign table).
    pub fn furnishings(&self) -> String {
        let o = self.sh(
            "for l in docker0 br-0d0c4e7a11e5 vethd0c4e7a vethd0c4e7b nic0 nic0peer pv0123456789ab pvpeer; do \
               ip -o -d link show $l | awk '{print $2, $3}'; ip -o link show $l | grep -o 'master [^ ]*'; \
               ip -o -d link show $l | grep -o -E '(bridge|veth) '; \
               ip -o addr show dev $l | awk '{print $2, $3, $4}'; \
             done; nft list table inet mysite",
        );
        o.stdout + &o.stderr
    }

    /// The host's links (names), as `ip link` shows them.
    pub fn links(&self) -> Vec<String> {
        let o = self.sh("ip -o link show");
        let mut v: Vec<String> = o
            .stdout
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect();
        v.sort();
        v
    }
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses an HTTP/1.1 response (Content-Length or chunked body).
fn parse_response(resp: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(resp);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, Value::Null);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    let v = serde_json::from_str(&body).unwrap_or(if body.is_empty() {
        Value::Null
    } else {
        Value::String(body)
    });
    (status, v)
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.kill9();
        for ns in std::iter::once(self.ns.clone()).chain(self.extra_ns.clone()) {
            kill_in_netns(&ns);
        }
        unmount_under(&self.dir);
        for ns in std::iter::once(self.ns.clone()).chain(self.extra_ns.drain(..)) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
