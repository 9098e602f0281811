//! The built-in IPAM: default address pools and per-network address allocation.
//!
//! An [`AddressPool`] tracks the addresses in use in one subnet as offsets from the subnet's
//! first address; allocation walks forward from where the last one stopped (like Docker's
//! allocator), so a released address is not handed out again at once.

use crate::error::{Error, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A default pool: a base prefix split into subnets of `size` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultPool {
    /// The base prefix.
    pub base: IpNet,
    /// Prefix length of each subnet handed out.
    pub size: u8,
}

impl DefaultPool {
    /// Parses `base=CIDR,size=N` (the `--default-address-pool` syntax).
    pub fn parse(s: &str) -> Result<Self> {
        let field = "default-address-pool";
        let mut base = None;
        let mut size = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => {
                    base = Some(v.parse::<IpNet>().map_err(|e| {
                        Error::invalid(field, format!("base {v:?} is not a CIDR: {e}"))
                    })?)
                }
                Some(("size", v)) => {
                    size = Some(v.parse::<u8>().map_err(|_| {
                        Error::invalid(field, format!("size {v:?} is not a prefix length"))
                    })?)
                }
                _ => {
                    return Err(Error::invalid(
                        field,
                        format!("{part:?}: expected base=CIDR,size=N"),
                    ))
                }
            }
        }
        let (Some(base), Some(size)) = (base, size) else {
            return Err(Error::invalid(field, "expected base=CIDR,size=N"));
        };
        let max = if base.max_prefix_len() == 32 { 30 } else { 126 };
        if size < base.prefix_len() || size > max {
            return Err(Error::invalid(
                field,
                format!(
                    "size {size} must be between the base's prefix length {} and {max}",
                    base.prefix_len(),
                ),
            ));
        }
        crate::validate::subnet(field, &base)?;
        Ok(DefaultPool { base, size })
    }

    /// The candidate subnets, in order.
    pub fn subnets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.base.subnets(self.size).into_iter().flatten()
    }
}

/// Docker's default pools: 172.17-31.0.0/16 and 192.168.0.0/16 in /20s.
pub fn docker_default_pools() -> Vec<DefaultPool> {
    let mut pools = vec![DefaultPool {
        base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 16).unwrap_or_default()),
        size: 16,
    }];
    for second in 18..=31u8 {
        pools.push(DefaultPool {
            base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(172, second, 0, 0), 16).unwrap_or_default()),
            size: 16,
        });
    }
    pools.push(DefaultPool {
        base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).unwrap_or_default()),
        size: 20,
    });
    pools
}

/// The default IPv6 pool: a unique local /48 split into /64s.
pub fn default_v6_pool() -> DefaultPool {
    DefaultPool {
        base: IpNet::V6(
            Ipv6Net::new(Ipv6Addr::new(0xfd5c, 0x7b7a, 0x6c75, 0, 0, 0, 0, 0), 48)
                .unwrap_or_default(),
        ),
        size: 64,
    }
}

/// Picks the first subnet of `pools` of the given family that overlaps none of `taken`.
pub fn pick_subnet(pools: &[DefaultPool], v6: bool, taken: &[IpNet]) -> Result<IpNet> {
    for pool in pools
        .iter()
        .filter(|p| matches!(p.base, IpNet::V6(_)) == v6)
    {
        for subnet in pool.subnets() {
            if !taken.iter().any(|t| overlaps(t, &subnet)) {
                return Ok(subnet);
            }
        }
    }
    Err(Error::NoAvailablePool {
        family: if v6 { "IPv6" } else { "IPv4" },
    })
}

/// True when two prefixes share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The network's gateway.
    Gateway,
    /// A named auxiliary address.
    Aux(String),
    /// An endpoint (its name).
    Endpoint(String),
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Gateway => f.write_str("the gateway"),
            Holder::Aux(n) => write!(f, "auxiliary address {n}"),
            Holder::Endpoint(n) => write!(f, "endpoint {n}"),
        }
    }
}

/// Address allocation inside one subnet.
#[derive(Debug, Clone)]
pub struct AddressPool {
    subnet: IpNet,
    /// Dynamic allocation range as inclusive offsets from the subnet base.
    range: (u128, u128),
    used: BTreeMap<u128, Holder>,
    next: u128,
}

impl AddressPool {
    /// A pool for `subnet`, allocating dynamically from `ip_range` (or the whole subnet).
    pub fn new(subnet: IpNet, ip_range: Option<IpNet>) -> Self {
        let base = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast()) - base;
        let v4 = matches!(subnet, IpNet::V4(_));
        // Skip the network address; in IPv4 also the broadcast address (unless /31, /32).
        let (mut lo, mut hi) = (1u128.min(last), last);
        if v4 && subnet.prefix_len() < 31 {
            hi = last.saturating_sub(1);
        }
        if subnet.prefix_len() >= subnet.max_prefix_len() - 1 {
            lo = 0;
        }
        if let Some(r) = ip_range {
            lo = lo.max(to_u128(r.network()).saturating_sub(base));
            hi = hi.min(to_u128(r.broadcast()).saturating_sub(base));
        }
        AddressPool {
            subnet,
            range: (lo, hi),
            used: BTreeMap::new(),
            next: lo,
        }
    }

    /// The subnet.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The address with the subnet's prefix length.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }

    fn offset(&self, ip: IpAddr) -> Option<u128> {
        self.subnet
            .contains(&ip)
            .then(|| to_u128(ip) - to_u128(self.subnet.network()))
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Option<&Holder> {
        self.offset(ip).and_then(|o| self.used.get(&o))
    }

    /// Reserves a given address; fails when outside the subnet or taken.
    pub fn reserve(&mut self, ip: IpAddr, holder: Holder, network: &str) -> Result<()> {
        let Some(off) = self.offset(ip) else {
            return Err(Error::invalid(
                "address",
                format!("{ip} is not in subnet {}", self.subnet),
            ));
        };
        if let Some(h) = self.used.get(&off) {
            return Err(Error::AddressInUse {
                address: ip,
                network: network.to_owned(),
                holder: h.to_string(),
            });
        }
        self.used.insert(off, holder);
        Ok(())
    }

    /// Allocates the next free address of the dynamic range.
    pub fn allocate(&mut self, holder: Holder, network: &str) -> Result<IpAddr> {
        let (lo, hi) = self.range;
        let v6 = matches!(self.subnet, IpNet::V6(_));
        let base = to_u128(self.subnet.network());
        if hi < lo {
            return Err(self.exhausted(network));
        }
        let span = hi - lo + 1;
        let start = if self.next < lo || self.next > hi {
            lo
        } else {
            self.next
        };
        // Walk the used set instead of probing every address: jump over runs of taken offsets.
        let mut cand = start;
        let mut walked: u128 = 0;
        while walked < span {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.used.entry(cand) {
                slot.insert(holder);
                self.next = if cand == hi { lo } else { cand + 1 };
                return Ok(from_u128(v6, base + cand));
            }
            cand = if cand == hi { lo } else { cand + 1 };
            walked += 1;
        }
        Err(self.exhausted(network))
    }

    fn exhausted(&self, network: &str) -> Error {
        Error::PoolExhausted {
            network: network.to_owned(),
            subnet: self.subnet.to_string(),
        }
    }

    /// Releases an address (a no-op when it is not held).
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(off) = self.offset(ip) {
            self.used.remove(&off);
        }
    }

    /// How many addresses are held.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    /// The addresses held, for checks.
    pub fn used_offsets(&self) -> BTreeSet<u128> {
        self.used.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_skip_taken() {
        let pools = docker_default_pools();
        let s = pick_subnet(&pools, false, &[]).unwrap();
        assert_eq!(s, net("172.17.0.0/16"));
        let s = pick_subnet(&pools, false, &[net("172.17.0.0/16"), net("172.18.5.0/24")]).unwrap();
        assert_eq!(s, net("172.19.0.0/16"));
        let mut taken: Vec<IpNet> = (17..=31).map(|i| net(&format!("172.{i}.0.0/16"))).collect();
        taken.push(net("192.168.0.0/20"));
        assert_eq!(
            pick_subnet(&pools, false, &taken).unwrap(),
            net("192.168.16.0/20")
        );
        // A default route covering everything is not a taken prefix by itself; callers filter it.
        assert!(pick_subnet(&pools, false, &[net("0.0.0.0/1"), net("128.0.0.0/1")]).is_err());
    }

    #[test]
    fn parse_default_pool() {
        let p = DefaultPool::parse("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!(p.subnets().count(), 256);
        assert!(DefaultPool::parse("base=10.10.0.0/16,size=8").is_err());
        assert!(DefaultPool::parse("base=nope,size=24").is_err());
        assert!(DefaultPool::parse("size=24").is_err());
    }

    #[test]
    fn allocate_sequential_and_no_reuse_until_wrap() {
        let mut p = AddressPool::new(net("10.0.0.0/29"), None);
        p.reserve("10.0.0.1".parse().unwrap(), Holder::Gateway, "n")
            .unwrap();
        let a: Vec<IpAddr> = (0..5)
            .map(|i| p.allocate(Holder::Endpoint(format!("e{i}")), "n").unwrap())
            .collect();
        let want: Vec<IpAddr> = (2..=6)
            .map(|i| format!("10.0.0.{i}").parse().unwrap())
            .collect();
        assert_eq!(a, want);
        assert!(matches!(
            p.allocate(Holder::Endpoint("x".into()), "n"),
            Err(Error::PoolExhausted { .. })
        ));
        p.release("10.0.0.3".parse().unwrap());
        assert_eq!(
            p.allocate(Holder::Endpoint("y".into()), "n").unwrap(),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ip_range_and_conflicts() {
        let mut p = AddressPool::new(net("10.1.0.0/16"), Some(net("10.1.5.0/30")));
        let a = p.allocate(Holder::Endpoint("a".into()), "n").unwrap();
        assert_eq!(a, "10.1.5.0".parse::<IpAddr>().unwrap());
        let err = p
            .reserve(a, Holder::Endpoint("b".into()), "n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpoint a"), "{err}");
        assert!(p
            .reserve("10.2.0.1".parse().unwrap(), Holder::Gateway, "n")
            .is_err());
        // Static addresses may lie outside the ip-range, inside the subnet.
        p.reserve(
            "10.1.9.9".parse().unwrap(),
            Holder::Endpoint("c".into()),
            "n",
        )
        .unwrap();
    }

    #[test]
    fn ipv6() {
        let mut p = AddressPool::new(net("fd00:1::/64"), None);
        p.reserve("fd00:1::1".parse().unwrap(), Holder::Gateway, "n")
            .unwrap();
        assert_eq!(
            p.allocate(Holder::Endpoint("a".into()), "n").unwrap(),
            "fd00:1::2".parse::<IpAddr>().unwrap()
        );
    }
}
