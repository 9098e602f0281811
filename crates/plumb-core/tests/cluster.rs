//! Controllers of several hosts sharing a cluster store (an in-memory store standing for
//! etcd), with a fake global driver: global networks and their endpoints show on every host,
//! remote endpoints are handed to the driver as peers, addresses and names are unique across
//! hosts also when hosts race, and a host whose lease expires is cleaned from the others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use plumb_core::driver::{Capabilities, DefaultRoute, JoinInfo, NetworkDriver, SandboxOs};
use plumb_core::model::{
    Endpoint, EndpointSpec, Network, NetworkSpec, NodeRef, Sandbox, SandboxSpec,
};
use plumb_core::store::Store;
use plumb_core::{BoxError, Config, Controller, Error, SandboxId};
use plumb_store::MemoryStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct NoOs;

#[async_trait]
impl SandboxOs for NoOs {
    fn key_for(&self, id: &SandboxId) -> String {
        format!("/fake/netns/{id}")
    }
    fn dir_for(&self, id: &SandboxId) -> String {
        format!("/fake/run/{id}")
    }
    async fn create(&self, _: &Sandbox) -> Result<(), BoxError> {
        Ok(())
    }
    async fn exists(&self, _: &Sandbox) -> bool {
        true
    }
    async fn delete(&self, _: &Sandbox) -> Result<(), BoxError> {
        Ok(())
    }
    async fn write_hosts(
        &self,
        _: &Sandbox,
        _: &[(std::net::IpAddr, Vec<String>)],
    ) -> Result<(), BoxError> {
        Ok(())
    }
    async fn set_default_route(
        &self,
        _: &Sandbox,
        _: Option<&DefaultRoute>,
    ) -> Result<(), BoxError> {
        Ok(())
    }
    async fn host_routes(&self) -> Result<Vec<ipnet::IpNet>, BoxError> {
        Ok(Vec::new())
    }
    async fn sweep(&self, _: &[&Sandbox]) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A global driver that records the peers it was told about: (endpoint name, node name).
#[derive(Default)]
struct FakeOverlay {
    peers: Mutex<BTreeSet<(String, String)>>,
}

#[async_trait]
impl NetworkDriver for FakeOverlay {
    fn name(&self) -> &str {
        "overlay"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: true,
            singleton: false,
            host_mode: false,
            global: true,
            keeps_state: false,
            picks_mac: false,
        }
    }
    fn check_options(&self, _: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        Ok(BTreeMap::new())
    }
    async fn create_network(&self, _: &Network) -> Result<(), BoxError> {
        Ok(())
    }
    async fn delete_network(&self, _: &Network) -> Result<(), BoxError> {
        Ok(())
    }
    async fn join(
        &self,
        _: &Network,
        _: &Endpoint,
        _: &Sandbox,
        _: &str,
    ) -> Result<JoinInfo, BoxError> {
        Ok(JoinInfo::default())
    }
    async fn leave(&self, _: &Network, _: &Endpoint, _: &Sandbox) -> Result<(), BoxError> {
        Ok(())
    }
    async fn peer_add(&self, _: &Network, ep: &Endpoint) -> Result<(), BoxError> {
        let node = ep.node.as_ref().map(|n| n.name.clone()).unwrap_or_default();
        self.peers.lock().unwrap().insert((ep.name.clone(), node));
        Ok(())
    }
    async fn peer_remove(&self, _: &Network, ep: &Endpoint) -> Result<(), BoxError> {
        self.peers.lock().unwrap().retain(|(n, _)| n != &ep.name);
        Ok(())
    }
    async fn sweep(&self, _: &[&Network], _: &[&Endpoint]) -> Result<(), BoxError> {
        Ok(())
    }
}

struct Host {
    ctl: Arc<Controller>,
    driver: Arc<FakeOverlay>,
}

async fn host(name: &str, n: u8, cluster: Arc<MemoryStore>, ttl: Duration) -> Host {
    let driver = Arc::new(FakeOverlay::default());
    let config = Config {
        cluster: Some(plumb_core::controller::Cluster {
            store: cluster,
            node: NodeRef {
                name: name.into(),
                addr: format!("10.98.0.{n}").parse().unwrap(),
            },
            ttl,
        }),
        ..Config::default()
    };
    let ctl = Arc::new(
        Controller::new(
            config,
            Arc::new(MemoryStore::new()),
            Arc::new(NoOs),
            vec![driver.clone()],
        )
        .await
        .unwrap(),
    );
    ctl.follow();
    Host { ctl, driver }
}

fn overlay(name: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        driver: "overlay".into(),
        enable_ipv4: true,
        attachable: true,
        pools: vec![plumb_core::model::PoolRequest {
            subnet: Some(subnet.parse().unwrap()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn global_networks_span_hosts_with_unique_addresses_and_peers() {
    let cluster = Arc::new(MemoryStore::new());
    let ttl = Duration::from_secs(30);
    let hosts = [
        host("h1", 11, cluster.clone(), ttl).await,
        host("h2", 12, cluster.clone(), ttl).await,
        host("h3", 13, cluster.clone(), ttl).await,
    ];
    let net = hosts[0]
        .ctl
        .create_network(overlay("ov", "10.77.0.0/24"))
        .await
        .unwrap();
    assert_eq!(net.spec.scope, plumb_core::model::Scope::Global);
    for h in &hosts[1..] {
        eventually("the network shows on every host", async || {
            h.ctl.network("ov").await.is_ok()
        })
        .await;
    }
    // The name is the cluster's: another host cannot take it, even before it saw it.
    let late = host("h4", 14, cluster.clone(), ttl).await;
    assert!(matches!(
        late.ctl.create_network(overlay("ov", "10.78.0.0/24")).await,
        Err(Error::NetworkExists { .. })
    ));
    // 3 hosts x 30 connects at once: 90 distinct addresses.
    let mut tasks = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for j in 0..30 {
            let ctl = h.ctl.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("c{i}-{j}");
                ctl.create_sandbox(SandboxSpec {
                    name: name.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
                ctl.connect("ov", &name, EndpointSpec::default())
                    .await
                    .unwrap()
            }));
        }
    }
    let mut addrs = BTreeSet::new();
    for t in tasks {
        let ep = t.await.unwrap();
        assert!(
            ep.node.is_some(),
            "endpoints of global networks say where they are"
        );
        addrs.insert(ep.ipv4.unwrap().addr());
    }
    assert_eq!(addrs.len(), 90, "no address handed out twice across hosts");
    // Every host sees all 90 endpoints and was told of the 60 on other hosts as peers.
    for (i, h) in hosts.iter().enumerate() {
        eventually("every endpoint shows everywhere", async || {
            h.ctl.network("ov").await.unwrap().endpoints.len() == 90
        })
        .await;
        let peers = h.driver.peers.lock().unwrap().clone();
        assert_eq!(
            peers.len(),
            60,
            "host {i}: peers are the other hosts' endpoints"
        );
        assert!(peers.iter().all(|(_, node)| node != &format!("h{}", i + 1)));
    }
    // Names resolve across hosts.
    let sb = hosts[0].ctl.sandbox("c0-0").await.unwrap().sandbox.id;
    let names = hosts[0].ctl.names();
    assert!(matches!(
        names.lookup(&sb, "c2-5", false),
        plumb_core::names::Lookup::Found(_)
    ));
    // A disconnect on one host withdraws the peer everywhere.
    hosts[1].ctl.disconnect("ov", "c1-0").await.unwrap();
    for h in [&hosts[0], &hosts[2]] {
        eventually("the peer is withdrawn", async || {
            !h.driver
                .peers
                .lock()
                .unwrap()
                .iter()
                .any(|(n, _)| n == "c1-0")
        })
        .await;
    }
    // A host with no endpoint on the network does not watch its endpoints: it keeps none of
    // them and programs nothing.
    assert!(late.ctl.network("ov").await.unwrap().endpoints.is_empty());
    assert!(late.driver.peers.lock().unwrap().is_empty());
    // Nodes: all registered and alive.
    let nodes = hosts[0].ctl.nodes().await.unwrap();
    assert_eq!(nodes.len(), 4);
    assert!(nodes.iter().all(|n| n.alive));
}

#[tokio::test]
async fn a_host_whose_lease_expires_is_cleaned_from_the_others() {
    let cluster = Arc::new(MemoryStore::new());
    let a = host("a", 11, cluster.clone(), Duration::from_secs(30)).await;
    let b = host("b", 12, cluster.clone(), Duration::from_millis(600)).await;
    a.ctl
        .create_network(overlay("ov", "10.79.0.0/24"))
        .await
        .unwrap();
    // a watches the network's endpoints once it has one of its own there.
    a.ctl
        .create_sandbox(SandboxSpec {
            name: "resident".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    a.ctl
        .connect("ov", "resident", EndpointSpec::default())
        .await
        .unwrap();
    eventually("b sees the network", async || {
        b.ctl.network("ov").await.is_ok()
    })
    .await;
    b.ctl
        .create_sandbox(SandboxSpec {
            name: "doomed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ep = b
        .ctl
        .connect("ov", "doomed", EndpointSpec::default())
        .await
        .unwrap();
    eventually("a knows b's endpoint as a peer", async || {
        !a.driver.peers.lock().unwrap().is_empty()
    })
    .await;
    // b dies: its keep-alives stop with it; its lease expires.
    drop(b);
    eventually("b's endpoint is cleaned from a", async || {
        a.ctl.network("ov").await.unwrap().endpoints.len() == 1
    })
    .await;
    assert!(
        a.driver.peers.lock().unwrap().is_empty(),
        "its peer withdrawn"
    );
    let nodes = a.ctl.nodes().await.unwrap();
    assert!(
        nodes.iter().any(|n| n.record.node.name == "b" && !n.alive),
        "{nodes:?}"
    );
    // Its address is free again: a static request for it succeeds here.
    a.ctl
        .create_sandbox(SandboxSpec {
            name: "heir".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = EndpointSpec {
        ipv4: Some(ep.ipv4.unwrap().addr()),
        ..Default::default()
    };
    a.ctl.connect("ov", "heir", spec).await.unwrap();
    let _ = cluster.list("").await.unwrap();
}

#[tokio::test]
async fn global_drivers_need_a_cluster_store() {
    let driver = Arc::new(FakeOverlay::default());
    let ctl = Controller::new(
        Config::default(),
        Arc::new(MemoryStore::new()),
        Arc::new(NoOs),
        vec![driver],
    )
    .await
    .unwrap();
    let e = ctl
        .create_network(overlay("ov", "10.80.0.0/24"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoClusterStore { .. }), "{e}");
    assert!(e.to_string().contains("--cluster-store"));
}
