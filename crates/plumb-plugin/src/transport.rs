//! One HTTP/1.1 POST to a plugin, over a unix socket or TCP, as dockerd sends it: `Host:
//! plugin.moby.localhost`, `Accept: application/vnd.docker.plugins.v1.2+json`, no
//! Content-Type, an empty body for calls without arguments. Answers are capped in size.

use crate::discovery::PluginAddr;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// The largest answer read from a plugin.
pub(crate) const MAX_ANSWER: usize = 1 << 20;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// Nothing listens there (no socket, connection refused): the plugin is not up.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The connection broke or the answer was not HTTP.
    #[error("{0}")]
    Http(String),
    /// The answer was larger than [`MAX_ANSWER`].
    #[error("answer larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

/// An HTTP answer: status and body.
pub(crate) struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// Sends `POST /<method>` with `body` to `addr` and reads the answer.
pub(crate) async fn post(
    addr: &PluginAddr,
    method: &str,
    body: Vec<u8>,
) -> Result<Answer, TransportError> {
    match addr {
        PluginAddr::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| TransportError::Connect(addr.to_string(), e))?;
            exchange(TokioIo::new(s), method, body).await
        }
        PluginAddr::Tcp(hostport) => {
            let s = tokio::net::TcpStream::connect(hostport.as_str())
                .await
                .map_err(|e| TransportError::Connect(addr.to_string(), e))?;
            let _ = s.set_nodelay(true);
            exchange(TokioIo::new(s), method, body).await
        }
    }
}

async fn exchange<S>(io: TokioIo<S>, method: &str, body: Vec<u8>) -> Result<Answer, TransportError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| TransportError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::post(format!("/{method}"))
        .header(hyper::header::HOST, "plugin.moby.localhost")
        .header(
            hyper::header::ACCEPT,
            "application/vnd.docker.plugins.v1.2+json",
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| TransportError::Http(e.to_string()))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    TransportError::TooLarge
                } else {
                    TransportError::Http(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}
