//! Start-up failures of the real `flux-agent` binary.

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flux-agent"))
        .args(args)
        .env_remove("FLUX_TOKEN")
        .env_remove("FLUX_TOKEN_FILE")
        .env("FLUX_LOG", "error")
        .output()
        .expect("run flux-agent")
}

#[test]
fn refuses_to_start_without_a_usable_agent_token() {
    let out = agent(&["--server", "https://127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));

    // A well-formed token without a node id (not an agent token).
    let out = agent(&[
        "--server",
        "https://127.0.0.1:1",
        "--token",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node id"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = agent(&["--server", "http://127.0.0.1:1", "--token", "x"]);
    assert!(!out.status.success());
}

#[test]
fn simulate_arguments_are_checked_before_connecting() {
    let base = ["--server", "https://127.0.0.1:1", "--token", "x"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        agent(&args)
    };
    // No fleet of zero, and simulated agents run nothing, so they record no process groups.
    // Each is a usage error (exit 2) naming the option, before the token is even looked at.
    for (args, names) in [
        (&["--simulate", "0"][..], "--simulate"),
        (&["--simulate", "5", "--state-dir", "/tmp/x"], "--state-dir"),
        (
            &["--simulate", "5", "--simulate-per-connection", "500"],
            "--simulate-per-connection",
        ),
        (&["--simulate-run-ms", "5"], "--simulate"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(names), "{args:?}: {err}");
    }
    // A token that is not a FluxForge token cannot mint agent tokens.
    let out = run(&["--simulate", "5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a FluxForge token"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let help = agent(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--simulate-run-ms"));
}
