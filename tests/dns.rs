//! The embedded resolver end to end: dig and getent inside sandboxes, names and aliases, PTR,
//! round robin, no leakage across networks, immediate updates, forwarding to a stub upstream
//! in the test's own namespace (with TCP fallback), fast SERVFAIL when upstream is down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{host, ip_on};
use plumb_testkit::{StubDns, TestHost};
use std::collections::HashSet;

fn dig(h: &TestHost, sb: &str, args: &str) -> String {
    let o = h.in_sandbox(sb, &format!("dig +time=3 +tries=1 {args}"));
    assert!(o.ok(), "dig {args} in {sb}: {}{}", o.stdout, o.stderr);
    o.stdout
}

fn short(h: &TestHost, sb: &str, args: &str) -> Vec<String> {
    let mut v: Vec<String> = dig(h, sb, &format!("+short {args}"))
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn status(h: &TestHost, sb: &str, args: &str) -> String {
    let out = dig(h, sb, args);
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in {out}"))
        .to_owned()
}

/// A host with an outside namespace serving the stub upstream at 198.51.100.53.
fn dns_host() -> Option<(TestHost, StubDns)> {
    let mut h = host()?;
    let out = h.add_outside();
    let o = h.sh_in(&out, "ip addr add 198.51.100.53/24 dev eth0");
    assert!(o.ok(), "{}", o.stderr);
    let stub = StubDns::start(&out, "198.51.100.53".parse().unwrap());
    Some((h, stub))
}

#[test]
fn names_aliases_ptr_round_robin_and_isolation() {
    let Some((h, _stub)) = dns_host() else { return };
    h.plumb_ok(&["network", "create", "front"]);
    h.plumb_ok(&["network", "create", "back"]);
    for s in ["s1", "s2", "s3", "s4"] {
        h.plumb_ok(&["sandbox", "create", "--hostname", &format!("{s}-host"), s]);
    }
    h.plumb_ok(&["network", "connect", "front", "s1"]);
    h.plumb_ok(&["network", "connect", "--alias", "db", "front", "s2"]);
    h.plumb_ok(&["network", "connect", "--alias", "db", "front", "s3"]);
    h.plumb_ok(&["network", "connect", "back", "s4"]);
    let (s2, s3) = (ip_on(&h, "s2", "front"), ip_on(&h, "s3", "front"));

    let resolv = h.in_sandbox("s1", "cat /etc/resolv.conf").stdout;
    assert!(
        resolv.contains("nameserver 127.0.0.11") && resolv.contains("options ndots:0"),
        "{resolv}"
    );
    assert!(
        resolv.contains("search test.example"),
        "the host's search domains: {resolv}"
    );

    assert_eq!(short(&h, "s1", "s2"), vec![s2.clone()]);
    assert_eq!(
        short(&h, "s1", "S2-HOST"),
        vec![s2.clone()],
        "hostnames, any case"
    );
    let mut both = vec![s2.clone(), s3.clone()];
    both.sort();
    assert_eq!(
        short(&h, "s1", "db"),
        both,
        "an alias held by two endpoints answers both"
    );
    let getent = h.in_sandbox("s1", "getent hosts s2").stdout;
    assert!(
        getent.starts_with(&s2),
        "getent uses the resolver: {getent}"
    );
    assert_eq!(
        short(&h, "s1", &format!("-x {s2}")),
        vec!["s2.".to_owned()],
        "PTR"
    );
    assert_eq!(
        short(&h, "s1", "AAAA s2"),
        Vec::<String>::new(),
        "no IPv6 address: empty answer"
    );
    // Round robin: the first answer changes across queries.
    let firsts: HashSet<String> = (0..30)
        .map(|_| {
            dig(&h, "s1", "+short db")
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        firsts.len(),
        2,
        "both addresses come first sometimes: {firsts:?}"
    );
    // No leakage across networks.
    assert_eq!(status(&h, "s1", "s4"), "NXDOMAIN");
    assert_eq!(status(&h, "s4", "s1"), "NXDOMAIN");
    assert_eq!(status(&h, "s4", "db"), "NXDOMAIN");
    // Updates are visible in the next query.
    h.plumb_ok(&["network", "disconnect", "front", "s3"]);
    assert_eq!(short(&h, "s1", "db"), vec![s2.clone()]);
    h.plumb_ok(&["network", "connect", "--alias", "db", "front", "s4"]);
    assert_eq!(
        short(&h, "s1", "db").len(),
        2,
        "s4 now holds db on front too"
    );
    assert_eq!(
        short(&h, "s4", "s1"),
        vec![ip_on(&h, "s1", "front")],
        "s4 sees front's names"
    );
    // Metrics count what happened.
    let (st, m) = h.api("GET", "/plumb/v1/metrics", None);
    assert_eq!(st, 200);
    let m = m.as_str().unwrap_or_default().to_owned();
    assert!(
        m.contains("plumb_dns_queries_total") && m.contains("rcode=\"NXDOMAIN\""),
        "{m}"
    );
}

#[test]
fn forwarding_tcp_fallback_internal_and_upstream_down() {
    let Some((h, stub)) = dns_host() else { return };
    h.plumb_ok(&["network", "create", "web"]);
    h.plumb_ok(&["network", "create", "--internal", "priv"]);
    h.plumb_ok(&["sandbox", "create", "out"]);
    h.plumb_ok(&["sandbox", "create", "in"]);
    h.plumb_ok(&["sandbox", "create", "--dns", "198.51.100.2", "lost"]);
    h.plumb_ok(&["network", "connect", "web", "out"]);
    h.plumb_ok(&["network", "connect", "priv", "in"]);
    h.plumb_ok(&["network", "connect", "web", "lost"]);

    assert_eq!(
        short(&h, "out", "upstream.example"),
        vec!["203.0.113.7".to_owned()]
    );
    assert_eq!(status(&h, "out", "nothing.example"), "NXDOMAIN");
    // Truncated over UDP upstream: the resolver retries over TCP and relays all 40.
    let big = dig(&h, "out", "+tcp +short big.example");
    assert_eq!(big.lines().count(), 40, "{big}");
    assert!(stub.queries() >= 3);
    // Internal networks do not forward.
    let before = stub.queries();
    assert_eq!(status(&h, "in", "upstream.example"), "NXDOMAIN");
    assert_eq!(stub.queries(), before, "nothing left the internal sandbox");
    // The sandbox's own --dns server is down: SERVFAIL, within dig's 3 s.
    assert_eq!(status(&h, "lost", "upstream.example"), "SERVFAIL");
    // Container names still resolve there.
    assert_eq!(short(&h, "lost", "out"), vec![ip_on(&h, "out", "web")]);
}

#[test]
fn garbage_and_slow_clients_do_not_stall_the_resolver() {
    let Some((h, _stub)) = dns_host() else { return };
    h.plumb_ok(&["network", "create", "n"]);
    h.plumb_ok(&["sandbox", "create", "alpha"]);
    h.plumb_ok(&["sandbox", "create", "beta"]);
    h.plumb_ok(&["network", "connect", "n", "alpha"]);
    h.plumb_ok(&["network", "connect", "n", "beta"]);
    // Garbage datagrams, then 20 TCP connections held open and silent, from inside alpha.
    let o = h.in_sandbox(
        "alpha",
        "for i in $(seq 1 200); do printf 'garbage%s' $i > /dev/udp/127.0.0.11/53; done; \
         for i in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.11/53; sleep 8) & done; sleep 0.5; \
         dig +time=2 +tries=1 +short beta",
    );
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(
        o.stdout.trim(),
        ip_on(&h, "beta", "n"),
        "UDP answers while TCP slots are held"
    );
    assert_eq!(
        short(&h, "beta", "alpha"),
        vec![ip_on(&h, "alpha", "n")],
        "other sandboxes unaffected"
    );
}

#[test]
fn port_53_stays_free_for_the_sandbox() {
    let Some((mut h, _stub)) = dns_host() else {
        return;
    };
    h.plumb_ok(&["network", "create", "net53"]);
    for s in ["own53", "peer53"] {
        h.plumb_ok(&["sandbox", "create", s]);
        h.plumb_ok(&["network", "connect", "net53", s]);
    }
    let (own, peer) = (ip_on(&h, "own53", "net53"), ip_on(&h, "peer53", "net53"));
    let echo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/echo_peer.py");
    let echo = echo.display();
    // A DNS server of the sandbox's own binds port 53 on every address (UDP and TCP), and
    // the embedded resolver keeps answering at 127.0.0.11:53 beside it.
    let script = format!(
        "python3 {echo} serve 53 > /tmp/own53.out 2>&1 & pid=$!; \
         for i in $(seq 50); do grep -q ready /tmp/own53.out && break; sleep 0.1; done; \
         cat /tmp/own53.out; \
         echo udp=$(python3 {echo} udp {own} 53); \
         echo tcp=$(python3 {echo} tcp {own} 53); \
         echo dig=$(dig +short +time=3 +tries=1 peer53); \
         echo digtcp=$(dig +tcp +short +time=3 +tries=1 peer53); \
         kill $pid"
    );
    let o = h.in_sandbox("own53", &script);
    let out = o.stdout;
    assert!(
        out.contains("ready"),
        "own server on port 53: {out}{}",
        o.stderr
    );
    assert!(out.contains(&format!("udp={own}")), "{out}");
    assert!(out.contains(&format!("tcp={own}")), "{out}");
    assert!(out.contains(&format!("dig={peer}")), "{out}");
    assert!(out.contains(&format!("digtcp={peer}")), "{out}");
    let table = h.in_sandbox("own53", "nft list table ip plumb_dns").stdout;
    assert!(table.contains("notrack"), "{table}");

    // After a crash the resolver comes back on a new port and the rewrite follows it.
    h.kill9();
    h.start();
    assert_eq!(short(&h, "own53", "peer53"), vec![peer.clone()]);
    assert_eq!(short(&h, "own53", "+tcp peer53"), vec![peer]);
    let after = h.in_sandbox("own53", "nft list table ip plumb_dns").stdout;
    assert_eq!(
        after.matches("notrack").count(),
        4,
        "one set of rules: {after}"
    );
}
