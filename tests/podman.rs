//! Podman (Debian's 4.3, CNI backend) running containers on a plumb network through
//! plumb-cni: the runtime makes the namespaces and calls the plugin; plumb plumbs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{host, TestHost};
use plumb_testkit::Podman;

#[test]
fn podman_runs_containers_on_a_plumb_network() {
    let Some(mut h) = host() else { return };
    let outside = h.add_outside();
    assert!(
        h.sh("command -v podman && command -v busybox").ok(),
        "this test needs podman and busybox-static (scripts/deps.sh installs them)"
    );
    h.plumb_ok(&["network", "create", "--subnet", "10.78.0.0/24", "web"]);
    let p = Podman::new(&h, &["web"]);
    for name in ["c1", "c2"] {
        let o = p.run(&format!(
            "run -d --name {name} --network web localhost/bb:1 sleep 300"
        ));
        assert!(o.ok(), "podman run {name}: {}", o.stderr);
    }
    // A generated name ("objective_wiles") is a DNS alias, not a host name: still fine.
    let o = p.run("run --rm --network web localhost/bb:1 true");
    assert!(o.ok(), "podman run without a name: {}", o.stderr);
    // Addresses and routes from plumb; names from plumb's DNS (Podman writes the result's
    // name server into the container's resolv.conf and passes the container's name).
    let o = p.run("exec c2 ip -o addr show eth0");
    assert!(o.stdout.contains("inet 10.78.0."), "{}", o.stdout);
    let o = p.run("exec c2 cat /etc/resolv.conf");
    assert!(o.stdout.contains("nameserver 127.0.0.11"), "{}", o.stdout);
    let o = p.run("exec c2 ping -c1 -W2 c1");
    assert!(o.ok(), "c2 -> c1 by name: {}{}", o.stdout, o.stderr);
    // A published port: Podman's conmon binds the host port itself and plumb forwards it
    // (plumb holds no socket there, so the two do not collide); reached from outside.
    let o =
        p.run("run -d --name c3 --network web -p 18280:80 localhost/bb:1 httpd -f -p 80 -h /www");
    assert!(o.ok(), "podman run -p: {}", o.stderr);
    let o = h.sh("ss -Hltnp 'sport = :18280'");
    assert!(
        o.stdout.contains("conmon"),
        "the runtime holds it: {}",
        o.stdout
    );
    let fetch = |h: &TestHost| {
        h.sh_in(&outside, "curl -s --max-time 5 http://198.51.100.1:18280/")
            .stdout
    };
    assert_eq!(fetch(&h).trim(), "served by c3");
    assert!(
        h.sh("nft list ruleset").stdout.contains("18280"),
        "forwarded"
    );
    // plumb still keeps the port unique among its sandboxes.
    let e = h.plumb_err(&["sandbox", "create", "-p", "18280:80", "other"]);
    assert!(e.contains("18280"), "{e}");
    let sandboxes = h.plumb_ok(&["sandbox", "ls"]);
    assert_eq!(sandboxes.matches("cni-").count(), 3, "{sandboxes}");
    // A reload (Podman 4.3 sends DEL, then ADD without the runtimeConfig) plumbs them again.
    let o = p.run("network reload c1 c3");
    assert!(o.ok(), "podman network reload: {}{}", o.stdout, o.stderr);
    let o = p.run("exec c2 ping -c1 -W2 c1");
    assert!(o.ok(), "c2 -> c1 after reload: {}{}", o.stdout, o.stderr);
    // podman rm -f leaves nothing in plumb or in the host's kernel.
    let o = p.run("rm -f -t 0 c1 c2 c3");
    assert!(o.ok(), "podman rm: {}", o.stderr);
    assert!(!h.plumb_ok(&["sandbox", "ls"]).contains("cni-"));
    assert!(
        !h.sh("nft list ruleset").stdout.contains("18280"),
        "no forwarding left"
    );
    let veths = h
        .links()
        .into_iter()
        .filter(|l| l.starts_with("pv"))
        .count();
    assert_eq!(veths, 0, "no veth left: {:?}", h.links());
    let eps = plumb_e2e::network(&h, "web")["Containers"]
        .as_object()
        .map(|m| m.len());
    assert_eq!(eps, Some(0));
}
