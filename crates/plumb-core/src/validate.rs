//! Checks of user input that can never work or that would be written into a file or the
//! kernel unfiltered: subnets, addresses, MACs, and the names and options that end up in a
//! sandbox's `hosts` and `resolv.conf`. Each returns the error naming the field and why.

use crate::error::{Error, Result};
use crate::model::MacAddr;
use ipnet::IpNet;
use std::net::IpAddr;

/// Ranges no network can use, with the reason shown to the user.
fn reserved() -> [(IpNet, &'static str); 9] {
    let n = |s: &str| s.parse::<IpNet>().unwrap_or_default();
    [
        (n("0.0.0.0/8"), "\"this network\" addresses (0.0.0.0/8)"),
        (n("127.0.0.0/8"), "loopback addresses (127.0.0.0/8)"),
        (n("224.0.0.0/4"), "multicast addresses (224.0.0.0/4)"),
        (n("255.255.255.255/32"), "the broadcast address"),
        (n("::/128"), "the unspecified address ::"),
        (n("::1/128"), "the loopback address ::1"),
        (n("::ffff:0:0/96"), "IPv4-mapped addresses (::ffff:0:0/96)"),
        (n("fe80::/10"), "link-local addresses (fe80::/10)"),
        (n("ff00::/8"), "multicast addresses (ff00::/8)"),
    ]
}

/// True when one of the prefixes contains the other.
fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks that `subnet` can hold a network: unicast, not loopback or link-local, and large
/// enough for a gateway and at least one endpoint.
pub fn subnet(field: &str, subnet: &IpNet) -> Result<()> {
    if let Some((_, why)) = reserved().iter().find(|(r, _)| overlap(r, subnet)) {
        return Err(Error::invalid(
            field,
            format!("{subnet} includes {why}, which no network can use: choose a unicast private range such as 10.0.0.0/8 or fd00::/8"),
        ));
    }
    let (max, smallest) = match subnet {
        IpNet::V4(_) => (30, "/30"),
        IpNet::V6(_) => (126, "/126"),
    };
    if subnet.prefix_len() > max {
        return Err(Error::invalid(
            field,
            format!(
                "{subnet} is too small for a gateway and one endpoint: use {smallest} or larger"
            ),
        ));
    }
    Ok(())
}

/// Checks that `ip`, given for `field` inside `subnet`, is an address a host can have: not the
/// subnet's own address nor (IPv4) its broadcast address.
pub fn host_address(field: &str, ip: IpAddr, subnet: &IpNet) -> Result<()> {
    let why = match subnet {
        IpNet::V4(n) if IpAddr::V4(n.network()) == ip => "the network address",
        IpNet::V4(n) if IpAddr::V4(n.broadcast()) == ip => "the broadcast address",
        IpNet::V6(n) if IpAddr::V6(n.network()) == ip => "the subnet-router anycast address",
        _ => return Ok(()),
    };
    Err(Error::invalid(
        field,
        format!("{ip} is {why} of {subnet} and cannot be given to a host"),
    ))
}

/// Checks a static MAC: unicast and not all zeros.
pub fn mac(field: &str, mac: &MacAddr) -> Result<()> {
    if mac.0 == [0; 6] {
        return Err(Error::invalid(
            field,
            "00:00:00:00:00:00 is not a usable MAC address",
        ));
    }
    if mac.0[0] & 1 == 1 {
        return Err(Error::invalid(
            field,
            format!("{mac} is a multicast address, not a unicast MAC"),
        ));
    }
    Ok(())
}

/// True for an RFC 1123 host name: dot-separated labels of letters, digits and inner
/// hyphens, each 1-63 bytes, 253 at most in all.
pub fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks a name that goes into the hosts file or resolv.conf as a host name.
pub fn hostname(field: &str, name: &str) -> Result<()> {
    if is_hostname(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{name:?} is not a valid host name (RFC 1123: letters, digits and '-' in dot-separated labels of at most 63 characters)"),
        ))
    }
}

/// Checks a search domain (a host name, optionally with a trailing dot).
pub fn search_domain(name: &str) -> Result<()> {
    hostname("DnsSearch", name.strip_suffix('.').unwrap_or(name))
}

/// Checks a resolv.conf option: `name` or `name:value`, letters, digits, '-' and '_' in the
/// name and no white space anywhere.
pub fn dns_option(opt: &str) -> Result<()> {
    let (name, value) = opt.split_once(':').unwrap_or((opt, ""));
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let value_ok = value
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'#' && b != b';');
    if name_ok && value_ok && opt.len() <= 64 {
        Ok(())
    } else {
        Err(Error::invalid(
            "DnsOptions",
            format!("{opt:?} is not a resolv.conf option like ndots:2 or edns0"),
        ))
    }
}

/// Checks an address used as a name server: a unicast address, not unspecified.
pub fn nameserver(ip: &IpAddr) -> Result<()> {
    if ip.is_unspecified() || ip.is_multicast() || *ip == IpAddr::from([255, 255, 255, 255]) {
        return Err(Error::invalid(
            "Dns",
            format!("{ip} cannot be a name server address"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(s: &str) -> String {
        subnet("Subnet", &s.parse().unwrap())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn subnets_that_can_never_work_are_refused_with_a_reason() {
        assert!(bad("224.0.0.0/24").contains("multicast"));
        assert!(bad("ff02::/64").contains("multicast"));
        assert!(bad("::/0").contains("::"));
        assert!(bad("fe80::/64").contains("link-local"));
        assert!(bad("127.0.0.0/24").contains("loopback"));
        assert!(bad("0.0.0.0/1").contains("this network"));
        assert!(bad("10.97.1.0/32").contains("too small"));
        assert!(bad("10.97.1.0/31").contains("too small"));
        assert!(bad("fd00::/127").contains("too small"));
        assert!(bad("::ffff:10.0.0.0/120").contains("IPv4-mapped"));
        for ok in [
            "10.0.0.0/8",
            "10.97.1.0/30",
            "172.18.0.0/16",
            "fd00::/64",
            "2001:db8::/126",
        ] {
            assert!(subnet("Subnet", &ok.parse().unwrap()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn network_and_broadcast_addresses_are_not_hosts() {
        let n: IpNet = "10.1.2.0/24".parse().unwrap();
        for ip in ["10.1.2.0", "10.1.2.255"] {
            assert!(
                host_address("Gateway", ip.parse().unwrap(), &n).is_err(),
                "{ip}"
            );
        }
        assert!(host_address("Gateway", "10.1.2.1".parse().unwrap(), &n).is_ok());
        let n6: IpNet = "fd00:1::/64".parse().unwrap();
        assert!(host_address("Gateway", "fd00:1::".parse().unwrap(), &n6).is_err());
        assert!(host_address(
            "Gateway",
            "fd00:1::ffff:ffff:ffff:ffff".parse().unwrap(),
            &n6
        )
        .is_ok());
    }

    #[test]
    fn macs() {
        assert!(mac("MacAddress", &MacAddr([0; 6])).is_err());
        assert!(mac("MacAddress", &MacAddr([1, 0, 0x5e, 0, 0, 1])).is_err());
        assert!(mac("MacAddress", &MacAddr([0xff; 6])).is_err());
        assert!(mac("MacAddress", &MacAddr([2, 0x42, 10, 0, 0, 2])).is_ok());
    }

    #[test]
    fn file_lines_cannot_be_injected() {
        assert!(search_domain("a\nnameserver 10.9.9.9").is_err());
        assert!(search_domain("example.com").is_ok());
        assert!(search_domain("example.com.").is_ok());
        assert!(hostname("Hostname", "web 10.0.0.1").is_err());
        assert!(hostname("Hostname", "-lead").is_err());
        assert!(hostname("Hostname", "web-1.example").is_ok());
        assert!(dns_option("ndots:2").is_ok());
        assert!(dns_option("edns0").is_ok());
        assert!(dns_option("ndots:2\nnameserver 1.2.3.4").is_err());
        assert!(dns_option("a b").is_err());
        assert!(dns_option("").is_err());
        assert!(nameserver(&"0.0.0.0".parse().unwrap()).is_err());
        assert!(nameserver(&"10.0.0.2".parse().unwrap()).is_ok());
    }
}
