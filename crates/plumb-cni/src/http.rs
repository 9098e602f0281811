//! One HTTP/1.1 request to plumbd over its unix socket, blocking: a CNI plugin runs once per
//! call and needs nothing more.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why plumbd gave no answer.
#[derive(Debug)]
pub struct Unreachable(pub String);

/// Sends `method path` with `body` to the socket at `socket`: (status, JSON body or Null).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Unreachable> {
    let fail = |e: std::io::Error| Unreachable(format!("plumbd at {}: {e}", socket.display()));
    let mut s = UnixStream::connect(socket).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(fail)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: plumb\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(fail)?;
    s.write_all(body.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw).map_err(fail)?;
    parse(&raw).ok_or_else(|| {
        Unreachable(format!(
            "plumbd at {}: not an HTTP answer",
            socket.display()
        ))
    })
}

/// Status and JSON body of a whole HTTP/1.1 answer (Content-Length or chunked).
fn parse(raw: &[u8]) -> Option<(u16, Value)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).ok()?.trim(), 16).ok()?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    let v = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    Some((status, v))
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_with_a_length_or_chunked() {
        let (s, v) =
            super::parse(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!((s, v["a"].as_i64()), (200, Some(1)));
        let (s, v) = super::parse(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n2}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, v["a"].as_i64()), (404, Some(2)));
        assert!(super::parse(b"garbage").is_none());
    }
}
