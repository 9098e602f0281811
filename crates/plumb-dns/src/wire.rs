//! The DNS wire format, as much as the resolver needs: parse the one question of a query,
//! build answers (A, AAAA, PTR) that point back at it, and error responses. Pure functions on
//! byte slices, so they can be fuzzed; nothing here allocates per label.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response codes used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// Malformed query.
    FormErr = 1,
    /// Upstream failure.
    ServFail = 2,
    /// No such name.
    NxDomain = 3,
    /// Opcode not implemented.
    NotImp = 4,
    /// Refused.
    Refused = 5,
}

/// A parsed query: its id, flags we echo, and its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Recursion desired.
    pub rd: bool,
    /// The name, lowercase, without the trailing dot ("" for the root).
    pub name: String,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// End of the question section in the query.
    pub question_end: usize,
}

/// Why a message is not a query we can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than a header: no answer possible.
    TooShort,
    /// A response, not a query: ignore it.
    NotAQuery,
    /// An opcode other than QUERY.
    NotImplemented,
    /// A malformed question, or not exactly one.
    Malformed,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Parses a query.
pub fn parse_query(b: &[u8]) -> Result<Query, ParseError> {
    if b.len() < 12 {
        return Err(ParseError::TooShort);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let flags = u16::from_be_bytes([b[2], b[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::NotAQuery);
    }
    if (flags >> 11) & 0xf != 0 {
        return Err(ParseError::NotImplemented);
    }
    if u16::from_be_bytes([b[4], b[5]]) != 1 {
        return Err(ParseError::Malformed);
    }
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = *b.get(i).ok_or(ParseError::Malformed)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended label types have no place in a question.
        if len > 63 {
            return Err(ParseError::Malformed);
        }
        let label = b.get(i..i + len).ok_or(ParseError::Malformed)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            name.push(c.to_ascii_lowercase() as char);
        }
        if name.len() > 253 {
            return Err(ParseError::Malformed);
        }
        i += len;
    }
    let qtype = u16_at(b, i).ok_or(ParseError::Malformed)?;
    let qclass = u16_at(b, i + 2).ok_or(ParseError::Malformed)?;
    Ok(Query {
        id,
        rd: flags & 0x0100 != 0,
        name,
        qtype,
        qclass,
        question_end: i + 4,
    })
}

fn header(out: &mut Vec<u8>, id: u16, rd: bool, aa: bool, rcode: Rcode, qd: u16, an: u16) {
    out.extend_from_slice(&id.to_be_bytes());
    let mut flags: u16 = 0x8000 | 0x0080; // QR, RA
    if aa {
        flags |= 0x0400;
    }
    if rd {
        flags |= 0x0100;
    }
    flags |= rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
}

/// An answer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An address (A or AAAA by family).
    Addr(IpAddr),
    /// A name (PTR).
    Name(String),
}

/// Builds an authoritative response to `q` (asked as `query`) with `answers`, TTL `ttl`.
pub fn build_response(
    query: &[u8],
    q: &Query,
    rcode: Rcode,
    answers: &[Answer],
    ttl: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.question_end + answers.len() * 28 + 16);
    header(&mut out, q.id, q.rd, true, rcode, 1, answers.len() as u16);
    out.extend_from_slice(&query[12..q.question_end]);
    for a in answers {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        let (rtype, data): (u16, Vec<u8>) = match a {
            Answer::Addr(IpAddr::V4(v4)) => (TYPE_A, v4.octets().to_vec()),
            Answer::Addr(IpAddr::V6(v6)) => (TYPE_AAAA, v6.octets().to_vec()),
            Answer::Name(n) => (TYPE_PTR, encode_name(n)),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// Builds an error response: with the question when it parsed, else header only.
pub fn build_error(query: &[u8], parsed: Option<&Query>, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match parsed {
        Some(q) => {
            header(&mut out, q.id, q.rd, false, rcode, 1, 0);
            out.extend_from_slice(&query[12..q.question_end]);
        }
        None => {
            let id = u16::from_be_bytes([
                query.first().copied().unwrap_or(0),
                query.get(1).copied().unwrap_or(0),
            ]);
            header(&mut out, id, false, false, rcode, 0, 0);
        }
    }
    out
}

/// Encodes a dotted name in wire format (labels over 63 bytes are cut).
pub fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`) stands for.
pub fn reverse_addr(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let parts: Vec<u8> = rest
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        if parts.len() != 4 {
            return None;
        }
        return Some(IpAddr::V4(Ipv4Addr::new(
            parts[3], parts[2], parts[1], parts[0],
        )));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|p| {
            if p.len() == 1 {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        v = (v << 4) | u128::from(*n);
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

/// Sets a message's id (for relaying upstream answers).
pub fn set_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// True when a response has the truncation bit.
pub fn truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// The response code of a message.
pub fn rcode(msg: &[u8]) -> Option<u8> {
    msg.get(3).map(|b| b & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as dig sends it: id 0x1234, RD, one question.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(encode_name(name));
        q.extend(qtype.to_be_bytes());
        q.extend(CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn parse_and_answer() {
        let b = query("Web.Example", TYPE_A);
        let q = parse_query(&b).unwrap();
        assert_eq!(
            (q.id, q.rd, q.name.as_str(), q.qtype),
            (0x1234, true, "web.example", TYPE_A)
        );
        let r = build_response(
            &b,
            &q,
            Rcode::NoError,
            &[Answer::Addr("10.0.0.2".parse().unwrap())],
            0,
        );
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "QR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
        assert_eq!(rcode(&r), Some(0));
    }

    #[test]
    fn malformed_inputs_never_panic() {
        assert_eq!(parse_query(&[1, 2, 3]), Err(ParseError::TooShort));
        let mut b = query("a", TYPE_A);
        b[2] |= 0x80;
        assert_eq!(parse_query(&b), Err(ParseError::NotAQuery));
        let mut b = query("a", TYPE_A);
        b[12] = 0xc0;
        assert_eq!(parse_query(&b), Err(ParseError::Malformed));
        let b = query("a", TYPE_A);
        assert_eq!(parse_query(&b[..b.len() - 1]), Err(ParseError::Malformed));
        // Every prefix and every single-byte corruption of a query parses or fails cleanly.
        let b = query("some.name.example", TYPE_AAAA);
        for n in 0..b.len() {
            let _ = parse_query(&b[..n]);
            for v in [0u8, 0x3f, 0x40, 0xc0, 0xff] {
                let mut c = b.clone();
                c[n] = v;
                if let Ok(q) = parse_query(&c) {
                    let _ = build_response(&c, &q, Rcode::NoError, &[Answer::Name("x".into())], 0);
                }
                let _ = build_error(&c, None, Rcode::FormErr);
            }
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_addr("2.0.17.172.in-addr.arpa"),
            Some("172.17.0.2".parse().unwrap())
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(reverse_addr(v6), Some("fd00::1".parse().unwrap()));
        assert_eq!(reverse_addr("x.in-addr.arpa"), None);
        assert_eq!(reverse_addr("example.com"), None);
    }
}
