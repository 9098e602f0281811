//! Plugin processes inside a test host's namespace: the example plugins of `examples/plugins`
//! (Python, standard library only) and the misbehaving one of `tests/plugins`, each with its
//! socket in the host's plugin directory and its calls logged as JSON lines.

use crate::host::TestHost;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root (examples and test plugins live there).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A plugin process; killed when dropped (the host's teardown kills it too).
pub struct PluginProc {
    /// Its name (the socket's base name).
    pub name: String,
    /// Its socket.
    pub socket: PathBuf,
    /// Its call log (JSON lines: call, request, status, answer).
    pub log: PathBuf,
    /// Its state file.
    pub state: PathBuf,
    script: PathBuf,
    ns: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl PluginProc {
    /// Starts `script` (relative to the repository root) as plugin `name` in `host`.
    pub fn start(host: &TestHost, script: &str, name: &str) -> Self {
        Self::start_with(host, script, name, &[])
    }

    /// As [`PluginProc::start`], with environment variables.
    pub fn start_with(host: &TestHost, script: &str, name: &str, env: &[(&str, &str)]) -> Self {
        let mut p = PluginProc {
            name: name.to_owned(),
            socket: host.plugin_dir().join(format!("{name}.sock")),
            log: host.dir.join(format!("{name}.calls.jsonl")),
            state: host.dir.join(format!("{name}.state.json")),
            script: repo_root().join(script),
            ns: host.ns.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        p.run();
        p
    }

    /// Starts the process (again) and waits for its socket.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "plugin {} already running", self.name);
        let _ = std::fs::remove_file(&self.socket);
        let err = std::fs::File::create(self.log.with_extension("stderr")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("python3")
            .arg(&self.script)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--log")
            .arg(&self.log)
            .arg("--state")
            .arg(&self.state)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting python3 {}: {e} (install python3)",
                    self.script.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "plugin {} did not create {} within 10 s: {}",
                self.name,
                self.socket.display(),
                std::fs::read_to_string(self.log.with_extension("stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The calls logged so far, in order: (call, request, status).
    pub fn calls(&self) -> Vec<(String, serde_json::Value, u64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["call"].as_str().unwrap_or_default().to_owned(),
                    v["request"].clone(),
                    v["status"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The names of the calls logged so far, in order.
    pub fn call_names(&self) -> Vec<String> {
        self.calls().into_iter().map(|(c, _, _)| c).collect()
    }

    /// Forgets the calls logged so far.
    pub fn clear_log(&self) {
        let _ = std::fs::write(&self.log, "");
    }
}

impl Drop for PluginProc {
    fn drop(&mut self) {
        self.kill();
    }
}
