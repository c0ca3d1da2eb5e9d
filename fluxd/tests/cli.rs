//! Start-up failures of the real `fluxd` binary: clear errors, non-zero exit, nothing touched.

use std::process::Command;

fn fluxd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fluxd"))
        .args(args)
        .env("FLUX_LOG", "error")
        .output()
        .expect("run fluxd")
}

/// `fluxd --listen 127.0.0.1:0 --data-dir DATA` with `extra` after.
fn fluxd_in(data: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    fluxd(&args)
}

#[test]
fn foreign_store_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("not-a-store.redb");
    std::fs::write(&store, b"this is somebody's spreadsheet").unwrap();
    let spec = format!("redb:{}", store.display());
    let data = dir.path().join("data");
    let out = fluxd_in(&data, &["--store", &spec]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-a-store.redb"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        b"this is somebody's spreadsheet"
    );
}

#[test]
fn unknown_store_scheme_and_unreachable_redis_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (spec, needle) in [
        ("etcd://x", "etcd"),
        ("redis://127.0.0.1:1/0", "127.0.0.1:1"),
    ] {
        let out = fluxd_in(&data, &["--store", spec]);
        assert!(!out.status.success(), "{spec}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{spec}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn corrupt_signing_key_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = data.join("signing-key.json");
    std::fs::write(&key, b"{oops").unwrap();
    let out = fluxd_in(&data, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signing-key.json"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), b"{oops");
}

/// The testing-only switches are not offered in `--help` and cannot be used by accident: each
/// needs a history log, which only chaos runs set.
#[test]
fn unsafe_testing_switches_are_hidden_and_need_a_history_log() {
    let help = fluxd(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--history-log"), "{text}");
    assert!(!text.contains("unsafe"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for flag in ["--unsafe-no-fencing", "--unsafe-ignore-lease"] {
        let out = fluxd_in(&data, &[flag]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--history-log"), "{flag}: {err}");
        assert!(!data.exists(), "{flag}: nothing may be created");
    }
}

/// Arguments out of range are refused before anything is created.
#[test]
fn zero_intervals_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    for (args, needle) in [
        (
            vec!["--audit-verify-every", "0s"],
            "--audit-verify-every must be above zero",
        ),
        (
            vec![
                "--backup-dir",
                backups.to_str().unwrap(),
                "--backup-keep",
                "0",
            ],
            "--backup-keep and --backup-every must be above zero",
        ),
        (vec!["--lease-ttl", "0s"], "lease settings"),
    ] {
        let out = fluxd_in(&data, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!data.exists(), "{args:?}: nothing may be created");
    }
}
