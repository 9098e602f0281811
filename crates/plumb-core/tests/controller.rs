//! Controller invariants with fake OS and driver layers (no root needed): all-or-nothing
//! operations, name and address uniqueness, gateway moves, restart from the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use plumb_core::driver::{Capabilities, DefaultRoute, JoinInfo, NetworkDriver, SandboxOs};
use plumb_core::model::{
    Endpoint, EndpointSpec, Network, NetworkSpec, PoolRequest, Sandbox, SandboxSpec,
};
use plumb_core::ports::PortMapping;
use plumb_core::store::Store;
use plumb_core::{BoxError, Config, Controller, Error, SandboxId};
use plumb_store::MemoryStore;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct FakeOs {
    routes: Mutex<BTreeMap<String, Option<DefaultRoute>>>,
    /// Setting a default route fails while set.
    fail_route: AtomicBool,
}

#[async_trait]
impl SandboxOs for FakeOs {
    fn key_for(&self, id: &SandboxId) -> String {
        format!("/fake/netns/{id}")
    }
    fn dir_for(&self, id: &SandboxId) -> String {
        format!("/fake/sandboxes/{id}")
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
    async fn write_hosts(&self, _: &Sandbox, _: &[(IpAddr, Vec<String>)]) -> Result<(), BoxError> {
        Ok(())
    }
    async fn set_default_route(
        &self,
        sb: &Sandbox,
        r: Option<&DefaultRoute>,
    ) -> Result<(), BoxError> {
        if self.fail_route.load(Ordering::SeqCst) {
            return Err("route refused".into());
        }
        self.routes
            .lock()
            .unwrap()
            .insert(sb.spec.name.clone(), r.cloned());
        Ok(())
    }
    async fn host_routes(&self) -> Result<Vec<ipnet::IpNet>, BoxError> {
        Ok(vec!["172.17.0.0/16".parse().unwrap()])
    }
    async fn sweep(&self, _: &[&Sandbox]) -> Result<(), BoxError> {
        Ok(())
    }
}

#[derive(Default)]
struct FakeBridge {
    fail_join: AtomicBool,
    /// Joins to a network called "slow" wait for `release` while set (after signalling
    /// `entered`).
    hold_join: AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    /// Leaving fails while set.
    fail_leave: AtomicBool,
    fail_create: AtomicBool,
    joined: Mutex<Vec<String>>,
    /// Published ports by the address they go to.
    published: Mutex<Vec<(String, PortMapping)>>,
}

#[async_trait]
impl NetworkDriver for FakeBridge {
    fn name(&self) -> &str {
        "bridge"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: true,
            singleton: false,
            host_mode: false,
            global: false,
            keeps_state: false,
            picks_mac: false,
        }
    }
    fn check_options(&self, _: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        Ok(BTreeMap::new())
    }
    async fn create_network(&self, _: &Network) -> Result<(), BoxError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err("bridge creation refused".into());
        }
        Ok(())
    }
    async fn delete_network(&self, _: &Network) -> Result<(), BoxError> {
        Ok(())
    }
    async fn join(
        &self,
        n: &Network,
        ep: &Endpoint,
        _: &Sandbox,
        _: &str,
    ) -> Result<JoinInfo, BoxError> {
        if self.fail_join.load(Ordering::SeqCst) {
            return Err("veth creation refused".into());
        }
        if self.hold_join.load(Ordering::SeqCst) && n.spec.name == "slow" {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.joined.lock().unwrap().push(ep.name.clone());
        let gw = n.pool_v4().and_then(|p| p.gateway);
        Ok(JoinInfo {
            ifname: None,
            gateway_v4: match gw {
                Some(IpAddr::V4(g)) if !n.spec.internal => Some(g),
                _ => None,
            },
            gateway_v6: None,
        })
    }
    async fn program_external(
        &self,
        _: &Network,
        ep: &Endpoint,
        ports: &[PortMapping],
    ) -> Result<(), BoxError> {
        let to = ep.ipv4.map(|a| a.addr().to_string()).unwrap_or_default();
        let mut p = self.published.lock().unwrap();
        p.extend(ports.iter().map(|m| (to.clone(), *m)));
        Ok(())
    }
    async fn revoke_external(
        &self,
        _: &Network,
        ep: &Endpoint,
        ports: &[PortMapping],
    ) -> Result<(), BoxError> {
        let to = ep.ipv4.map(|a| a.addr().to_string()).unwrap_or_default();
        let mut p = self.published.lock().unwrap();
        p.retain(|(a, m)| !(a == &to && ports.contains(m)));
        Ok(())
    }
    async fn leave(&self, _: &Network, ep: &Endpoint, _: &Sandbox) -> Result<(), BoxError> {
        if self.fail_leave.load(Ordering::SeqCst) {
            return Err("device busy".into());
        }
        self.joined.lock().unwrap().retain(|n| n != &ep.name);
        Ok(())
    }
    async fn sweep(&self, _: &[&Network], _: &[&Endpoint]) -> Result<(), BoxError> {
        Ok(())
    }
}

struct Setup {
    ctl: Controller,
    store: Arc<MemoryStore>,
    os: Arc<FakeOs>,
    driver: Arc<FakeBridge>,
}

async fn setup_with(store: Arc<MemoryStore>) -> Setup {
    let os = Arc::new(FakeOs::default());
    let driver = Arc::new(FakeBridge::default());
    let ctl = Controller::new(
        Config::default(),
        store.clone(),
        os.clone(),
        vec![driver.clone()],
    )
    .await
    .unwrap();
    Setup {
        ctl,
        store,
        os,
        driver,
    }
}

async fn setup() -> Setup {
    setup_with(Arc::new(MemoryStore::new())).await
}

fn net(name: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        driver: "bridge".into(),
        enable_ipv4: true,
        pools: vec![PoolRequest {
            subnet: Some(subnet.parse().unwrap()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn sb(name: &str) -> SandboxSpec {
    SandboxSpec {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn failed_join_leaves_no_endpoint_and_no_address_held() {
    let s = setup().await;
    // A /29 has five addresses for endpoints (.2 to .6; .1 is the gateway).
    s.ctl.create_network(net("n", "10.0.0.0/29")).await.unwrap();
    for i in 0..6 {
        s.ctl.create_sandbox(sb(&format!("s{i}"))).await.unwrap();
    }
    s.driver.fail_join.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        let err = s
            .ctl
            .connect("n", "s0", EndpointSpec::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Driver { .. }), "{err}");
        // The error names the driver, the step and its objects, then the cause.
        assert_eq!(
            err.to_string(),
            "bridge driver: joining endpoint s0 of network n to sandbox s0: veth creation refused"
        );
    }
    assert!(
        s.store.list("endpoints/").await.unwrap().entries.is_empty(),
        "nothing persisted"
    );
    assert!(s.ctl.network("n").await.unwrap().endpoints.is_empty());
    assert!(s.ctl.sandbox("s0").await.unwrap().endpoints.is_empty());
    s.driver.fail_join.store(false, Ordering::SeqCst);
    for i in 0..5 {
        s.ctl
            .connect("n", &format!("s{i}"), EndpointSpec::default())
            .await
            .unwrap();
    }
    let err = s
        .ctl
        .connect("n", "s5", EndpointSpec::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PoolExhausted { .. }),
        "no address was lost to the failures: {err}"
    );
}

#[tokio::test]
async fn failed_network_create_leaves_nothing() {
    let s = setup().await;
    s.driver.fail_create.store(true, Ordering::SeqCst);
    assert!(s.ctl.create_network(net("n", "10.0.0.0/24")).await.is_err());
    let keys = s.store.list("networks/").await.unwrap().entries.len();
    // The predefined bridge was created at start; the failed network left no key.
    assert_eq!(keys, 1, "only the predefined bridge is persisted");
    s.driver.fail_create.store(false, Ordering::SeqCst);
    s.ctl.create_network(net("n", "10.0.0.0/24")).await.unwrap();
}

#[tokio::test]
async fn uniqueness_and_conflicts() {
    let s = setup().await;
    s.ctl.create_network(net("n", "10.0.0.0/24")).await.unwrap();
    assert!(matches!(
        s.ctl.create_network(net("n", "10.1.0.0/24")).await,
        Err(Error::NetworkExists { .. })
    ));
    assert!(matches!(
        s.ctl.create_network(net("m", "10.0.0.128/25")).await,
        Err(Error::SubnetOverlap { .. })
    ));
    s.ctl.create_sandbox(sb("a")).await.unwrap();
    s.ctl.create_sandbox(sb("b")).await.unwrap();
    assert!(matches!(
        s.ctl.create_sandbox(sb("a")).await,
        Err(Error::SandboxExists { .. })
    ));
    let spec = EndpointSpec {
        ipv4: Some("10.0.0.9".parse().unwrap()),
        ..Default::default()
    };
    s.ctl.connect("n", "a", spec.clone()).await.unwrap();
    let err = s.ctl.connect("n", "b", spec).await.unwrap_err();
    assert!(err.to_string().contains("by endpoint a"), "{err}");
    assert!(matches!(
        s.ctl.connect("n", "a", EndpointSpec::default()).await,
        Err(Error::AlreadyAttached { .. })
    ));
    assert!(matches!(
        s.ctl.delete_network("n").await,
        Err(Error::NetworkHasEndpoints { .. })
    ));
    assert!(matches!(
        s.ctl.delete_network("bridge").await,
        Err(Error::PredefinedNetwork { .. })
    ));
}

#[tokio::test]
async fn default_pools_skip_host_routes_and_other_networks() {
    let s = setup().await;
    // 172.17/16 is routed on the (fake) host, so even the predefined bridge moved past it.
    let bridge = s.ctl.network("bridge").await.unwrap().network;
    assert_eq!(bridge.pools[0].subnet.to_string(), "172.18.0.0/16");
    let spec = NetworkSpec {
        name: "auto".into(),
        driver: "bridge".into(),
        enable_ipv4: true,
        ..Default::default()
    };
    let n = s.ctl.create_network(spec).await.unwrap();
    assert_eq!(n.pools[0].subnet.to_string(), "172.19.0.0/16");
}

#[tokio::test]
async fn endpoint_lifetime_is_its_own_and_gateway_moves() {
    let s = setup().await;
    s.ctl
        .create_network(net("alpha", "10.1.0.0/24"))
        .await
        .unwrap();
    s.ctl
        .create_network(net("beta", "10.2.0.0/24"))
        .await
        .unwrap();
    s.ctl.create_sandbox(sb("a")).await.unwrap();
    let ep = s
        .ctl
        .create_endpoint(
            "beta",
            EndpointSpec {
                name: "svc".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.ctl.join("beta", "svc", "a").await.unwrap();
    s.ctl
        .connect("alpha", "a", EndpointSpec::default())
        .await
        .unwrap();
    let route =
        s.os.routes
            .lock()
            .unwrap()
            .get("a")
            .cloned()
            .flatten()
            .unwrap();
    assert_eq!(
        route.v4.unwrap().to_string(),
        "10.1.0.1",
        "alpha sorts first"
    );
    s.ctl.disconnect("alpha", "a").await.unwrap();
    let route =
        s.os.routes
            .lock()
            .unwrap()
            .get("a")
            .cloned()
            .flatten()
            .unwrap();
    assert_eq!(
        route.v4.unwrap().to_string(),
        "10.2.0.1",
        "gateway moved to beta"
    );
    let left = s.ctl.leave("beta", "svc", "a").await.unwrap();
    assert_eq!(
        left.ipv4, ep.ipv4,
        "the endpoint keeps its address after leaving"
    );
    assert!(s
        .os
        .routes
        .lock()
        .unwrap()
        .get("a")
        .cloned()
        .flatten()
        .is_none());
    s.ctl.delete_sandbox("a").await.unwrap();
    // The endpoint outlived the sandbox.
    assert_eq!(s.ctl.network("beta").await.unwrap().endpoints.len(), 1);
    s.ctl.delete_endpoint("beta", "svc").await.unwrap();
    s.ctl.delete_network("beta").await.unwrap();
}

#[tokio::test]
async fn restart_rebuilds_state_and_allocator() {
    let store = Arc::new(MemoryStore::new());
    {
        let s = setup_with(store.clone()).await;
        s.ctl.create_network(net("n", "10.0.0.0/29")).await.unwrap();
        for name in ["a", "b", "c"] {
            s.ctl.create_sandbox(sb(name)).await.unwrap();
            s.ctl
                .connect("n", name, EndpointSpec::default())
                .await
                .unwrap();
        }
        s.ctl.disconnect("n", "b").await.unwrap();
    }
    let s = setup_with(store).await;
    assert_eq!(
        s.driver.joined.lock().unwrap().len(),
        2,
        "joined endpoints plumbed again"
    );
    s.ctl.create_sandbox(sb("d")).await.unwrap();
    s.ctl.create_sandbox(sb("e")).await.unwrap();
    s.ctl.create_sandbox(sb("f")).await.unwrap();
    let mut ips: Vec<String> = Vec::new();
    for name in ["d", "e", "f"] {
        ips.push(
            s.ctl
                .connect("n", name, EndpointSpec::default())
                .await
                .unwrap()
                .ipv4
                .unwrap()
                .to_string(),
        );
    }
    ips.sort();
    // /29: .1 gateway, a=.2, c=.4 still held; free were .3, .5, .6.
    assert_eq!(ips, vec!["10.0.0.3/29", "10.0.0.5/29", "10.0.0.6/29"]);
    s.ctl.create_sandbox(sb("g")).await.unwrap();
    assert!(matches!(
        s.ctl.connect("n", "g", EndpointSpec::default()).await,
        Err(Error::PoolExhausted { .. })
    ));
    assert!(s.ctl.sandbox("g").await.unwrap().endpoints.is_empty());
}

#[tokio::test]
async fn endpoint_ports_conflict_move_with_the_gateway_and_go_with_the_endpoint() {
    let s = setup().await;
    s.ctl.create_network(net("n", "10.0.0.0/24")).await.unwrap();
    s.ctl.create_network(net("m", "10.1.0.0/24")).await.unwrap();
    for name in ["a", "b"] {
        s.ctl.create_sandbox(sb(name)).await.unwrap();
    }
    let with_port = |p: &str| EndpointSpec {
        ports: plumb_core::ports::parse(p).unwrap(),
        ..Default::default()
    };
    let published = || {
        let mut v: Vec<String> = s
            .driver
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|(to, m)| format!("{m}->{to}"))
            .collect();
        v.sort();
        v
    };
    s.ctl.connect("n", "a", with_port("8080:80")).await.unwrap();
    assert_eq!(published(), ["8080:80/tcp->10.0.0.2"]);

    // A taken port: an error naming the holder, no endpoint, no address held.
    let err = s
        .ctl
        .connect("n", "b", with_port("8080:81"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PortInUse { ref holder, .. } if holder == "a"),
        "{err}"
    );
    assert!(s.ctl.sandbox("b").await.unwrap().endpoints.is_empty());
    assert_eq!(s.ctl.network("n").await.unwrap().endpoints.len(), 1);
    let again = EndpointSpec {
        ipv4: Some("10.0.0.3".parse().unwrap()),
        ..Default::default()
    };
    s.ctl.connect("n", "b", again).await.unwrap();

    // Joining "m" moves the gateway (m sorts first): the port follows it.
    s.ctl
        .connect("m", "a", EndpointSpec::default())
        .await
        .unwrap();
    assert_eq!(published(), ["8080:80/tcp->10.1.0.2"]);
    assert_eq!(
        s.ctl.sandbox("a").await.unwrap().ports,
        plumb_core::ports::parse("8080:80").unwrap()
    );
    // Leaving "n" takes the endpoint's port away, though "n" is not the gateway.
    s.ctl.disconnect("n", "a").await.unwrap();
    assert_eq!(published(), Vec::<String>::new());
    s.ctl.disconnect("n", "b").await.unwrap();
    let ep = s.ctl.connect("n", "b", with_port("8080:81")).await.unwrap();
    let to = ep.ipv4.unwrap().addr();
    assert_eq!(published(), [format!("8080:81/tcp->{to}")]);
    s.ctl.delete_sandbox("b").await.unwrap();
    assert_eq!(published(), Vec::<String>::new());
}

/// Holds ports in a set; picks `pick` for port 0; refuses ports in `busy`.
struct FakeHolder {
    pick: u16,
    busy: Vec<u16>,
    held: Mutex<Vec<PortMapping>>,
}

impl plumb_core::driver::PortHolder for FakeHolder {
    fn hold(&self, m: &PortMapping) -> std::io::Result<PortMapping> {
        let mut m = *m;
        if m.host_port == 0 {
            m.host_port = self.pick;
        }
        if self.busy.contains(&m.host_port) {
            return Err(std::io::ErrorKind::AddrInUse.into());
        }
        self.held.lock().unwrap().push(m);
        Ok(m)
    }
    fn release(&self, m: &PortMapping) {
        self.held.lock().unwrap().retain(|h| h != m);
    }
}

#[tokio::test]
async fn host_ports_are_held_all_or_nothing_and_picks_are_checked() {
    let holder = Arc::new(FakeHolder {
        pick: 8080,
        busy: vec![7070],
        held: Mutex::new(Vec::new()),
    });
    let store = Arc::new(MemoryStore::new());
    let ctl = Controller::new(
        Config {
            port_holder: Some(holder.clone()),
            ..Config::default()
        },
        store,
        Arc::new(FakeOs::default()),
        vec![Arc::new(FakeBridge::default())],
    )
    .await
    .unwrap();
    let with = |name: &str, ports: &[&str]| SandboxSpec {
        ports: ports
            .iter()
            .flat_map(|p| plumb_core::ports::parse(p).unwrap())
            .collect(),
        ..sb(name)
    };
    // The second mapping is busy on the host: the first is let go, nothing is created.
    let err = ctl
        .create_sandbox(with("a", &["7071:80", "7070:81"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HostPortUnavailable { .. }), "{err}");
    assert!(holder.held.lock().unwrap().is_empty());
    assert!(ctl.sandboxes().await.is_empty());
    // A picked port is written into the sandbox.
    let a = ctl.create_sandbox(with("a", &["80"])).await.unwrap();
    assert_eq!(a.spec.ports[0].host_port, 8080);
    assert_eq!(ctl.published_ports(), 1);
    // A pick that plumb publishes already is refused and let go.
    let err = ctl.create_sandbox(with("b", &["81"])).await.unwrap_err();
    assert!(matches!(err, Error::PortInUse { .. }), "{err}");
    assert_eq!(holder.held.lock().unwrap().len(), 1);
    ctl.delete_sandbox("a").await.unwrap();
    assert!(holder.held.lock().unwrap().is_empty());
    assert_eq!(ctl.published_ports(), 0);
}

/// A driver that appears after start under another name (as a plugin does), delegating to a
/// fake bridge.
struct Late(Arc<FakeBridge>);

#[async_trait]
impl NetworkDriver for Late {
    fn name(&self) -> &str {
        "late"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn check_options(&self, n: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        self.0.check_options(n)
    }
    async fn create_network(&self, n: &Network) -> Result<(), BoxError> {
        self.0.create_network(n).await
    }
    async fn delete_network(&self, n: &Network) -> Result<(), BoxError> {
        self.0.delete_network(n).await
    }
    async fn join(
        &self,
        n: &Network,
        e: &Endpoint,
        s: &Sandbox,
        i: &str,
    ) -> Result<JoinInfo, BoxError> {
        self.0.join(n, e, s, i).await
    }
    async fn leave(&self, n: &Network, e: &Endpoint, s: &Sandbox) -> Result<(), BoxError> {
        self.0.leave(n, e, s).await
    }
    async fn sweep(&self, _: &[&Network], _: &[&Endpoint]) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Finds `late` once it is "installed", and counts how often it is asked.
#[derive(Default)]
struct Plugins {
    installed: AtomicBool,
    asked: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl plumb_core::registry::Resolver<dyn NetworkDriver> for Plugins {
    async fn resolve(&self, name: &str) -> Result<Option<Arc<dyn NetworkDriver>>, BoxError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let ready = self.installed.load(Ordering::SeqCst) && name == "late";
        Ok(
            ready
                .then(|| Arc::new(Late(Arc::new(FakeBridge::default()))) as Arc<dyn NetworkDriver>),
        )
    }
    fn names(&self) -> Vec<String> {
        if self.installed.load(Ordering::SeqCst) {
            vec!["late".into()]
        } else {
            Vec::new()
        }
    }
}

#[tokio::test]
async fn drivers_are_looked_up_when_first_named_and_unknown_ones_listed() {
    let plugins = Arc::new(Plugins::default());
    let ctl = Controller::new(
        Config {
            resolvers: vec![plugins.clone()],
            ..Config::default()
        },
        Arc::new(MemoryStore::new()),
        Arc::new(FakeOs::default()),
        vec![Arc::new(FakeBridge::default())],
    )
    .await
    .unwrap();
    let spec = |name: &str, driver: &str, subnet: &str| NetworkSpec {
        driver: driver.into(),
        ..net(name, subnet)
    };
    let err = ctl
        .create_network(spec("p", "late", "10.9.1.0/24"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DriverNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("available drivers are bridge"),
        "{err}"
    );
    plugins.installed.store(true, Ordering::SeqCst);
    ctl.create_network(spec("p", "late", "10.9.1.0/24"))
        .await
        .unwrap();
    let asked = plugins.asked.load(Ordering::SeqCst);
    ctl.create_network(spec("q", "late", "10.9.2.0/24"))
        .await
        .unwrap();
    assert_eq!(
        plugins.asked.load(Ordering::SeqCst),
        asked,
        "a resolved driver is kept, not looked up again"
    );
    assert_eq!(ctl.driver_names(), vec!["bridge", "late"]);
    let err = ctl
        .create_network(spec("r", "warp", "10.9.3.0/24"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bridge, late"), "{err}");
}

#[tokio::test]
async fn a_failed_inverse_is_kept_as_a_repair_item_and_completed_later() {
    let s = setup().await;
    s.ctl.create_network(net("r", "10.8.0.0/24")).await.unwrap();
    s.ctl.create_sandbox(sb("x")).await.unwrap();
    // The join works, setting the route fails, and so does the leave that should undo it.
    s.os.fail_route.store(true, Ordering::SeqCst);
    s.driver.fail_leave.store(true, Ordering::SeqCst);
    let err = s
        .ctl
        .connect("r", "x", EndpointSpec::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("route refused"), "{err}");
    let pending = s.ctl.pending_repairs();
    let steps: Vec<&str> = pending.iter().map(|r| r.step).collect();
    assert!(steps.contains(&"leave sandbox"), "{steps:?}");
    assert_eq!(
        s.driver.joined.lock().unwrap().as_slice(),
        ["x"],
        "the interface is still in"
    );
    assert_eq!(s.ctl.repair_counts().2, pending.len());
    // While the cause lasts, a retry keeps the item; once it is gone, the item completes.
    assert_eq!(s.ctl.repair().await, pending.len());
    s.driver.fail_leave.store(false, Ordering::SeqCst);
    s.os.fail_route.store(false, Ordering::SeqCst);
    assert_eq!(s.ctl.repair().await, 0);
    assert!(
        s.driver.joined.lock().unwrap().is_empty(),
        "the leave was done"
    );
    let (recorded, done, now) = s.ctl.repair_counts();
    assert_eq!(
        (recorded as usize, done as usize, now),
        (pending.len(), pending.len(), 0)
    );
    // And the controller's view is as if the connect never happened: no address held.
    assert!(s.ctl.network("r").await.unwrap().endpoints.is_empty());
    s.ctl
        .connect("r", "x", EndpointSpec::default())
        .await
        .unwrap();
}

/// An IPAM driver of its own (as a remote plugin is): pools from 10.77.0.0/16 in /24s, every
/// call logged.
#[derive(Default)]
struct LoggingIpam {
    calls: Mutex<Vec<String>>,
    next_pool: std::sync::atomic::AtomicU32,
    next_addr: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl plumb_core::ipam_driver::Ipam for LoggingIpam {
    fn name(&self) -> &str {
        "logging"
    }
    async fn request_pool(
        &self,
        req: &plumb_core::ipam_driver::PoolRequest,
    ) -> Result<plumb_core::ipam_driver::PoolGrant, BoxError> {
        let n = self.next_pool.fetch_add(1, Ordering::SeqCst);
        let pool: ipnet::IpNet = req
            .pool
            .unwrap_or_else(|| format!("10.77.{n}.0/24").parse().unwrap());
        self.calls.lock().unwrap().push(format!(
            "RequestPool {pool} opts={:?}",
            req.options.get("k")
        ));
        Ok(plumb_core::ipam_driver::PoolGrant {
            pool_id: format!("logging-{pool}"),
            pool,
            data: BTreeMap::new(),
        })
    }
    async fn release_pool(&self, id: &str) -> Result<(), BoxError> {
        self.calls.lock().unwrap().push(format!("ReleasePool {id}"));
        Ok(())
    }
    async fn request_address(
        &self,
        pool_id: &str,
        address: Option<IpAddr>,
        options: &BTreeMap<String, String>,
    ) -> Result<ipnet::IpNet, BoxError> {
        let ip = address.unwrap_or_else(|| {
            let n = self.next_addr.fetch_add(1, Ordering::SeqCst);
            format!("10.77.0.{}", 100 + n).parse().unwrap()
        });
        let kind = options
            .get("RequestAddressType")
            .cloned()
            .unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push(format!("RequestAddress {pool_id} {ip} {kind}"));
        Ok(ipnet::IpNet::new(ip, 24).unwrap())
    }
    async fn release_address(&self, pool_id: &str, ip: IpAddr) -> Result<(), BoxError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ReleaseAddress {pool_id} {ip}"));
        Ok(())
    }
}

#[tokio::test]
async fn a_network_takes_its_addresses_from_the_ipam_driver_it_names() {
    let ipam = Arc::new(LoggingIpam::default());
    let store = Arc::new(MemoryStore::new());
    let config = || Config {
        ipams: vec![ipam.clone()],
        ..Config::default()
    };
    let ctl = Controller::new(
        config(),
        store.clone(),
        Arc::new(FakeOs::default()),
        vec![Arc::new(FakeBridge::default())],
    )
    .await
    .unwrap();
    let mut spec = NetworkSpec {
        name: "ext".into(),
        driver: "bridge".into(),
        enable_ipv4: true,
        ipam_driver: "logging".into(),
        ipam_options: Some([("k".to_owned(), "v".to_owned())].into()),
        ..Default::default()
    };
    let n = ctl.create_network(spec.clone()).await.unwrap();
    assert_eq!(n.pools[0].subnet.to_string(), "10.77.0.0/24");
    assert_eq!(n.pools[0].pool_id, "logging-10.77.0.0/24");
    ctl.create_sandbox(sb("a")).await.unwrap();
    let ep = ctl
        .connect("ext", "a", EndpointSpec::default())
        .await
        .unwrap();
    // As dockerd does with an IPAM driver: the driver picked the gateway (.100), then this.
    assert_eq!(ep.ipv4.unwrap().to_string(), "10.77.0.101/24");
    assert_eq!(
        n.pools[0].gateway.map(|g| g.to_string()).as_deref(),
        Some("10.77.0.100")
    );
    // A restart does not ask the driver to recreate what exists.
    let before = ipam.calls.lock().unwrap().len();
    drop(ctl);
    let ctl = Controller::new(
        config(),
        store,
        Arc::new(FakeOs::default()),
        vec![Arc::new(FakeBridge::default())],
    )
    .await
    .unwrap();
    assert_eq!(
        ipam.calls.lock().unwrap().len(),
        before,
        "no call at restart"
    );
    ctl.disconnect("ext", "a").await.unwrap();
    ctl.delete_network("ext").await.unwrap();
    assert_eq!(
        *ipam.calls.lock().unwrap(),
        vec![
            "RequestPool 10.77.0.0/24 opts=Some(\"v\")",
            "RequestAddress logging-10.77.0.0/24 10.77.0.100 com.docker.network.gateway",
            "RequestAddress logging-10.77.0.0/24 10.77.0.101 ",
            "ReleaseAddress logging-10.77.0.0/24 10.77.0.101",
            "ReleaseAddress logging-10.77.0.0/24 10.77.0.100",
            "ReleasePool logging-10.77.0.0/24",
        ]
    );
    // An IPAM driver nobody provides is refused, naming what is available.
    spec.name = "nope".into();
    spec.ipam_driver = "infoblox".into();
    let err = ctl.create_network(spec).await.unwrap_err();
    assert!(err.to_string().contains("default, logging"), "{err}");
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn two_controllers_on_one_store_see_each_others_networks_and_endpoints() {
    let store = Arc::new(MemoryStore::new());
    let one = Arc::new(setup_with(store.clone()).await.ctl);
    let two = Arc::new(setup_with(store.clone()).await.ctl);
    one.follow();
    two.follow();
    one.create_network(net("shared", "10.66.0.0/24"))
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..200 {
        if two.network("shared").await.is_ok() {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen, "the second controller sees the network");
    one.create_sandbox(sb("a")).await.unwrap();
    let a = one
        .connect("shared", "a", EndpointSpec::default())
        .await
        .unwrap();
    let b_sb = two.create_sandbox(sb("b")).await.unwrap();
    // The follower holds a's address: b gets another one.
    let mut b = None;
    for _ in 0..200 {
        if two.network("shared").await.unwrap().endpoints.len() == 1 {
            b = Some(
                two.connect("shared", "b", EndpointSpec::default())
                    .await
                    .unwrap(),
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let b = b.expect("a's endpoint shows on the second controller");
    assert_ne!(a.ipv4, b.ipv4, "one address is never handed out twice");
    // Names resolve on both sides.
    let a_ip = a.ipv4.unwrap().addr();
    let names = two.names();
    eventually("a resolves in b's sandbox", || {
        names.lookup(&b_sb.id, "a", false) == plumb_core::names::Lookup::Found(vec![a_ip])
    })
    .await;
    let names_one = one.names();
    let a_sb = one.sandbox("a").await.unwrap().sandbox.id;
    let b_ip = b.ipv4.unwrap().addr();
    eventually("b resolves in a's sandbox", || {
        names_one.lookup(&a_sb, "b", false) == plumb_core::names::Lookup::Found(vec![b_ip])
    })
    .await;
    // Both list both endpoints; when a leaves, it is gone on the other side too.
    assert_eq!(two.network("shared").await.unwrap().endpoints.len(), 2);
    one.disconnect("shared", "a").await.unwrap();
    eventually("a is gone from b's names", || {
        names.lookup(&b_sb.id, "a", false) != plumb_core::names::Lookup::Found(vec![a_ip])
    })
    .await;
    let mut left = false;
    for _ in 0..200 {
        if two.network("shared").await.unwrap().endpoints.len() == 1 {
            left = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(left, "the second controller forgot a's endpoint");
}

#[tokio::test]
async fn a_join_held_in_the_driver_delays_no_read_and_no_other_sandbox() {
    let s = setup().await;
    let ctl = Arc::new(s.ctl);
    ctl.create_network(net("slow", "10.67.0.0/24"))
        .await
        .unwrap();
    ctl.create_network(net("other", "10.68.0.0/24"))
        .await
        .unwrap();
    for name in ["x", "y", "z"] {
        ctl.create_sandbox(sb(name)).await.unwrap();
    }
    s.driver.hold_join.store(true, Ordering::SeqCst);
    let c = ctl.clone();
    let join = tokio::spawn(async move { c.connect("slow", "x", EndpointSpec::default()).await });
    s.driver.entered.notified().await;
    // The join is inside the driver now; reads answer from the last finished state.
    let nets = ctl.networks().await;
    assert!(nets.iter().any(|n| n.network.spec.name == "slow"));
    assert!(ctl.network("slow").await.unwrap().endpoints.is_empty());
    assert!(ctl.sandbox("x").await.unwrap().endpoints.is_empty());
    // Another sandbox connects meanwhile, to another network and to the same one.
    ctl.connect("other", "y", EndpointSpec::default())
        .await
        .unwrap();
    s.driver.hold_join.store(false, Ordering::SeqCst);
    let z = ctl
        .connect("slow", "z", EndpointSpec::default())
        .await
        .unwrap();
    assert!(
        !join.is_finished(),
        "the join is still held while all that was done"
    );
    // The held sandbox's own operations wait for it.
    let c = ctl.clone();
    let second =
        tokio::spawn(async move { c.connect("other", "x", EndpointSpec::default()).await });
    tokio::task::yield_now().await;
    assert!(
        !second.is_finished(),
        "x's next operation waits for x's connect"
    );
    s.driver.release.notify_one();
    let x = join.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_ne!(x.ipv4, z.ipv4, "the held connect's address stayed held");
    assert_eq!(ctl.network("slow").await.unwrap().endpoints.len(), 2);
    assert_eq!(ctl.sandbox("x").await.unwrap().endpoints.len(), 2);
}
