//! The stable rule that picks which endpoint gives a sandbox its default route.

use crate::model::Endpoint;

/// A joined endpoint that offers a gateway, with what the rule looks at.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// The name of its network.
    pub network_name: &'a str,
    /// Whether its network is internal.
    pub internal: bool,
}

/// Picks the gateway endpoint: highest `gw_priority`, then non-internal, then the
/// lexically first network name (Docker's tie-break). Endpoints without a gateway never win.
pub fn pick<'a>(candidates: &[Candidate<'a>]) -> Option<&'a Endpoint> {
    candidates
        .iter()
        .filter(|c| c.endpoint.gateway_v4.is_some() || c.endpoint.gateway_v6.is_some())
        .min_by(|a, b| {
            b.endpoint
                .gw_priority
                .cmp(&a.endpoint.gw_priority)
                .then(a.internal.cmp(&b.internal))
                .then(a.network_name.cmp(b.network_name))
        })
        .map(|c| c.endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{EndpointId, NetworkId};

    fn ep(prio: i32, gw: bool) -> Endpoint {
        Endpoint {
            id: EndpointId::random(),
            name: "e".into(),
            network: NetworkId::random(),
            mac: None,
            ipv4: None,
            ipv6: None,
            aliases: vec![],
            gw_priority: prio,
            driver_opts: Default::default(),
            sandbox: None,
            ifname: None,
            gateway_v4: gw.then(|| "10.0.0.1".parse().unwrap()),
            gateway_v6: None,
            node: None,
            ports: vec![],
        }
    }

    #[test]
    fn priority_then_name() {
        let (a, b, c) = (ep(0, true), ep(0, true), ep(5, true));
        fn cands<'a>(list: Vec<(&'a str, &'a Endpoint)>) -> Vec<Candidate<'a>> {
            list.into_iter()
                .map(|(n, e)| Candidate {
                    endpoint: e,
                    network_name: n,
                    internal: false,
                })
                .collect()
        }
        let x = cands(vec![("beta", &a), ("alpha", &b)]);
        assert_eq!(pick(&x).unwrap().id, b.id);
        let x = cands(vec![("beta", &a), ("alpha", &b), ("zeta", &c)]);
        assert_eq!(pick(&x).unwrap().id, c.id);
        let none = ep(9, false);
        let x = cands(vec![("a", &none)]);
        assert!(pick(&x).is_none());
    }
}
