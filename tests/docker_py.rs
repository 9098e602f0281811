//! docker-py, the Docker SDK for Python, against plumbd (in a venv the test creates).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::host;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A venv with docker-py, made once per machine under /tmp (pip needs PyPI).
fn venv() -> PathBuf {
    let dir = PathBuf::from("/tmp/plumb-docker-py-venv");
    let py = dir.join("bin/python");
    let ready = py.exists()
        && Command::new(&py)
            .args(["-c", "import docker"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ready {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 is needed");
        assert!(
            st.success(),
            "python3 -m venv failed (Debian: install python3-venv)"
        );
        let st = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "docker>=7,<8"])
            .status()
            .unwrap();
        assert!(
            st.success(),
            "pip install docker failed (PyPI unreachable?)"
        );
    }
    py
}

#[test]
fn docker_py_networks() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["sandbox", "create", "pyc"]);
    let _plugin = plumb_testkit::PluginProc::start(&h, "tests/plugins/misbehave.py", "both");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/docker_py_check.py");
    let out = Command::new(venv())
        .arg(script)
        .env("DOCKER_HOST", format!("unix://{}", h.socket.display()))
        .env("SANDBOX", "pyc")
        .env("PLUGIN", "both")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "docker-py checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
