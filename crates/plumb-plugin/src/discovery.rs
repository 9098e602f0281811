//! Where plugins are found, as Docker finds them: a socket `<dir>/<name>.sock` or
//! `<dir>/<name>/<name>.sock`, or a spec file `<name>.spec` (one URL: `unix://PATH` or
//! `tcp://HOST:PORT`) or `<name>.json` (`{"Name", "Addr"}`), also inside `<name>/`. The
//! directories are searched in order and the first hit wins.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginAddr {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address, `host:port`.
    Tcp(String),
}

impl fmt::Display for PluginAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            PluginAddr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Why a plugin's spec file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("plugin spec {path}: {reason}")]
pub struct SpecError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Docker's directories, then plumb's (`<run-dir>/plugins` goes between, given by the
/// daemon): sockets first, then spec files.
pub const DOCKER_SOCKET_DIR: &str = "/run/docker/plugins";
/// Docker's spec file directories.
pub const DOCKER_SPEC_DIRS: &[&str] = &["/etc/docker/plugins", "/usr/lib/docker/plugins"];
/// plumb's own spec and socket directory under /etc.
pub const PLUMB_ETC_DIR: &str = "/etc/plumb/plugins";

/// The directories plugins are looked for in.
#[derive(Debug, Clone)]
pub struct Discovery {
    dirs: Vec<PathBuf>,
}

/// True for a name that can be a plugin's: letters, digits, `.`, `_`, `-`, not starting
/// with a dot (no path can be made of it).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Discovery {
    /// Searches `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Discovery { dirs }
    }

    /// Docker's directories and plumb's: `/run/docker/plugins`, `<run_dir>/plugins`,
    /// `/etc/docker/plugins`, `/etc/plumb/plugins`, `/usr/lib/docker/plugins`.
    pub fn defaults(run_dir: &Path) -> Self {
        Discovery::new(vec![
            PathBuf::from(DOCKER_SOCKET_DIR),
            run_dir.join("plugins"),
            PathBuf::from(DOCKER_SPEC_DIRS[0]),
            PathBuf::from(PLUMB_ETC_DIR),
            PathBuf::from(DOCKER_SPEC_DIRS[1]),
        ])
    }

    /// The directories searched.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Where the plugin `name` listens, if it is installed; a spec file that cannot be read
    /// or says something unusable is an error.
    pub fn find(&self, name: &str) -> Result<Option<PluginAddr>, SpecError> {
        if !valid_name(name) {
            return Ok(None);
        }
        for dir in &self.dirs {
            for base in [dir.clone(), dir.join(name)] {
                let sock = base.join(format!("{name}.sock"));
                if is_socket(&sock) {
                    return Ok(Some(PluginAddr::Unix(sock)));
                }
                for ext in ["spec", "json"] {
                    let spec = base.join(format!("{name}.{ext}"));
                    if spec.is_file() {
                        return read_spec(&spec).map(Some);
                    }
                }
            }
        }
        Ok(None)
    }

    /// The names of every plugin installed now, sorted.
    pub fn scan(&self) -> Vec<String> {
        let mut names = Vec::new();
        for dir in &self.dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let path = e.path();
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                let name = if path.is_dir() {
                    Some(file.to_owned())
                } else {
                    file.strip_suffix(".sock")
                        .or_else(|| file.strip_suffix(".spec"))
                        .or_else(|| file.strip_suffix(".json"))
                        .map(str::to_owned)
                };
                if let Some(n) = name.filter(|n| valid_name(n)) {
                    if matches!(self.find(&n), Ok(Some(_))) {
                        names.push(n);
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Docker's `.json` spec.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonSpec {
    #[serde(default)]
    addr: String,
}

fn read_spec(path: &Path) -> Result<PluginAddr, SpecError> {
    let err = |reason: String| SpecError {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > 64 * 1024 {
        return Err(err("larger than 64 KiB".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let url = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<JsonSpec>(&text)
            .map_err(|e| err(format!("not a plugin spec: {e}")))?
            .addr
    } else {
        text.trim().to_owned()
    };
    parse_url(url.trim()).map_err(err)
}

/// Reads a plugin address URL: `unix:///path`, `tcp://host:port` (or `http://host:port`).
pub fn parse_url(url: &str) -> Result<PluginAddr, String> {
    if let Some(p) = url.strip_prefix("unix://") {
        if !p.starts_with('/') {
            return Err(format!("{url:?}: a unix socket path must be absolute"));
        }
        return Ok(PluginAddr::Unix(PathBuf::from(p)));
    }
    if let Some(hp) = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let hp = hp.trim_end_matches('/');
        let ok = hp
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(format!("{url:?}: expected tcp://HOST:PORT"));
        }
        return Ok(PluginAddr::Tcp(hp.to_owned()));
    }
    if url.starts_with("https://") {
        return Err(format!(
            "{url:?}: plugins over TLS are not supported; use a unix socket or tcp://"
        ));
    }
    Err(format!(
        "{url:?}: unknown protocol (expected unix:// or tcp://)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_specs_are_found_in_dockers_places_first_hit_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let d = Discovery::new(vec![a.path().into(), b.path().into()]);
        assert_eq!(d.find("weave").unwrap(), None);
        std::fs::write(b.path().join("weave.spec"), "tcp://127.0.0.1:9000\n").unwrap();
        assert_eq!(
            d.find("weave").unwrap(),
            Some(PluginAddr::Tcp("127.0.0.1:9000".into()))
        );
        std::fs::create_dir(a.path().join("weave")).unwrap();
        let sock = a.path().join("weave").join("weave.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(d.find("weave").unwrap(), Some(PluginAddr::Unix(sock)));
        std::fs::write(
            b.path().join("ipam.json"),
            r#"{"Name": "ipam", "Addr": "unix:///run/x/ipam.sock"}"#,
        )
        .unwrap();
        assert_eq!(
            d.find("ipam").unwrap(),
            Some(PluginAddr::Unix("/run/x/ipam.sock".into()))
        );
        assert_eq!(d.scan(), vec!["ipam", "weave"]);
        std::fs::write(b.path().join("bad.spec"), "ftp://x").unwrap();
        let e = d.find("bad").unwrap_err().to_string();
        assert!(e.contains("unknown protocol"), "{e}");
        assert_eq!(
            d.find("../etc/passwd").unwrap(),
            None,
            "no paths from names"
        );
    }
}
