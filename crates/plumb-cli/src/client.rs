//! A small HTTP/1.1 client for plumbd's unix socket.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;

/// Where plumbd listens.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// Parses `-H` / `PLUMB_HOST`: `unix:///path` or a plain path.
    pub fn new(host: &str) -> anyhow::Result<Self> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if path.contains("://") {
            bail!("unsupported host {host:?}: use unix:///path/to/plumb.sock");
        }
        Ok(Client {
            socket: PathBuf::from(path),
        })
    }

    /// Sends one request; returns the status and the body parsed as JSON (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| {
                format!(
                    "cannot reach plumbd at {} (is it running? set -H or PLUMB_HOST)",
                    self.socket.display()
                )
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let data = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "plumb")
            .header("Content-Type", "application/json")
            .body(Full::new(data))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// Like [`Client::call`], but a non-2xx answer becomes an error with plumbd's message.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, body).await?;
        if status.is_success() {
            Ok(v)
        } else {
            let msg = v
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            bail!("{msg}")
        }
    }
}

/// Percent-encodes a path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
