//! nftables operations straight over nfnetlink: one batch, one socket, no `nft` process.
//! Set elements on the per-connect path (published ports), and the small table that sends a
//! sandbox's DNS queries to the embedded resolver's own ports.
//!
//! Wire format (linux/netfilter/nf_tables.h): a batch of NFNL_MSG_BATCH_BEGIN, one
//! NFT_MSG_NEWSETELEM / NFT_MSG_DESTROYSETELEM per chunk of elements, NFNL_MSG_BATCH_END. Keys
//! and data are concatenations whose every field is padded to 4 bytes.

use crate::error::{LinuxError, Result};
use netlink_sys::{Socket, SocketAddr};

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
/// Since Linux 6.3: like DELSETELEM, but missing elements are not an error.
const NFT_MSG_DESTROYSETELEM: u16 = 30;
const NFPROTO_INET: u8 = 1;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
/// The element closes an interval that starts at the previous element.
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// Bytes of an `ifname` key (IFNAMSIZ).
const IFNAMSIZ: usize = 16;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
/// Since Linux 6.3: like DELTABLE, but a missing table is not an error.
const NFT_MSG_DESTROYTABLE: u16 = 26;
const NFPROTO_IPV4: u8 = 2;
const NLM_F_APPEND: u16 = 0x800;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_ACCEPT: u32 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_PAYLOAD_SREG: u16 = 5;
const NFTA_PAYLOAD_CSUM_TYPE: u16 = 6;
const NFTA_PAYLOAD_CSUM_OFFSET: u16 = 7;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_PAYLOAD_CSUM_INET: u32 = 1;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFT_REG_1: u32 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Elements per message, to keep each well under the socket buffer.
const CHUNK: usize = 256;

/// Add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemOp {
    /// Add (existing elements are fine).
    Add,
    /// Remove (missing elements are fine).
    Destroy,
}

/// A concatenated key or value, built field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Concat(Vec<u8>);

impl Concat {
    /// An empty concatenation.
    pub fn new() -> Self {
        Self::default()
    }

    fn field(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    /// An address (ipv4_addr or ipv6_addr).
    pub fn addr(self, ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(a) => self.field(&a.octets()),
            std::net::IpAddr::V6(a) => self.field(&a.octets()),
        }
    }

    /// A protocol number (inet_proto).
    pub fn proto(self, p: u8) -> Self {
        self.field(&[p])
    }

    /// A port (inet_service, network byte order).
    pub fn port(self, p: u16) -> Self {
        self.field(&p.to_be_bytes())
    }

    /// An interface name (ifname: IFNAMSIZ bytes, zero padded).
    pub fn ifname(self, name: &str) -> Self {
        let mut b = [0u8; IFNAMSIZ];
        let n = name.len().min(IFNAMSIZ - 1);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.field(&b)
    }
}

/// One element of a set or map: its key, its value (maps only), and whether it closes an
/// interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    /// The key.
    pub key: Concat,
    /// The value, for maps.
    pub data: Option<Concat>,
    /// Closes the interval opened by the element before it (interval sets).
    pub interval_end: bool,
}

impl Elem {
    /// A plain key.
    pub fn key(key: Concat) -> Self {
        Elem {
            key,
            data: None,
            interval_end: false,
        }
    }

    /// The elements of an interval set holding `net`: its first address, and the address
    /// after its last one as the interval's end (none when the prefix reaches the top).
    pub fn prefix(net: ipnet::IpNet) -> Vec<Self> {
        use std::net::IpAddr;
        let start = Elem::key(Concat::new().addr(net.network()));
        let after = match net {
            ipnet::IpNet::V4(n) => u32::from(n.broadcast())
                .checked_add(1)
                .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a))),
            ipnet::IpNet::V6(n) => u128::from(n.broadcast())
                .checked_add(1)
                .map(|a| IpAddr::from(std::net::Ipv6Addr::from(a))),
        };
        let mut v = vec![start];
        if let Some(a) = after {
            v.push(Elem {
                key: Concat::new().addr(a),
                data: None,
                interval_end: true,
            });
        }
        v
    }
}

fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn nested(kind: u16, build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut inner = Vec::new();
    build(&mut inner);
    let mut out = Vec::with_capacity(inner.len() + 4);
    attr(&mut out, kind | NLA_F_NESTED, &inner);
    out
}

fn message(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) {
    let len = 16 + 4 + body.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // version
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(body);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn open_socket() -> Result<Socket> {
    let err = |e: std::io::Error| LinuxError::io("nfnetlink socket", "netlink netfilter", e);
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    sock.bind(&SocketAddr::new(0, 0)).map_err(err)?;
    Ok(sock)
}

/// One message of a batch: (type within nf_tables, flags, address family, body).
type BatchMsg = (u16, u16, u8, Vec<u8>);

/// An nf_tables transaction encoded and ready to send: building it allocates, sending it
/// does not (so it can be sent from a short-lived thread inside another namespace).
#[derive(Debug, Clone)]
pub struct Batch {
    what: &'static str,
    buf: Vec<u8>,
    acks: usize,
}

impl Batch {
    /// Encodes `msgs` between batch begin and end; `what` names the operation in errors.
    fn new(what: &'static str, msgs: &[BatchMsg]) -> Self {
        let mut buf = Vec::with_capacity(64 + msgs.iter().map(|m| m.3.len() + 20).sum::<usize>());
        let mut seq = 1u32;
        message(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        for (kind, flags, family, body) in msgs {
            seq += 1;
            message(
                &mut buf,
                (NFNL_SUBSYS_NFTABLES << 8) | kind,
                flags | NLM_F_REQUEST | NLM_F_ACK,
                seq,
                *family,
                0,
                body,
            );
        }
        seq += 1;
        message(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        Batch {
            what,
            buf,
            acks: msgs.len(),
        }
    }

    /// Sends the transaction on a socket opened in the calling thread's namespace and waits
    /// for every acknowledgement; the first refusal is the error.
    pub fn send(&self) -> Result<()> {
        if self.acks == 0 {
            return Ok(());
        }
        self.send_on(&open_socket()?)
    }

    /// Like [`Batch::send`], on one socket kept open for the life of the process, in the
    /// namespace of the thread that first used it (plumbd's own). Closing an nfnetlink socket
    /// after a transaction that removed elements waits for the kernel's deferred cleanup (an
    /// RCU grace period, 20-40 ms here); a kept socket never pays that.
    pub fn send_shared(&self) -> Result<()> {
        static SHARED: std::sync::OnceLock<std::sync::Mutex<Socket>> = std::sync::OnceLock::new();
        if self.acks == 0 {
            return Ok(());
        }
        let sock = match SHARED.get() {
            Some(s) => s,
            None => {
                let s = open_socket()?;
                SHARED.get_or_init(|| std::sync::Mutex::new(s))
            }
        };
        let sock = sock.lock().unwrap_or_else(|p| p.into_inner());
        self.send_on(&sock)
    }

    fn send_on(&self, sock: &Socket) -> Result<()> {
        let err = |e: std::io::Error| LinuxError::io("nfnetlink batch", "netlink netfilter", e);
        sock.send(&self.buf, 0).map_err(err)?;
        // Every message is acknowledged (or refused) with an NLMSG_ERROR.
        let mut acks = self.acks;
        let mut rx = [0u8; 8192];
        let mut first_error = None;
        while acks > 0 {
            let n = sock.recv(&mut &mut rx[..], 0).map_err(err)?;
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes([rx[off], rx[off + 1], rx[off + 2], rx[off + 3]]) as usize;
                let kind = u16::from_ne_bytes([rx[off + 4], rx[off + 5]]);
                if len < 16 || off + len > n {
                    break;
                }
                if kind == NLMSG_ERROR && len >= 20 {
                    let code = i32::from_ne_bytes([
                        rx[off + 16],
                        rx[off + 17],
                        rx[off + 18],
                        rx[off + 19],
                    ]);
                    acks -= 1;
                    if code != 0 && first_error.is_none() {
                        first_error = Some(-code);
                    }
                }
                off += (len + 3) & !3;
            }
        }
        match first_error {
            None => Ok(()),
            Some(errno) => Err(LinuxError::Netlink {
                op: self.what.to_owned(),
                message: std::io::Error::from_raw_os_error(errno).to_string(),
                errno: Some(errno),
            }),
        }
    }
}

/// Adds or removes `elems` (key, value) in map `set` of `table inet <table>`, in one batch.
pub fn set_elements(op: ElemOp, table: &str, set: &str, elems: &[(Concat, Concat)]) -> Result<()> {
    let elems: Vec<Elem> = elems
        .iter()
        .map(|(k, v)| Elem {
            key: k.clone(),
            data: Some(v.clone()),
            interval_end: false,
        })
        .collect();
    element_batch(table, &[(op, set, &elems)]).send_shared()
}

/// One transaction changing elements of several sets of `table inet <table>`: each entry is
/// (add or remove, set name, elements). The kernel applies all of it or none.
pub fn element_batch(table: &str, changes: &[(ElemOp, &str, &[Elem])]) -> Batch {
    let mut msgs: Vec<BatchMsg> = Vec::new();
    for (op, set, elems) in changes {
        let (kind, flags) = match op {
            ElemOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
            ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, 0),
        };
        for chunk in elems.chunks(CHUNK) {
            let mut body = Vec::new();
            attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
            attr(&mut body, NFTA_SET_ELEM_LIST_SET, &cstr(set));
            body.extend(nested(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
                for el in chunk {
                    list.extend(nested(NFTA_LIST_ELEM, |e| {
                        e.extend(nested(NFTA_SET_ELEM_KEY, |x| {
                            attr(x, NFTA_DATA_VALUE, &el.key.0)
                        }));
                        if el.interval_end {
                            attr(
                                e,
                                NFTA_SET_ELEM_FLAGS,
                                &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
                            );
                        }
                        if let (ElemOp::Add, Some(d)) = (op, &el.data) {
                            e.extend(nested(NFTA_SET_ELEM_DATA, |x| {
                                attr(x, NFTA_DATA_VALUE, &d.0)
                            }));
                        }
                    }));
                }
            }));
            msgs.push((kind, flags, NFPROTO_INET, body));
        }
    }
    let what = match changes.first().map(|c| c.0) {
        Some(ElemOp::Destroy) => "remove set elements",
        _ => "add set elements",
    };
    Batch::new(what, &msgs)
}

/// The table [`redirect_resolver`] makes inside a sandbox.
const RESOLVER_TABLE: &str = "plumb_dns";

/// Removes the resolver's table from a namespace plumb no longer plumbs (an adopted one that
/// stays); nothing if it is not there. Send it from a thread inside that namespace.
pub fn remove_resolver_redirect() -> Batch {
    let mut table = Vec::new();
    attr(&mut table, NFTA_TABLE_NAME, &cstr(RESOLVER_TABLE));
    let msgs: Vec<BatchMsg> = vec![(NFT_MSG_DESTROYTABLE, 0, NFPROTO_IPV4, table)];
    Batch::new("remove the resolver's redirection", &msgs)
}

/// The resolver's table inside a sandbox: queries to `resolver`:53 (UDP and TCP) go to the
/// resolver's own ports and its answers come back from port 53, by rewriting the ports of
/// locally sent packets, without connection tracking. A process in the sandbox may then use
/// port 53 itself. Send it from a thread inside the sandbox's namespace; it replaces what
/// was there.
pub fn redirect_resolver(resolver: std::net::Ipv4Addr, udp_port: u16, tcp_port: u16) -> Batch {
    const TABLE: &str = RESOLVER_TABLE;
    const CHAIN: &str = "out";
    let mut msgs: Vec<BatchMsg> = Vec::new();
    let mut table = Vec::new();
    attr(&mut table, NFTA_TABLE_NAME, &cstr(TABLE));
    msgs.push((NFT_MSG_DESTROYTABLE, 0, NFPROTO_IPV4, table.clone()));
    msgs.push((NFT_MSG_NEWTABLE, NLM_F_CREATE, NFPROTO_IPV4, table));
    let mut chain = Vec::new();
    attr(&mut chain, NFTA_CHAIN_TABLE, &cstr(TABLE));
    attr(&mut chain, NFTA_CHAIN_NAME, &cstr(CHAIN));
    chain.extend(nested(NFTA_CHAIN_HOOK, |h| {
        attr(h, NFTA_HOOK_HOOKNUM, &NF_INET_LOCAL_OUT.to_be_bytes());
        // Raw priority: before connection tracking, so that notrack applies.
        attr(h, NFTA_HOOK_PRIORITY, &(-300i32).to_be_bytes());
    }));
    attr(&mut chain, NFTA_CHAIN_POLICY, &NF_ACCEPT.to_be_bytes());
    attr(&mut chain, NFTA_CHAIN_TYPE, &cstr("filter"));
    msgs.push((NFT_MSG_NEWCHAIN, NLM_F_CREATE, NFPROTO_IPV4, chain));
    for (proto, port) in [(IPPROTO_UDP, udp_port), (IPPROTO_TCP, tcp_port)] {
        // Query: daddr resolver, dport 53 -> dport `port`.
        // Answer: saddr resolver, sport `port` -> sport 53.
        for (addr_offset, port_offset, from, to) in [(16, 2, 53, port), (12, 0, port, 53)] {
            let mut rule = Vec::new();
            attr(&mut rule, NFTA_RULE_TABLE, &cstr(TABLE));
            attr(&mut rule, NFTA_RULE_CHAIN, &cstr(CHAIN));
            rule.extend(nested(NFTA_RULE_EXPRESSIONS, |list| {
                list.extend(payload_load(NFT_PAYLOAD_NETWORK_HEADER, addr_offset, 4));
                list.extend(cmp_eq(&resolver.octets()));
                list.extend(expr("meta", |d| {
                    attr(d, NFTA_META_DREG, &NFT_REG_1.to_be_bytes());
                    attr(d, NFTA_META_KEY, &NFT_META_L4PROTO.to_be_bytes());
                }));
                list.extend(cmp_eq(&[proto]));
                list.extend(payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, port_offset, 2));
                list.extend(cmp_eq(&u16::to_be_bytes(from)));
                list.extend(expr("immediate", |d| {
                    attr(d, NFTA_IMMEDIATE_DREG, &NFT_REG_1.to_be_bytes());
                    d.extend(nested(NFTA_IMMEDIATE_DATA, |v| {
                        attr(v, NFTA_DATA_VALUE, &u16::to_be_bytes(to))
                    }));
                }));
                let csum_offset: u32 = if proto == IPPROTO_UDP { 6 } else { 16 };
                list.extend(expr("payload", |d| {
                    attr(d, NFTA_PAYLOAD_SREG, &NFT_REG_1.to_be_bytes());
                    attr(
                        d,
                        NFTA_PAYLOAD_BASE,
                        &NFT_PAYLOAD_TRANSPORT_HEADER.to_be_bytes(),
                    );
                    attr(d, NFTA_PAYLOAD_OFFSET, &port_offset.to_be_bytes());
                    attr(d, NFTA_PAYLOAD_LEN, &2u32.to_be_bytes());
                    attr(
                        d,
                        NFTA_PAYLOAD_CSUM_TYPE,
                        &NFT_PAYLOAD_CSUM_INET.to_be_bytes(),
                    );
                    attr(d, NFTA_PAYLOAD_CSUM_OFFSET, &csum_offset.to_be_bytes());
                }));
                list.extend(expr("notrack", |_| {}));
                // Done with this packet here: the other rules need not look at it.
                list.extend(expr("immediate", |d| {
                    attr(d, NFTA_IMMEDIATE_DREG, &NFT_REG_VERDICT.to_be_bytes());
                    d.extend(nested(NFTA_IMMEDIATE_DATA, |v| {
                        v.extend(nested(NFTA_DATA_VERDICT, |c| {
                            attr(c, NFTA_VERDICT_CODE, &NF_ACCEPT.to_be_bytes())
                        }))
                    }));
                }));
            }));
            msgs.push((
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                NFPROTO_IPV4,
                rule,
            ));
        }
    }
    Batch::new("program the resolver's redirection", &msgs)
}

/// One expression of a rule: its name and its attributes.
fn expr(name: &str, data: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    nested(NFTA_LIST_ELEM, |e| {
        attr(e, NFTA_EXPR_NAME, &cstr(name));
        let mut d = Vec::new();
        data(&mut d);
        if !d.is_empty() {
            attr(e, NFTA_EXPR_DATA | NLA_F_NESTED, &d);
        }
    })
}

/// Loads `len` bytes at `offset` of header `base` into register 1.
fn payload_load(base: u32, offset: u32, len: u32) -> Vec<u8> {
    expr("payload", |d| {
        attr(d, NFTA_PAYLOAD_DREG, &NFT_REG_1.to_be_bytes());
        attr(d, NFTA_PAYLOAD_BASE, &base.to_be_bytes());
        attr(d, NFTA_PAYLOAD_OFFSET, &offset.to_be_bytes());
        attr(d, NFTA_PAYLOAD_LEN, &len.to_be_bytes());
    })
}

/// Register 1 equals `value`, or the rule stops here.
fn cmp_eq(value: &[u8]) -> Vec<u8> {
    expr("cmp", |d| {
        attr(d, NFTA_CMP_SREG, &NFT_REG_1.to_be_bytes());
        attr(d, NFTA_CMP_OP, &NFT_CMP_EQ.to_be_bytes());
        d.extend(nested(NFTA_CMP_DATA, |v| attr(v, NFTA_DATA_VALUE, value)));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenations_pad_every_field_to_four_bytes() {
        let k = Concat::new()
            .addr("127.0.0.1".parse().unwrap())
            .proto(6)
            .port(8080);
        assert_eq!(k.0, vec![127, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        let v = Concat::new().addr("fd00::2".parse().unwrap()).port(80);
        assert_eq!(v.0.len(), 20);
        assert_eq!(&v.0[16..], &[0, 80, 0, 0]);
    }

    #[test]
    fn attributes_are_aligned() {
        let mut b = Vec::new();
        attr(&mut b, 1, &cstr("plumb"));
        assert_eq!(b.len(), 12, "4 header + 6 payload, padded to 12");
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 10);
    }
}
