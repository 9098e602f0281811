//! Bad input gets a clear error naming the field or the other object, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::host;

#[test]
fn errors_are_clear_and_change_nothing() {
    let Some(h) = host() else { return };
    h.plumb_ok(&[
        "network",
        "create",
        "--subnet",
        "10.5.0.0/24",
        "--ip-range",
        "10.5.0.0/30",
        "taken",
    ]);
    h.plumb_ok(&["sandbox", "create", "s"]);
    h.plumb_ok(&["sandbox", "create", "t"]);
    h.plumb_ok(&["network", "connect", "--ip", "10.5.0.10", "taken", "s"]);

    let state = |h: &plumb_e2e::TestHost| {
        (
            h.plumb_ok(&["network", "ls"]),
            h.plumb_ok(&["sandbox", "ls", "--format", "json"]),
            h.links(),
            h.sh("nft list table inet plumb").stdout,
            h.sh("ip -o addr show").stdout,
        )
    };
    let before = state(&h);
    let cases: &[(&[&str], &str)] = &[
        (&["network", "inspect", "nope"], "network nope not found"),
        (
            &["network", "connect", "nope", "s"],
            "network nope not found",
        ),
        (
            &["network", "connect", "taken", "ghost"],
            "sandbox ghost not found",
        ),
        (
            &["network", "create", "taken"],
            "network with name taken already exists",
        ),
        (
            &["network", "create", "--subnet", "10.5.0.128/25", "other"],
            "overlaps with network taken",
        ),
        (
            &["network", "connect", "--ip", "10.5.0.10", "taken", "t"],
            "10.5.0.10 is already in use in network taken (by endpoint s)",
        ),
        (
            &["network", "connect", "--ip", "10.5.0.1", "taken", "t"],
            "by the gateway",
        ),
        (
            &["network", "connect", "--ip", "10.6.0.1", "taken", "t"],
            "not in any subnet",
        ),
        (
            &["network", "connect", "taken", "s"],
            "already attached to network taken",
        ),
        (&["network", "rm", "taken"], "has active endpoints (s)"),
        (&["network", "rm", "bridge"], "pre-defined network"),
        (&["network", "create", "host"], "pre-defined network"),
        (
            &["network", "create", "--subnet", "10.300.0.0/24", "bad"],
            "Subnet",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.8.0.0/24",
                "--gateway",
                "10.9.0.1",
                "bad",
            ],
            "--gateway 10.9.0.1: no --subnet contains it",
        ),
        (
            &["network", "create", "--subnet", "10.8.0.1/24", "bad"],
            "host bits set",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.driver.mtu=9",
                "bad",
            ],
            "com.docker.network.driver.mtu",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.bogus=1",
                "bad",
            ],
            "com.docker.network.bridge.bogus is not supported",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=this-name-is-too-long",
                "bad",
            ],
            "interface name",
        ),
        (
            &["network", "create", "-d", "warp", "bad"],
            "driver warp not found",
        ),
        (&["network", "create", "bad\tname"], "control characters"),
        (
            &["network", "create", "--subnet", "fd00::/64", "bad"],
            "IPv6 is not enabled",
        ),
        (
            &["sandbox", "create", "s"],
            "sandbox with name s already exists",
        ),
        (&["sandbox", "create", "--", "-bad"], "not a valid name"),
        (&["network", "connect", "host", "t"], "host mode"),
        (
            &["network", "disconnect", "taken", "t"],
            "not connected to network taken",
        ),
    ];
    for (args, want) in cases {
        let err = h.plumb_err(args);
        assert!(
            err.contains(want),
            "plumb {}: expected {want:?} in {err:?}",
            args.join(" ")
        );
    }
    assert_eq!(state(&h), before, "failed requests changed nothing");

    // The API answers malformed bodies with 400 and a message.
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&serde_json::json!({"Name": 5})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("invalid JSON"));
    let (st, _) = h.api("GET", "/v1.47/networks/taken", None);
    assert_eq!(st, 200, "versioned path");
    // The pool of a removed network is reusable at once.
    h.plumb_ok(&["network", "disconnect", "taken", "s"]);
    h.plumb_ok(&["network", "rm", "taken"]);
    h.plumb_ok(&["network", "create", "--subnet", "10.5.0.0/24", "again"]);
}
