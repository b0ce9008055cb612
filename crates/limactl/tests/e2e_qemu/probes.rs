//! Readiness probes (`probes`, upstream's optional requirements) on the internal instance: a
//! probe that passes only six seconds after its first run makes the first `start` wait for
//! it; a probe failing at the second start (a marker file the test leaves in the guest) makes
//! that start exit 1 as upstream's DEGRADED, naming the probe and its hint, with the VM left
//! running.

use super::*;

const MARK: &str = "/var/tmp/e2e-probe-fail";

/// The two probes, added to the instance's config (they run as the user, as upstream's).
pub fn add_to_yaml(v: &mut serde_yaml::Value) {
    let delayed = "#!/bin/sh\n\
        [ -e /tmp/e2e-probe-first ] || date +%s > /tmp/e2e-probe-first\n\
        [ $(( $(date +%s) - $(cat /tmp/e2e-probe-first) )) -ge 6 ] || exit 1\n\
        date +%s > /tmp/e2e-probe-passed\n";
    let marked = format!("#!/bin/bash\n! test -e {MARK}\n");
    let probes = serde_yaml::to_value(vec![
        serde_json::json!({"description": "e2e delayed probe", "script": delayed}),
        serde_json::json!({
            "description": "e2e marked probe",
            "script": marked,
            "hint": format!("E2E-HINT: remove {MARK}"),
        }),
    ])
    .unwrap();
    v["probes"] = probes;
}

/// After the first start: both probes were waited for, the delayed one for its six seconds.
pub fn check_first_start(env: &Env, name: &str, said: &str) {
    for want in [
        "Waiting for the optional requirement 1 of 2: \"e2e delayed probe\"",
        "The optional requirement 1 of 2 is satisfied",
        "The optional requirement 2 of 2 is satisfied",
    ] {
        assert!(said.contains(want), "no {want:?} in:\n{said}");
    }
    let times = env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        "cat /tmp/e2e-probe-first /tmp/e2e-probe-passed",
    ]);
    let t: Vec<i64> = times
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(t[1] - t[0] >= 6, "the probe passed too soon: {times:?}");
}

/// Running, before the stop: the second probe will fail at the next start.
pub fn mark_failing(env: &Env, name: &str) {
    env.ok(&["shell", name, "sudo", "touch", MARK]);
}

/// The second start: DEGRADED (exit 1) with the probe and its hint, after the probe's time
/// (`LIMA_READY_TIMEOUT`, shortened for this start); the VM keeps running. The marker goes.
pub fn degraded_start(env: &Env, name: &str) {
    let out = env
        .command(&["start", name])
        .env("LIMA_READY_TIMEOUT", "240")
        .output()
        .unwrap();
    let err = common::stderr_text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing probe must fail start:\n{err}"
    );
    for want in ["DEGRADED", "\"e2e marked probe\"", "E2E-HINT: remove"] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
    assert_eq!(env.status_str(name), "Running");
    env.ok(&["shell", name, "sudo", "rm", MARK]);
}
