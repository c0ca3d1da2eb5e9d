//! A store that runs out of disk: submissions are refused early below `--min-free-disk`; on a
//! really full filesystem (a small tmpfs this test mounts) fluxd answers 503, `/readyz` fails
//! with the reason, nothing acknowledged is lost, and everything works again once space is freed,
//! without a restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flux_tests::{Fluxd, error_message, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_free_disk_submissions_get_507_and_nothing_is_written() {
    let d = Fluxd::start_args(&["--min-free-disk", "1000000TiB"]).await;
    let (code, body) = d
        .post("/v1/jobs", &d.admin, &json!({"command": "true"}))
        .await;
    assert_eq!(code, 507, "{body}");
    assert!(error_message(&body).contains("--min-free-disk"), "{body}");
    let (code, list) = d.get("/v1/jobs", &d.admin).await;
    assert_eq!(code, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    // The store itself is fine: the node stays ready.
    assert_eq!(d.get("/readyz", "").await.0, 200);
    assert!(d.metric("flux_disk_refusals_total").await >= Some(1.0));
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.path().to_path_buf(), dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_fluxd_unready_until_space_is_freed() {
    let Some(fs) = Tmpfs::mount("32m") else {
        assert!(
            std::env::var_os("FLUX_REQUIRE_TMPFS").is_none(),
            "cannot mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let d = Fluxd::start_args(&[
        "--store",
        &format!("redb:{}", fs.0.join("flux.redb").display()),
        "--min-free-disk",
        "0",
    ])
    .await;
    let filler = fs.0.join("filler");
    fill(&filler);
    // Submit until the store cannot commit any more (bounded in count and time).
    let started = std::time::Instant::now();
    let mut accepted = Vec::new();
    let padding = "x".repeat(16 * 1024);
    let refusal = loop {
        assert!(
            accepted.len() < 5000 && started.elapsed() < Duration::from_secs(60),
            "the full disk never refused a write"
        );
        let (code, body) = d
            .post(
                "/v1/jobs",
                &d.admin,
                &json!({"command": format!("echo {padding}")}),
            )
            .await;
        match code {
            202 => accepted.push(body["job_id"].as_str().unwrap().to_string()),
            _ => break (code, body),
        }
    };
    assert_eq!(
        refusal.0, 503,
        "a full disk is the server's trouble: {}",
        refusal.1
    );
    let (code, body) = d.get("/readyz", "").await;
    assert_eq!(code, 503, "not ready while the store cannot commit: {body}");
    assert!(error_message(&body).contains("No space left"), "{body}");
    assert_eq!(d.metric("flux_store_writable").await, Some(0.0));

    std::fs::remove_file(&filler).unwrap();
    eventually(
        "readiness to come back",
        Duration::from_secs(20),
        || async { (d.get("/readyz", "").await.0 == 200).then_some(()) },
    )
    .await;
    let (code, body) = d
        .post("/v1/jobs", &d.admin, &json!({"command": "true"}))
        .await;
    assert_eq!(code, 202, "{body}");
    for id in &accepted {
        let (code, _) = d.get(&format!("/v1/jobs/{id}"), &d.admin).await;
        assert_eq!(code, 200, "acknowledged job {id} lost");
    }
    drop(d);
}
