//! Published ports: `[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|udp|sctp]`, expanded
//! to one mapping per port, and the conflict rule between them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The name nft and Docker use.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub proto: Proto,
    /// Host address it is bound to: `None` every address of both families, `0.0.0.0` every
    /// IPv4 address, `::` every IPv6 address, otherwise that one address.
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
    /// Port inside the sandbox.
    pub container_port: u16,
}

impl PortMapping {
    /// True when both would catch the same packets.
    pub fn conflicts(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                // A wildcard catches every address.
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => {
                    a.is_ipv4() == b.is_ipv4()
                        && (a == b || a.is_unspecified() || b.is_unspecified())
                }
            }
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.proto.as_str()
        )
    }
}

fn port_range(field: &str, s: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::invalid(
            field,
            format!("{s:?} is not a port or range like 8000-8010"),
        )
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// The endpoint driver option that carries ports to publish (the name libnetwork gives its
/// port map), as `-p` values separated by commas or spaces.
pub const PORTMAP_OPTION: &str = "com.docker.network.portmap";

/// Parses `-p` values separated by commas or whitespace.
pub fn parse_list(list: &str) -> Result<Vec<PortMapping>> {
    let mut out = Vec::new();
    for spec in list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        out.extend(parse(spec)?);
    }
    Ok(out)
}

/// Parses one `-p` value into its mappings (a range gives one per port).
pub fn parse(spec: &str) -> Result<Vec<PortMapping>> {
    let field = "Ports";
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((r, "sctp")) => (r, Proto::Sctp),
        Some((_, p)) => {
            return Err(Error::invalid(
                field,
                format!("{spec:?}: protocol {p:?} is not tcp, udp or sctp"),
            ))
        }
        None => (spec, Proto::Tcp),
    };
    // The host IP may be IPv6 in brackets: [::1]:8080:80.
    let (host_ip, ports) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once("]:").ok_or_else(|| {
            Error::invalid(field, format!("{spec:?}: expected [IPv6]:HOST:CONTAINER"))
        })?;
        (Some(ip), after)
    } else {
        match rest.matches(':').count() {
            0 | 1 => (None, rest),
            2 => rest
                .split_once(':')
                .map(|(ip, p)| (Some(ip), p))
                .unwrap_or((None, rest)),
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("{spec:?}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]"),
                ))
            }
        }
    };
    let host_ip = match host_ip {
        Some(s) => {
            let ip: IpAddr = s.parse().map_err(|_| {
                Error::invalid(field, format!("{spec:?}: {s:?} is not an IP address"))
            })?;
            if ip == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) {
                // DNAT cannot send IPv6 loopback traffic out of the host (there is no IPv6
                // route_localnet): refuse rather than publish a port that never answers.
                return Err(Error::invalid(
                    field,
                    format!("{spec:?}: publishing on ::1 is not supported; use 127.0.0.1 or [::]"),
                ));
            }
            Some(ip)
        }
        None => None,
    };
    // No host port ("80", "127.0.0.1::80"): a free one is picked when it is published.
    let (hp, cp) = ports.split_once(':').unwrap_or(("", ports));
    let (c0, c1) = port_range(field, cp)?;
    let (h0, h1) = if hp.is_empty() {
        if c1 != c0 {
            return Err(Error::invalid(
                field,
                format!("{spec:?}: give host ports for a range (HOST_PORT:CONTAINER_PORT)"),
            ));
        }
        (0, 0)
    } else {
        port_range(field, hp)?
    };
    if h1 - h0 != c1 - c0 {
        return Err(Error::invalid(
            field,
            format!("{spec:?}: host range and container range differ in length"),
        ));
    }
    Ok((0..=(h1 - h0))
        .map(|i| PortMapping {
            proto,
            host_ip,
            host_port: h0 + i,
            container_port: c0 + i,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let m = parse("8080:80").unwrap();
        assert_eq!(
            m,
            vec![PortMapping {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                container_port: 80
            }]
        );
        let m = parse("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(m[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m[0].proto, Proto::Udp);
        let m = parse("[fd00::1]:8443:443").unwrap();
        assert_eq!(m[0].host_ip, Some("fd00::1".parse().unwrap()));
        let err = parse("[::1]:8443:443").unwrap_err().to_string();
        assert!(err.contains("::1 is not supported"), "{err}");
        let m = parse("0.0.0.0:9000-9999:9000-9999/tcp").unwrap();
        assert_eq!(m.len(), 1000);
        assert_eq!(m[999].host_port, 9999);
        assert_eq!(
            m[0].host_ip,
            Some("0.0.0.0".parse().unwrap()),
            "every IPv4 address"
        );
        let m = parse("80/udp").unwrap();
        assert_eq!(
            (m[0].host_port, m[0].container_port),
            (0, 80),
            "a free port"
        );
        let m = parse("127.0.0.1::53").unwrap();
        assert_eq!(
            (m[0].host_ip, m[0].host_port),
            (Some("127.0.0.1".parse().unwrap()), 0)
        );
        for bad in [
            "8000-8010",
            "a:80",
            "8080:80/icmp",
            "9000-9001:80",
            "1.2.3:80:80",
            "0:80",
            "90-80:90-80",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflicts() {
        let any = parse("8080:80").unwrap()[0];
        let lo = parse("127.0.0.1:8080:80").unwrap()[0];
        let other = parse("10.0.0.1:8080:80").unwrap()[0];
        let udp = parse("8080:80/udp").unwrap()[0];
        assert!(any.conflicts(&lo) && lo.conflicts(&any));
        assert!(!lo.conflicts(&other));
        assert!(!any.conflicts(&udp));
        let all4 = parse("0.0.0.0:8080:80").unwrap()[0];
        let all6 = parse("[::]:8080:80").unwrap()[0];
        let v6 = parse("[fd00::1]:8080:80").unwrap()[0];
        assert!(all4.conflicts(&lo) && all4.conflicts(&any) && !all4.conflicts(&all6));
        assert!(all6.conflicts(&v6) && !all6.conflicts(&other) && !v6.conflicts(&lo));
    }
}
