//! A small kit for writing network and IPAM plugins in Rust: implement [`NetworkPlugin`]
//! and/or [`IpamPlugin`] with the typed messages of [`crate::messages`], and
//! [`PluginServer::serve`] answers dockerd and plumbd on a unix socket (activation,
//! dispatch, errors as `{"Err": ...}` with HTTP 500, 404 for calls left out).

use crate::messages::*;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// A plugin's failure to answer a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The plugin does not implement the call: HTTP 404.
    NotImplemented,
    /// The call failed: HTTP 500 with `{"Err": message}`.
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for PluginError {
    fn from(e: E) -> Self {
        PluginError::Failed(e.to_string())
    }
}

/// What a call answers.
pub type Answer<T> = Result<T, PluginError>;

/// A network driver plugin (`NetworkDriver.*`). Calls not overridden answer 404 or, where
/// Docker needs an answer, the usual empty one.
#[async_trait]
pub trait NetworkPlugin: Send + Sync {
    /// `GetCapabilities`: local scope unless overridden.
    async fn get_capabilities(&self) -> Answer<CapabilitiesResponse> {
        Ok(CapabilitiesResponse {
            scope: "local".into(),
            connectivity_scope: "local".into(),
            gw_alloc_checker: false,
        })
    }
    /// `CreateNetwork`.
    async fn create_network(&self, req: CreateNetworkRequest) -> Answer<()>;
    /// `DeleteNetwork`.
    async fn delete_network(&self, req: NetworkRequest) -> Answer<()>;
    /// `CreateEndpoint`.
    async fn create_endpoint(&self, req: CreateEndpointRequest) -> Answer<CreateEndpointResponse>;
    /// `DeleteEndpoint`.
    async fn delete_endpoint(&self, req: EndpointRequest) -> Answer<()>;
    /// `EndpointOperInfo`: nothing to show unless overridden.
    async fn endpoint_info(&self, _req: EndpointRequest) -> Answer<EndpointInfoResponse> {
        Ok(EndpointInfoResponse::default())
    }
    /// `Join`.
    async fn join(&self, req: JoinRequest) -> Answer<JoinResponse>;
    /// `Leave`.
    async fn leave(&self, req: EndpointRequest) -> Answer<()>;
    /// `ProgramExternalConnectivity` (404 unless overridden, which dockerd and plumb accept).
    async fn program_external(&self, _req: ExternalConnectivityRequest) -> Answer<()> {
        Err(PluginError::NotImplemented)
    }
    /// `RevokeExternalConnectivity` (404 unless overridden).
    async fn revoke_external(&self, _req: EndpointRequest) -> Answer<()> {
        Err(PluginError::NotImplemented)
    }
}

/// An IPAM plugin (`IpamDriver.*`).
#[async_trait]
pub trait IpamPlugin: Send + Sync {
    /// `GetCapabilities`: none unless overridden.
    async fn get_capabilities(&self) -> Answer<IpamCapabilitiesResponse> {
        Ok(IpamCapabilitiesResponse::default())
    }
    /// `GetDefaultAddressSpaces`.
    async fn default_address_spaces(&self) -> Answer<AddressSpacesResponse> {
        Ok(AddressSpacesResponse {
            local_default_address_space: "LocalDefault".into(),
            global_default_address_space: "GlobalDefault".into(),
        })
    }
    /// `RequestPool`.
    async fn request_pool(&self, req: RequestPoolRequest) -> Answer<RequestPoolResponse>;
    /// `ReleasePool`.
    async fn release_pool(&self, req: ReleasePoolRequest) -> Answer<()>;
    /// `RequestAddress`.
    async fn request_address(&self, req: RequestAddressRequest) -> Answer<RequestAddressResponse>;
    /// `ReleaseAddress`.
    async fn release_address(&self, req: ReleaseAddressRequest) -> Answer<()>;
}

/// Serves a network plugin, an IPAM plugin, or both on one socket.
#[derive(Clone, Default)]
pub struct PluginServer {
    network: Option<Arc<dyn NetworkPlugin>>,
    ipam: Option<Arc<dyn IpamPlugin>>,
}

fn reply<T: Serialize>(status: u16, v: &T) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/vnd.docker.plugins.v1+json"),
    );
    r
}

fn answer<T: Serialize>(a: Answer<T>) -> hyper::Response<Full<Bytes>> {
    match a {
        Ok(v) => {
            let v = serde_json::to_value(&v).unwrap_or_default();
            // `()` serialises as null: answer `{}` as dockerd's own plugins do.
            reply(
                200,
                &if v.is_null() {
                    serde_json::json!({})
                } else {
                    v
                },
            )
        }
        Err(PluginError::NotImplemented) => {
            reply(404, &serde_json::json!({"Err": "not implemented"}))
        }
        Err(PluginError::Failed(m)) => reply(500, &serde_json::json!({"Err": m})),
    }
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, PluginError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| PluginError::Failed(format!("bad request: {e}")))
}

macro_rules! call {
    ($plugin:expr, $method:ident, $body:expr) => {
        match parse($body) {
            Ok(req) => answer($plugin.$method(req).await),
            Err(e) => answer::<()>(Err(e)),
        }
    };
}

impl PluginServer {
    /// A server with nothing to serve yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `p` as the network driver.
    pub fn network(mut self, p: Arc<dyn NetworkPlugin>) -> Self {
        self.network = Some(p);
        self
    }

    /// Serves `p` as the IPAM driver.
    pub fn ipam(mut self, p: Arc<dyn IpamPlugin>) -> Self {
        self.ipam = Some(p);
        self
    }

    /// Answers one request.
    pub async fn handle(&self, path: &str, body: &[u8]) -> hyper::Response<Full<Bytes>> {
        let method = path.trim_start_matches('/');
        if method == "Plugin.Activate" {
            let mut implements = Vec::new();
            if self.network.is_some() {
                implements.push("NetworkDriver".to_owned());
            }
            if self.ipam.is_some() {
                implements.push("IpamDriver".to_owned());
            }
            return answer(Ok(ActivateResponse { implements }));
        }
        if let (Some(call), Some(n)) = (method.strip_prefix("NetworkDriver."), &self.network) {
            return match call {
                "GetCapabilities" => answer(n.get_capabilities().await),
                "CreateNetwork" => call!(n, create_network, body),
                "DeleteNetwork" => call!(n, delete_network, body),
                "CreateEndpoint" => call!(n, create_endpoint, body),
                "DeleteEndpoint" => call!(n, delete_endpoint, body),
                "EndpointOperInfo" => call!(n, endpoint_info, body),
                "Join" => call!(n, join, body),
                "Leave" => call!(n, leave, body),
                "ProgramExternalConnectivity" => call!(n, program_external, body),
                "RevokeExternalConnectivity" => call!(n, revoke_external, body),
                _ => answer::<()>(Err(PluginError::NotImplemented)),
            };
        }
        if let (Some(call), Some(i)) = (method.strip_prefix("IpamDriver."), &self.ipam) {
            return match call {
                "GetCapabilities" => answer(i.get_capabilities().await),
                "GetDefaultAddressSpaces" => answer(i.default_address_spaces().await),
                "RequestPool" => call!(i, request_pool, body),
                "ReleasePool" => call!(i, release_pool, body),
                "RequestAddress" => call!(i, request_address, body),
                "ReleaseAddress" => call!(i, release_address, body),
                _ => answer::<()>(Err(PluginError::NotImplemented)),
            };
        }
        answer::<()>(Err(PluginError::NotImplemented))
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::UnixListener) -> std::io::Result<()> {
        let me = Arc::new(self);
        loop {
            let (stream, _) = listener.accept().await?;
            let me = me.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = Limited::new(req.into_body(), 1 << 20)
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(me.handle(&path, &body).await)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
}
