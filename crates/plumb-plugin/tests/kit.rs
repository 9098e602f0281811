//! The client against the server kit over a real unix socket: activation, every IPAM call
//! through [`RemoteIpam`], errors with the plugin and the call named, a call left out (404),
//! and a plugin that restarts on a new socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use plumb_core::ipam_driver::{Ipam, PoolRequest};
use plumb_plugin::client::CallErrorKind;
use plumb_plugin::messages::*;
use plumb_plugin::remote_ipam::RemoteIpam;
use plumb_plugin::server::{Answer, IpamPlugin, PluginError, PluginServer};
use plumb_plugin::{Discovery, PluginAddr, PluginClient};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Hands out .2, .3, ... of the pool asked for; remembers every request.
#[derive(Default)]
struct Counting {
    seen: Mutex<Vec<String>>,
    next: Mutex<u8>,
}

#[async_trait]
impl IpamPlugin for Counting {
    async fn request_pool(&self, req: RequestPoolRequest) -> Answer<RequestPoolResponse> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("pool {} {:?}", req.pool, req.options));
        if req.pool == "10.9.9.0/24" {
            return Err(PluginError::Failed("that one is taken".into()));
        }
        Ok(RequestPoolResponse {
            pool_id: "p1".into(),
            pool: req.pool,
            data: None,
        })
    }
    async fn release_pool(&self, req: ReleasePoolRequest) -> Answer<()> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("release pool {}", req.pool_id));
        Ok(())
    }
    async fn request_address(&self, req: RequestAddressRequest) -> Answer<RequestAddressResponse> {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        self.seen
            .lock()
            .unwrap()
            .push(format!("address {:?}", req.options));
        Ok(RequestAddressResponse {
            address: format!("10.1.0.{}/24", *n + 1),
            data: None,
        })
    }
    async fn release_address(&self, req: ReleaseAddressRequest) -> Answer<()> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("release {}", req.address));
        Ok(())
    }
}

fn serve(path: &std::path::Path, plugin: Arc<Counting>) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let _ = PluginServer::new().ipam(plugin).serve(l).await;
    })
}

#[tokio::test]
async fn remote_ipam_through_the_server_kit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kit.sock");
    let plugin = Arc::new(Counting::default());
    let server = serve(&sock, plugin.clone());
    let discovery = Discovery::new(vec![dir.path().into()]);
    assert_eq!(
        discovery.find("kit").unwrap(),
        Some(PluginAddr::Unix(sock.clone()))
    );
    let client = Arc::new(PluginClient::new(
        "kit",
        PluginAddr::Unix(sock.clone()),
        discovery,
        Duration::from_secs(2),
    ));
    assert_eq!(
        client.activate().await.unwrap(),
        vec!["IpamDriver".to_owned()]
    );
    let caps: IpamCapabilitiesResponse = client
        .call::<(), _>("IpamDriver.GetCapabilities", None)
        .await
        .unwrap();
    let ipam = RemoteIpam::new(client.clone(), caps);
    assert_eq!(
        ipam.default_address_spaces().await.unwrap(),
        ("LocalDefault".to_owned(), "GlobalDefault".to_owned())
    );
    let mut opts = BTreeMap::new();
    opts.insert("zone".to_owned(), "a".to_owned());
    let req = PoolRequest {
        address_space: "LocalDefault".into(),
        pool: Some("10.1.0.0/24".parse().unwrap()),
        options: opts.clone(),
        ..Default::default()
    };
    let grant = ipam.request_pool(&req).await.unwrap();
    assert_eq!(
        (grant.pool_id.as_str(), grant.pool.to_string().as_str()),
        ("p1", "10.1.0.0/24")
    );
    let a = ipam.request_address("p1", None, &opts).await.unwrap();
    assert_eq!(a.to_string(), "10.1.0.2/24");
    ipam.release_address("p1", a.addr()).await.unwrap();
    ipam.release_pool("p1").await.unwrap();
    let refused = ipam
        .request_pool(&PoolRequest {
            pool: Some("10.9.9.0/24".parse().unwrap()),
            ..req.clone()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("plugin kit: IpamDriver.RequestPool: refused: that one is taken"),
        "{refused}"
    );
    let missing = client
        .call::<(), serde_json::Value>("NetworkDriver.Join", None)
        .await
        .unwrap_err();
    assert_eq!(missing.kind, CallErrorKind::NotImplemented);
    assert_eq!(
        *plugin.seen.lock().unwrap(),
        vec![
            "pool 10.1.0.0/24 Some({\"zone\": \"a\"})".to_owned(),
            "address Some({\"zone\": \"a\"})".to_owned(),
            "release 10.1.0.2".to_owned(),
            "release pool p1".to_owned(),
            "pool 10.9.9.0/24 Some({\"zone\": \"a\"})".to_owned(),
        ]
    );

    // The plugin goes away and comes back on the same socket: the next call waits for it.
    server.abort();
    let _ = std::fs::remove_file(&sock);
    let back = {
        let sock = sock.clone();
        let plugin = plugin.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // The abort handle goes back to the test, which stops the server with it.
            serve(&sock, plugin).abort_handle()
        })
    };
    let a = ipam
        .request_address("p1", None, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        a.to_string(),
        "10.1.0.3/24",
        "answered by the restarted plugin: {:?}",
        plugin.seen.lock().unwrap()
    );
    back.await.unwrap().abort();

    // Gone for good: unreachable, within the deadline.
    let _ = std::fs::remove_file(&sock);
    let t = std::time::Instant::now();
    let e = ipam
        .request_address("p1", None, &BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unreachable"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}
