//! File modes end to end: what fluxd and fluxctl write holds every tenant's data (secrets of
//! running jobs included), so it is owner-only even where the directory around it is not, and
//! nothing is written through a file or a symlink that was already there.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use flux_tests::*;

const T: Duration = Duration::from_secs(30);

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// With a data dir that already exists at 0755, the store is created 0600 and `tls/` 0700.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_dir_store_and_tls_dir_are_owner_only_in_an_existing_open_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let mut cmd = std::process::Command::new(bin("fluxd"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--node-id")
        .arg("files-1");
    let _proc = Proc::spawn("fluxd", cmd, dir.path().join("fluxd.log")).unwrap();
    let url = format!("https://127.0.0.1:{port}/readyz");
    eventually("fluxd to come up", T, || {
        let (data, url) = (data.clone(), url.clone());
        async move {
            let ca = std::fs::read(data.join("tls/ca.crt")).ok()?;
            let http = client_with_ca(&ca).ok()?;
            let r = http.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    assert_eq!(mode(&data), 0o700, "the data dir");
    assert_eq!(mode(&data.join("flux.redb")), 0o600, "flux.redb");
    assert_eq!(mode(&data.join("tls")), 0o700, "tls/");
    for f in [
        "signing-key.json",
        "admin.token",
        "tls/ca.key",
        "tls/server.key",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
}

/// `fluxctl backup create` next to a world-readable `NAME.partial` and a symlinked one (where
/// earlier versions wrote through): the backups are regular 0600 files, the link's target and
/// the old files untouched.
#[tokio::test(flavor = "multi_thread")]
async fn backup_create_never_writes_through_an_existing_file_or_symlink() {
    let d = Fluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("nightly.partial"), b"old").unwrap();
    std::fs::set_permissions(p("nightly.partial"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(p("leak.txt"), b"").unwrap();
    std::fs::set_permissions(p("leak.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(p("leak.txt"), p("two.partial")).unwrap();
    // An existing world-readable backup of the same name is replaced, not rewritten.
    std::fs::write(p("two.backup"), b"stale").unwrap();
    std::fs::set_permissions(p("two.backup"), std::fs::Permissions::from_mode(0o644)).unwrap();
    for name in ["nightly.backup", "two.backup"] {
        let out = d.fluxctl(&d.admin, &["backup", "create", p(name).to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let meta = std::fs::symlink_metadata(p(name)).unwrap();
        assert!(meta.is_file(), "{name} is not a regular file");
        assert_eq!(mode(&p(name)), 0o600, "{name}");
        let text = std::fs::read_to_string(p(name)).unwrap();
        assert!(
            text.starts_with("{\"format\":\"fluxforge-backup\""),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(p("leak.txt")).unwrap(),
        b"",
        "written through the link"
    );
    assert_eq!(mode(&p("leak.txt")), 0o644);
    assert_eq!(std::fs::read(p("nightly.partial")).unwrap(), b"old");
    assert!(
        std::fs::symlink_metadata(p("two.partial"))
            .unwrap()
            .is_symlink()
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
