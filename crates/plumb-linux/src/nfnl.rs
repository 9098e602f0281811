//! nftables set-element operations straight over nfnetlink: one batch, one socket, no `nft`
//! process. Used on the per-connect path (published ports).
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
const NFTA_DATA_VALUE: u16 = 1;
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

/// Adds or removes `elems` (key, value) in map `set` of `table inet <table>`, in one batch.
pub fn set_elements(op: ElemOp, table: &str, set: &str, elems: &[(Concat, Concat)]) -> Result<()> {
    if elems.is_empty() {
        return Ok(());
    }
    let err = |e: std::io::Error| LinuxError::io("nfnetlink set elements", "netlink netfilter", e);
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    sock.bind(&SocketAddr::new(0, 0)).map_err(err)?;
    let (kind, flags) = match op {
        ElemOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK),
        ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, NLM_F_REQUEST | NLM_F_ACK),
    };
    let mut buf = Vec::with_capacity(64 + elems.len() * 48);
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
    let mut acks = 0;
    for chunk in elems.chunks(CHUNK) {
        seq += 1;
        let mut body = Vec::new();
        attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        attr(&mut body, NFTA_SET_ELEM_LIST_SET, &cstr(set));
        body.extend(nested(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            for (k, v) in chunk {
                list.extend(nested(NFTA_LIST_ELEM, |e| {
                    e.extend(nested(NFTA_SET_ELEM_KEY, |x| {
                        attr(x, NFTA_DATA_VALUE, &k.0)
                    }));
                    if op == ElemOp::Add {
                        e.extend(nested(NFTA_SET_ELEM_DATA, |x| {
                            attr(x, NFTA_DATA_VALUE, &v.0)
                        }));
                    }
                }));
            }
        }));
        message(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            seq,
            NFPROTO_INET,
            0,
            &body,
        );
        acks += 1;
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
    sock.send(&buf, 0).map_err(err)?;
    // Every element message is acknowledged (or refused) with an NLMSG_ERROR.
    let mut rx: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut first_error = None;
    while acks > 0 {
        rx.clear();
        let n = sock.recv(&mut rx, 0).map_err(err)?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes([rx[off], rx[off + 1], rx[off + 2], rx[off + 3]]) as usize;
            let kind = u16::from_ne_bytes([rx[off + 4], rx[off + 5]]);
            if len < 16 || off + len > n {
                break;
            }
            if kind == NLMSG_ERROR && len >= 20 {
                let code =
                    i32::from_ne_bytes([rx[off + 16], rx[off + 17], rx[off + 18], rx[off + 19]]);
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
            op: format!("{op:?} elements of set {set}"),
            message: std::io::Error::from_raw_os_error(errno).to_string(),
            errno: Some(errno),
        }),
    }
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
