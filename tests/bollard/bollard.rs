//! bollard (the Rust Docker SDK) against plumbd: version negotiation, create, list with
//! filters, inspect, connect, disconnect, remove, prune, and dockerd's errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bollard::errors::Error;
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions, PruneNetworksOptions};
use bollard::{Docker, API_DEFAULT_VERSION};
use std::collections::HashMap;

fn status(e: Error) -> (u16, String) {
    match e {
        Error::DockerResponseServerError {
            status_code,
            message,
        } => (status_code, message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bollard_networks() {
    if !plumb_testkit::prerequisites() {
        return;
    }
    let h = tokio::task::spawn_blocking(plumb_testkit::TestHost::started)
        .await
        .unwrap();
    h.plumb_ok(&["sandbox", "create", "rs1"]);
    let docker = Docker::connect_with_unix(&h.socket.to_string_lossy(), 30, API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let v = docker.version().await.unwrap();
    assert!(v.api_version.unwrap().starts_with("1."));

    let created = docker
        .create_network(NetworkCreateRequest {
            name: "rs".into(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some("10.99.0.0/24".into()),
                    ip_range: Some("10.99.0.128/25".into()),
                    ..Default::default()
                }]),
                options: None,
            }),
            labels: Some(HashMap::from([("app".to_owned(), "rs".to_owned())])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.id.len(), 64);

    let filters = HashMap::from([("label".to_owned(), vec!["app=rs".to_owned()])]);
    let listed = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name.as_deref(), Some("rs"));

    docker
        .connect_network(
            "rs",
            NetworkConnectRequest {
                container: "rs1".into(),
                endpoint_config: Some(EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some("10.99.0.200".into()),
                        ..Default::default()
                    }),
                    aliases: Some(vec!["api".into()]),
                    driver_opts: Some(HashMap::from([(
                        "com.docker.network.portmap".to_owned(),
                        "18181:80".to_owned(),
                    )])),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    // The port came with the connect (plumb's sandbox view lists it).
    let (st, sb) = h.api("GET", "/plumb/v1/sandboxes/rs1", None);
    assert_eq!(st, 200);
    assert_eq!(sb["Ports"][0].as_str(), Some("18181:80/tcp"), "{sb}");
    assert_eq!(sb["Ports"].as_array().map(Vec::len), Some(1), "{sb}");
    let n = docker
        .inspect_network("rs", None::<InspectNetworkOptions>)
        .await
        .unwrap();
    assert_eq!(n.id.as_deref(), Some(created.id.as_str()));
    let ipam = n.ipam.unwrap();
    let cfg = &ipam.config.unwrap()[0];
    assert_eq!(cfg.subnet.as_deref(), Some("10.99.0.0/24"));
    assert_eq!(cfg.ip_range.as_deref(), Some("10.99.0.128/25"));
    assert_eq!(cfg.gateway, None, "not given, not echoed");
    let members = n.containers.unwrap();
    let ep = members.values().next().unwrap();
    assert_eq!(ep.name.as_deref(), Some("rs1"));
    assert_eq!(ep.ipv4_address.as_deref(), Some("10.99.0.200/24"));
    assert!(n.created.unwrap().ends_with('Z'));

    let (code, msg) = status(docker.remove_network("rs").await.unwrap_err());
    assert_eq!(code, 403, "{msg}");
    let (code, msg) = status(
        docker
            .inspect_network("missing", None::<InspectNetworkOptions>)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, msg.as_str()), (404, "network missing not found"));
    let (code, _) = status(
        docker
            .create_network(NetworkCreateRequest {
                name: "rs".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);

    docker
        .disconnect_network(
            "rs",
            NetworkDisconnectRequest {
                container: "rs1".into(),
                force: Some(false),
            },
        )
        .await
        .unwrap();
    let pruned = docker
        .prune_networks(None::<PruneNetworksOptions>)
        .await
        .unwrap();
    assert_eq!(pruned.networks_deleted, Some(vec!["rs".to_owned()]));
    let all = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "predefined networks remain");
    tokio::task::spawn_blocking(move || drop(h)).await.unwrap();
}
