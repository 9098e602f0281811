//! The crash driver, short form: random operations with plumbd killed (SIGKILL) at random
//! moments, every invariant checked after each restart (see plumb_testkit::crash). The long
//! form is `plumb-bench crash`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn random_operations_survive_kill_9() {
    if !plumb_testkit::prerequisites() {
        return;
    }
    // A fixed seed keeps CI reproducible; PLUMB_CRASH_SEED replays or explores others.
    let seed = std::env::var("PLUMB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let r = plumb_testkit::crash::run(150, 10, seed);
    eprintln!("crash driver: {r:?}");
    assert!(
        r.kills >= 5,
        "the run should kill plumbd several times: {r:?}"
    );
    assert!(
        r.kills_mid_request >= 1,
        "some kills land mid-request: {r:?}"
    );
}
