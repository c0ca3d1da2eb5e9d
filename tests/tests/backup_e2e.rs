//! Backups end to end: `fluxctl backup create/verify/restore` against real `fluxd` nodes on the
//! embedded store and on a real `redis-server`, and scheduled backups.

use std::path::Path;
use std::time::Duration;

use flux_core::backup;
use flux_core::testing::RedisServer;
use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// The contents of a backup file, well formed (not authenticated: see [`key_of`]).
fn decode(path: &Path) -> backup::Backup {
    backup::inspect(&std::fs::read(path).unwrap()).expect("a valid backup")
}

/// The backup key of `d`'s cluster, from its signing key file.
fn key_of(d: &Fluxd) -> backup::BackupKey {
    backup::BackupKey::from_signing_key(&d.signing_key()).unwrap()
}

/// What someone who can write a backup file but has no key does (the review's `tamper.py`):
/// add a job and its pending entry for another tenant, recompute the checksum and the count.
fn tamper(text: &str, tenant: &str, marker: &Path) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let old_end: Value = serde_json::from_str(&lines.pop().unwrap()).unwrap();
    let template: Value = lines[1..]
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["path"].as_str().unwrap().starts_with("jobs/"))
        .map(|l| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(l["value"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice(&raw).unwrap()
        })
        .expect("a job to copy");
    let id = "j-0000000000000000000000000000beef";
    let mut job = template;
    job["job_id"] = id.into();
    job["tenant"] = tenant.into();
    job["command"] = json!({"shell": format!("echo injected > {}", marker.display())});
    for (path, version, value) in [
        (format!("jobs/{id}"), 900_001u64, job),
        (
            format!("pending/{id}"),
            900_002,
            json!({"priority": 0, "node_id": "web-1"}),
        ),
    ] {
        lines.push(
            json!({"tenant": tenant, "path": path, "version": version, "value": b64(&value)})
                .to_string(),
        );
    }
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    };
    // The old MAC is kept: without the key there is nothing better to put there.
    let end =
        json!({"end": true, "objects": lines.len() - 1, "sha256": sha, "mac": old_end["mac"]});
    format!("{body}{end}\n")
}

/// `later` holds every object of `earlier` unchanged; the only differences are audit records
/// appended since (taking a backup and restoring are audited calls), the chain heads, and
/// token revocations made since (a restore keeps them).
fn same_but_newer_audit(earlier: &backup::Backup, later: &backup::Backup) {
    // The leader marks a tenant's jobs indexed once it has looked at them all (again after a
    // restore of a backup taken before).
    let is_head = |e: &flux_core::store::Entry| {
        e.key.path() == "audit_head"
            || e.key.path() == flux_core::audit::RESTORE_MARK
            || e.key.path() == flux_core::keys::JOB_INDEX_BUILT
    };
    for e in earlier.entries.iter().filter(|e| !is_head(e)) {
        assert!(
            later.entries.contains(e),
            "{} changed or went missing",
            e.key
        );
    }
    for e in later.entries.iter().filter(|e| !is_head(e)) {
        assert!(
            earlier.entries.contains(e)
                || e.key.path().starts_with("audit/")
                || e.key.path().starts_with("revoked/"),
            "{} is new",
            e.key
        );
    }
}

/// Jobs, a desired state and a revoked token in two tenants, with no agent to change them.
async fn populate(d: &Fluxd) -> String {
    let acme = d.token("acme", "operator", None).await;
    let job = d
        .submit(
            &acme,
            &json!({"command": "echo kept", "node_id": "nowhere", "allow_unknown_node": true}),
        )
        .await;
    d.admin_post_expect(
        "/v1/states",
        &json!({"states": [{"name": "motd", "targets": {"agents": ["nowhere"]}, "check": "true", "apply": "true"}]}),
        200,
    )
    .await;
    let doomed = d.token("acme", "viewer", None).await;
    assert!(
        d.fluxctl(&d.admin, &["token", "revoke", &doomed])
            .status
            .success()
    );
    job
}

/// Backup, change things, restore: refused on a non-empty store without --force (nothing
/// changes), then every object is back exactly as it was; the fencing epoch ends above every
/// epoch issued before, and the leader is re-elected in a newer term.
#[tokio::test(flavor = "multi_thread")]
async fn backup_then_restore_brings_back_every_object_and_fences_older_leaders() {
    let d = Fluxd::start().await;
    let job = populate(&d).await;
    let leaked = d.token("default", "operator", None).await;
    let dir = tempfile::tempdir().unwrap();
    let b1 = dir.path().join("one.backup");
    let out = d.fluxctl(&d.admin, &["backup", "create", b1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = decode(&b1);
    let tenants: Vec<&str> = first.tenants().into_iter().collect();
    assert_eq!(tenants, vec!["_system", "acme", "default"], "{first:?}");
    let out = d.fluxctl(
        &d.admin,
        &["backup", "verify", b1.to_str().unwrap(), "-o", "json"],
    );
    let summary = json_of(&out);
    assert_eq!(summary["objects"], first.entries.len());

    // Changes after the backup, among them a token revoked after it leaked.
    ok(&d.fluxctl(&d.admin, &["token", "revoke", &leaked])).unwrap();
    d.submit(
        &d.admin,
        &json!({"command": "echo later", "node_id": "nowhere", "allow_unknown_node": true}),
    )
    .await;
    assert!(
        d.fluxctl(&d.admin, &["delete", "state", "motd"])
            .status
            .success()
    );
    let epoch_before = d.get("/v1/status", &d.admin).await.1["store_epoch"]
        .as_u64()
        .unwrap();

    let out = d.fluxctl(&d.admin, &["backup", "restore", b1.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
    assert_eq!(
        d.get("/v1/states/motd", &d.admin).await.0,
        404,
        "a refused restore changed something"
    );

    let out = d.fluxctl(
        &d.admin,
        &[
            "backup",
            "restore",
            b1.to_str().unwrap(),
            "--force",
            "-o",
            "json",
        ],
    );
    let report = json_of(&out);
    let epoch_after = report["epoch"].as_u64().unwrap();
    assert!(
        epoch_after > epoch_before && epoch_after > first.header.epoch,
        "{report}"
    );
    assert_eq!(report["objects"], first.entries.len());

    let b2 = dir.path().join("two.backup");
    ok(&d.fluxctl(&d.admin, &["backup", "create", b2.to_str().unwrap()])).unwrap();
    let second = decode(&b2);
    same_but_newer_audit(&first, &second);
    // The one record that is new is the restore's own (the chain continues the restored one).
    let new: Vec<String> = second
        .entries
        .iter()
        .filter(|e| !first.entries.iter().any(|f| f.key == e.key))
        .filter(|e| e.key.path().starts_with("audit/"))
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].contains("POST /v1/backup/restore"), "{new:?}");
    let out = d.fluxctl(&d.admin, &["audit", "verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // The term that was running is over: the node leads again only in a newer term.
    eventually(
        "the leader re-elected above the restore epoch",
        T,
        || async {
            let e = d.metric("flux_leader_epoch").await?;
            (e as u64 > epoch_after && d.metric("flux_leader_status").await == Some(1.0))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        d.get(&format!("/v1/jobs/{job}"), &d.admin).await.0,
        404,
        "tenant scoping after restore"
    );
    let acme = d.token("acme", "viewer", None).await;
    let (s, j) = d.get(&format!("/v1/jobs/{job}"), &acme).await;
    assert_eq!((s, j["status"].as_str()), (200, Some("queued")));
    // The listing indexes came back with the records: filtered listings find the job.
    for q in [
        "/v1/jobs",
        "/v1/jobs?status=queued&kind=user",
        "/v1/jobs?node_id=nowhere",
        "/v1/jobs?kind=user&limit=1",
    ] {
        let (s, list) = d.get(q, &acme).await;
        assert_eq!(s, 200, "{q}: {list}");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{q}: {list}");
        assert_eq!(list[0]["job_id"], job.as_str(), "{q}");
    }
    assert_eq!(d.get("/v1/jobs?status=running", &acme).await.1, json!([]));
    assert_eq!(d.get("/v1/states/motd", &d.admin).await.0, 200);
    // The restore did not bring the revoked token back.
    assert_eq!(d.get("/v1/jobs", &leaked).await.0, 401);
}

/// Only admins of the cluster tenant may take or restore backups; a damaged file is refused
/// before anything is written, by fluxctl and by the server.
#[tokio::test(flavor = "multi_thread")]
async fn backups_are_for_cluster_admins_and_damaged_files_change_nothing() {
    let d = Fluxd::start().await;
    populate(&d).await;
    for (tenant, role) in [("acme", "admin"), ("default", "operator")] {
        let t = d.token(tenant, role, None).await;
        let (s, _) = d.get("/v1/backup", &t).await;
        assert_eq!(s, 403, "{tenant}/{role}");
    }
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.backup");
    ok(&d.fluxctl(&d.admin, &["backup", "create", b.to_str().unwrap()])).unwrap();
    let text = std::fs::read_to_string(&b).unwrap();
    let edited = dir.path().join("edited.backup");
    std::fs::write(&edited, text.replacen("\"version\":", "\"version\":1", 1)).unwrap();
    let out = d.fluxctl(&d.admin, &["backup", "verify", edited.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    let out = d.fluxctl(
        &d.admin,
        &["backup", "restore", edited.to_str().unwrap(), "--force"],
    );
    assert!(!out.status.success());
    // The server checks too, whatever the client does.
    let (s, v) = send(
        d.req(
            reqwest::Method::POST,
            "/v1/backup/restore?force=true",
            &d.admin,
        )
        .body(text.replacen("\"version\":", "\"version\":1", 1)),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = send(
        d.req(
            reqwest::Method::POST,
            "/v1/backup/restore?force=true&wipe=1",
            &d.admin,
        )
        .body(text.clone()),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let after = dir.path().join("after.backup");
    ok(&d.fluxctl(&d.admin, &["backup", "create", after.to_str().unwrap()])).unwrap();
    same_but_newer_audit(&decode(&b), &decode(&after));
}

/// A backup of the embedded store restores into a fresh Redis-backed node and back into a
/// fresh embedded one, object for object (the migration path).
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_moves_from_redb_to_redis_and_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Fluxd::start().await;
    let job = populate(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n).display().to_string();
    ok(&a.fluxctl(&a.admin, &["backup", "create", &file("a")])).unwrap();

    let b = Fluxd::start_with(FluxdOpts::peer_of(&a, &redis.url(), &[])).await;
    let out = b.fluxctl(&b.admin, &["backup", "restore", &file("a")]);
    assert!(out.status.success(), "{}", stderr(&out));
    ok(&b.fluxctl(&b.admin, &["backup", "create", &file("b")])).unwrap();
    let (from_redb, from_redis) = (decode(Path::new(&file("a"))), decode(Path::new(&file("b"))));
    assert_eq!(from_redis.header.source_backend, "redis");
    same_but_newer_audit(&from_redb, &from_redis);

    // A node of another cluster (its own signing key) takes the file only with the key of
    // the cluster that signed it.
    let c = Fluxd::start().await;
    let a_key = a.data_dir().join("signing-key.json").display().to_string();
    ok(&c.fluxctl(
        &c.admin,
        &["backup", "restore", &file("b"), "--backup-key", &a_key],
    ))
    .unwrap();
    ok(&c.fluxctl(&c.admin, &["backup", "create", &file("c")])).unwrap();
    same_but_newer_audit(&from_redis, &decode(Path::new(&file("c"))));
    // The restored node serves the data: the job with its original id and content.
    let acme = c.token("acme", "viewer", None).await;
    let (s, j) = c.get(&format!("/v1/jobs/{job}"), &acme).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["command"]["shell"], "echo kept");
    // Its listing indexes made both trips too.
    let on_b = b.token("acme", "viewer", None).await;
    let (s, list) = b.get("/v1/jobs?node_id=nowhere&kind=user", &on_b).await;
    assert_eq!(
        (s, list[0]["job_id"].as_str()),
        (200, Some(job.as_str())),
        "{list}"
    );
    let (s, list) = c.get("/v1/jobs?status=queued&kind=user", &acme).await;
    assert_eq!(
        (s, list[0]["job_id"].as_str()),
        (200, Some(job.as_str())),
        "{list}"
    );
}

/// Scheduled backups: the leader writes one per period, keeps only the newest N, and each one
/// verifies.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_rotate_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = Fluxd::start_args(&[
        "--backup-dir",
        &dir.path().display().to_string(),
        "--backup-every",
        "200ms",
        "--backup-keep",
        "2",
    ])
    .await;
    populate(&d).await;
    let metrics_ok = || async {
        let text = d.metrics_text().await?;
        text.lines()
            .find_map(|l| l.strip_prefix("flux_backups_total{result=\"ok\"} "))
            .and_then(|v| v.parse::<f64>().ok())
    };
    eventually("five scheduled backups", T, || async {
        (metrics_ok().await? >= 5.0).then_some(())
    })
    .await;
    assert!(d.metric("flux_backup_last_success_timestamp_seconds").await > Some(0.0));
    // Stop the node so no backup is being written or pruned while the directory is read.
    let mut d = d;
    terminate(&mut d.proc, "fluxd to exit", T).await;
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "backup"))
        .collect();
    assert!(files.len() <= 2, "{files:?}");
    assert!(!files.is_empty());
    let key = key_of(&d);
    for f in files {
        let b = backup::decode(&std::fs::read(&f).unwrap(), &key).expect("signed by the node");
        assert!(b.tenants().contains("acme"), "{f:?}");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&f).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{f:?}");
    }
}

/// A backup edited by someone without the key (a job for another tenant added, the checksum
/// recomputed) is refused by `backup verify` (server and offline) and by `backup restore`, and
/// nothing changes; the untouched file verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_backup_with_a_recomputed_checksum_is_refused_and_changes_nothing() {
    let d = Fluxd::start().await;
    populate(&d).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.backup");
    ok(&d.fluxctl(&d.admin, &["backup", "create", good.to_str().unwrap()])).unwrap();
    let marker = dir.path().join("pwned");
    let forged = dir.path().join("forged.backup");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&forged, tamper(&text, "globex", &marker)).unwrap();
    assert!(
        backup::inspect(&std::fs::read(&forged).unwrap()).is_ok(),
        "the forged file is well formed, its checksum right"
    );
    let signing_key = d.data_dir().join("signing-key.json").display().to_string();
    for args in [
        vec!["backup", "verify", forged.to_str().unwrap()],
        vec![
            "backup",
            "verify",
            forged.to_str().unwrap(),
            "--signing-key",
            &signing_key,
        ],
        vec!["backup", "restore", forged.to_str().unwrap(), "--force"],
    ] {
        let out = d.fluxctl(&d.admin, &args);
        assert!(!out.status.success(), "{args:?} accepted a forged backup");
        assert!(stderr(&out).contains("MAC"), "{args:?}: {}", stderr(&out));
    }
    // The server refuses it whatever the client does.
    let (s, v) = send(
        d.req(
            reqwest::Method::POST,
            "/v1/backup/restore?force=true",
            &d.admin,
        )
        .body(std::fs::read(&forged).unwrap()),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let globex = d.token("globex", "admin", None).await;
    let (s, _) = d
        .get("/v1/jobs/j-0000000000000000000000000000beef", &globex)
        .await;
    assert_eq!(s, 404, "the injected job exists");
    let after = dir.path().join("after.backup");
    ok(&d.fluxctl(&d.admin, &["backup", "create", after.to_str().unwrap()])).unwrap();
    same_but_newer_audit(&decode(&good), &decode(&after));
    // The untouched file verifies, by the server and offline.
    ok(&d.fluxctl(&d.admin, &["backup", "verify", good.to_str().unwrap()])).unwrap();
    let out = ok(&d.fluxctl(
        &d.admin,
        &[
            "backup",
            "verify",
            good.to_str().unwrap(),
            "--signing-key",
            &signing_key,
        ],
    ))
    .unwrap();
    assert!(out.contains("checked offline"), "{out}");
    assert!(backup::decode(&std::fs::read(&good).unwrap(), &key_of(&d)).is_ok());
}

/// A backup signed by another cluster's key is refused (saying so) and changes nothing,
/// unless that cluster's key is given explicitly.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_another_cluster_restores_only_with_that_clusters_key() {
    let a = Fluxd::start().await;
    let job = populate(&a).await;
    let b = Fluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.backup").display().to_string();
    ok(&a.fluxctl(&a.admin, &["backup", "create", &file])).unwrap();
    for args in [
        vec!["backup", "verify", &file],
        vec!["backup", "restore", &file, "--force"],
    ] {
        let out = b.fluxctl(&b.admin, &args);
        assert!(!out.status.success(), "{args:?} accepted a foreign backup");
        assert!(
            stderr(&out).contains("another cluster's key"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let acme = b.token("acme", "viewer", None).await;
    assert_eq!(b.get(&format!("/v1/jobs/{job}"), &acme).await.0, 404);
    // A key that is not a backup key is a 400 naming the header.
    let (s, v) = send(
        b.req(reqwest::Method::POST, "/v1/backup/verify", &b.admin)
            .header("x-flux-backup-key", "nothex")
            .body(std::fs::read(&file).unwrap()),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("x-flux-backup-key"), "{v}");

    let a_key = a.data_dir().join("signing-key.json").display().to_string();
    ok(&b.fluxctl(
        &b.admin,
        &["backup", "verify", &file, "--backup-key", &a_key],
    ))
    .unwrap();
    ok(&b.fluxctl(
        &b.admin,
        &[
            "backup",
            "restore",
            &file,
            "--force",
            "--backup-key",
            &a_key,
        ],
    ))
    .unwrap();
    let (s, j) = b.get(&format!("/v1/jobs/{job}"), &acme).await;
    assert_eq!(s, 200, "{j}");
}
