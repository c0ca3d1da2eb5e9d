//! The audit log end to end: mutating calls recorded on a hash chain, read and verified with
//! fluxctl, and a record edited directly in the (real Redis) store caught by `fluxctl audit
//! verify` and by the leader's periodic check (`flux_integrity_mismatch_total`).

use std::time::Duration;

use flux_core::store::{self, Expect, Key};
use flux_core::testing::RedisServer;
use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn mutating_calls_are_chained_and_tampering_is_caught() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = Fluxd::start_args(&[
        "--store",
        redis.url().as_str(),
        "--audit-verify-every",
        "200ms",
    ])
    .await;
    d.admin_post_expect(
        "/jobs",
        &json!({"command": "true", "node_id": "nowhere", "allow_unknown_node": true}),
        202,
    )
    .await;
    let acme_admin = d.token("acme", "admin", None).await;
    let (s, _) = send(
        d.req(reqwest::Method::PUT, "/v1/states/motd", &d.admin).json(
            &json!({"name": "motd", "targets": {"agents": ["x"]}, "check": "true", "apply": "true"}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    // Reads and failed calls are not recorded.
    assert_eq!(d.get("/v1/jobs", &d.admin).await.0, 200);
    let (s, _) = d.post("/v1/jobs", &d.admin, &json!({"command": ""})).await;
    assert_eq!(s, 422);

    let out = d.fluxctl(&d.admin, &["audit", "log", "-o", "json"]);
    let recs = json_of(&out);
    let actions = field_strs(&recs, "action");
    assert_eq!(
        actions,
        vec!["POST /jobs", "POST /v1/tokens", "PUT /v1/states/{name}"],
        "{recs}"
    );
    let put = &recs[2];
    assert_eq!(put["object"], "/v1/states/motd");
    assert!(put["version"].as_u64().is_some(), "{put}");
    assert_eq!(recs[1]["prev_hash"], recs[0]["hash"]);
    assert!(
        !recs.to_string().contains("eyJ"),
        "a token reached the audit log"
    );

    let out = d.fluxctl(&d.admin, &["audit", "verify"]);
    assert!(ok(&out).unwrap().contains("default: ok, 3 records"));
    // The acme admin sees acme's (empty) trail only.
    let (s, v) = d.get("/v1/audit", &acme_admin).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(d.get("/v1/audit?tenant=default", &acme_admin).await.0, 404);
    let operator = d.token("default", "operator", None).await;
    assert_eq!(d.get("/v1/audit", &operator).await.0, 403);
    // A few integrity checks have passed without a mismatch.
    d.wait_metric_at_least(
        "two integrity checks",
        "flux_integrity_checks_total",
        2.0,
        T,
    )
    .await;
    assert_eq!(d.metric("flux_integrity_mismatch_total").await, Some(0.0));

    // Someone with access to Redis rewrites record 2's actor.
    let direct = store::open(&redis.url()).await.unwrap();
    let k = Key::new("default", "audit/0000000000000002").unwrap();
    let mut rec: Value =
        serde_json::from_slice(&direct.get(&k).await.unwrap().unwrap().value).unwrap();
    rec["actor"] = json!("someone-else");
    direct
        .put(k, serde_json::to_vec(&rec).unwrap(), Expect::Any)
        .await
        .unwrap();

    let out = d.fluxctl(&d.admin, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("record 2 was altered"),
        "{}",
        stdout(&out)
    );
    mismatch_counted(&d).await;
    assert!(
        d.proc
            .log_text()
            .contains("audit log integrity check failed")
    );
}

/// Number of records in `tenant`'s chain (verified).
async fn chain_len(d: &Fluxd, tenant: &str) -> u64 {
    let (s, v) = d
        .get(&format!("/v1/audit/verify?tenant={tenant}"), &d.admin)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["ok"], true, "{v}");
    v[0]["records"].as_u64().unwrap()
}

/// A viewer's dry-run apply changes nothing and is not recorded (however many); a real apply
/// is, and every record names the caller's token: its id, role and issuer, shown by
/// `fluxctl audit log`.
#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_are_not_audited_and_records_name_the_callers_token() {
    let d = Fluxd::start().await;
    let viewer = d.token("acme", "viewer", None).await;
    let operator = d.token("acme", "operator", None).await;
    let states = json!({"states": [{"name": "motd", "targets": {"agents": ["nowhere"]}, "check": "true", "apply": "true"}]});
    let (s, v) = d.post("/v1/states", &operator, &states).await;
    assert_eq!(s, 200, "{v}");
    let before = chain_len(&d, "acme").await;
    assert_eq!(before, 1);
    let mut dry = states.clone();
    dry["dry_run"] = true.into();
    dry["states"][0]["check"] = "false".into();
    for _ in 0..5 {
        let (s, v) = d.post("/v1/states", &viewer, &dry).await;
        assert_eq!(s, 200, "{v}");
    }
    // An apply that finds everything as declared writes nothing either.
    let (s, v) = d.post("/v1/states", &operator, &states).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        chain_len(&d, "acme").await,
        before,
        "a call that changed nothing was recorded"
    );
    let (s, v) = d.post("/v1/states", &operator, &dry).await;
    assert_eq!(s, 200, "{v}");
    let mut change = states.clone();
    change["states"][0]["check"] = "false".into();
    let (s, v) = d.post("/v1/states", &operator, &change).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(chain_len(&d, "acme").await, before + 1);

    let claims = flux_core::auth::peek_claims(&operator).unwrap();
    let out = d.fluxctl(
        &d.admin,
        &["audit", "log", "--tenant", "acme", "-o", "json"],
    );
    let recs = json_of(&out);
    let last = recs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["jti"], claims.jti.as_str(), "{last}");
    assert_eq!(last["role"], "operator", "{last}");
    assert_eq!(last["issuer"], claims.iss.as_str(), "{last}");
    let table = ok(&d.fluxctl(&d.admin, &["audit", "log", "--tenant", "acme"])).unwrap();
    assert!(
        table.contains("ROLE") && table.contains("operator"),
        "{table}"
    );
    // The records written with these fields verify.
    let out = d.fluxctl(&d.admin, &["audit", "verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// Stops `d` gracefully.
async fn stop(d: &mut Fluxd) {
    terminate(&mut d.proc, "fluxd to exit", T).await;
}

/// Stops `d` gracefully and starts it again on the same port and data dir with `args`.
async fn restart(d: &mut Fluxd, args: &[&str]) {
    stop(d).await;
    start_again(d, args).await;
}

/// Starts the stopped `d` again on the same port and data dir with `args`.
async fn start_again(d: &mut Fluxd, args: &[&str]) {
    d.start_again(args).await;
}

const VERIFY_OFTEN: [&str; 2] = ["--audit-verify-every", "200ms"];

async fn submit(d: &Fluxd, token: &str, n: usize) {
    for _ in 0..n {
        d.submit(
            token,
            &json!({"command": "true", "node_id": "nowhere", "allow_unknown_node": true}),
        )
        .await;
    }
}

/// Waits (up to `T`) until the periodic integrity check has counted a mismatch.
async fn mismatch_counted(d: &Fluxd) {
    d.wait_metric_at_least(
        "the periodic check to count the mismatch",
        "flux_integrity_mismatch_total",
        1.0,
        T,
    )
    .await;
}

/// A node checking integrity often, an operator token of tenant `acme`, and two jobs that
/// token submitted (so the tenant's audit chain has records).
async fn verified_with_two_acme_jobs() -> (Fluxd, String) {
    let d = Fluxd::start_args(&VERIFY_OFTEN).await;
    let acme = d.token("acme", "operator", None).await;
    submit(&d, &acme, 2).await;
    (d, acme)
}

/// `fluxctl audit export --before 0s <file>` as the admin: every record so far into `file`;
/// it succeeds and says `says` on stderr.
fn export_all(d: &Fluxd, file: &std::path::Path, says: &str) {
    let out = d.fluxctl(
        &d.admin,
        &["audit", "export", "--before", "0s", file.to_str().unwrap()],
    );
    ok(&out).unwrap();
    assert!(stderr(&out).contains(says), "{}", stderr(&out));
}

/// Integrity checks completed after now.
async fn checks_pass(d: &Fluxd, n: f64) {
    let start = d.metric("flux_integrity_checks_total").await.unwrap_or(0.0);
    d.wait_metric_at_least(
        "integrity checks to run",
        "flux_integrity_checks_total",
        start + n,
        T,
    )
    .await;
}

/// The whole store put back to an older copy while fluxd was down (records and heads cut back
/// together, consistent in themselves): after the restart, `audit verify` fails and the
/// leader's check counts a mismatch, because the node's checkpoint file remembers.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_cut_back_while_fluxd_was_down_is_caught_after_the_restart() {
    let (mut d, acme) = verified_with_two_acme_jobs().await;
    // A copy of the store as it is now, taken while fluxd is down.
    stop(&mut d).await;
    let old = d.dir.path().join("old.redb");
    std::fs::copy(d.data_dir().join("flux.redb"), &old).unwrap();
    start_again(&mut d, &VERIFY_OFTEN).await;
    submit(&d, &acme, 3).await;
    let out = d.fluxctl(&d.admin, &["audit", "verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(chain_len(&d, "acme").await, 5);

    // Down, the older store copied back, up again.
    stop(&mut d).await;
    std::fs::copy(&old, d.data_dir().join("flux.redb")).unwrap();
    start_again(&mut d, &VERIFY_OFTEN).await;
    let out = d.fluxctl(&d.admin, &["audit", "verify", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("cut off"), "{}", stdout(&out));
    mismatch_counted(&d).await;
}

/// A restore through the API shortens chains legitimately: `audit verify` stays ok and says
/// the chain was restored, no mismatch is counted, before and after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_through_the_api_is_not_taken_for_tampering() {
    let (mut d, acme) = verified_with_two_acme_jobs().await;
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.backup").display().to_string();
    ok(&d.fluxctl(&d.admin, &["backup", "create", &b])).unwrap();
    submit(&d, &acme, 3).await;
    assert_eq!(chain_len(&d, "acme").await, 5);
    checks_pass(&d, 1.0).await;
    ok(&d.fluxctl(&d.admin, &["backup", "restore", "--force", &b])).unwrap();
    let (s, v) = d.get("/v1/audit/verify?tenant=acme", &d.admin).await;
    assert_eq!(s, 200);
    assert_eq!(
        (v[0]["ok"].as_bool(), v[0]["records"].as_u64()),
        (Some(true), Some(2)),
        "{v}"
    );
    // Reported as a restore by whichever verification saw it first: this call (its note) or
    // the leader's periodic check (its log).
    let noted = v[0]["note"]
        .as_str()
        .unwrap_or_default()
        .contains("restored from a backup");
    eventually("the restore to be reported as one", T, || async {
        (noted || d.proc.log_text().contains("superseded by a restore")).then_some(())
    })
    .await;
    checks_pass(&d, 2.0).await;
    assert_eq!(d.metric("flux_integrity_mismatch_total").await, Some(0.0));
    restart(&mut d, &VERIFY_OFTEN).await;
    checks_pass(&d, 2.0).await;
    let out = d.fluxctl(&d.admin, &["audit", "verify", "--all"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(d.metric("flux_integrity_mismatch_total").await, Some(0.0));
}

/// `fluxctl audit export` writes the oldest records and a signed checkpoint; `audit verify
/// --file` passes the file and fails an edited one; with `--audit-retention` the leader then
/// prunes the exported records (only those), and what remains still verifies from its base.
#[tokio::test(flavor = "multi_thread")]
async fn exported_records_are_pruned_and_an_edited_export_fails_its_check() {
    let d = Fluxd::start_args(&["--audit-verify-every", "200ms", "--audit-retention", "1ms"]).await;
    submit(&d, &d.admin, 5).await;
    // Nothing was exported: the checks prune nothing, however old the records.
    checks_pass(&d, 2.0).await;
    assert_eq!(d.metric("flux_audit_pruned_total").await, Some(0.0));
    assert_eq!(chain_len(&d, "default").await, 5);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit-export.json");
    export_all(&d, &file, "exported records 1..=5 of tenant default");
    let out = d.fluxctl(
        &d.admin,
        &["audit", "verify", "--file", file.to_str().unwrap()],
    );
    assert!(
        ok(&out).unwrap().contains("default: ok, records 1..=5"),
        "{}",
        stdout(&out)
    );
    // An edited copy fails (exit 1), naming the record.
    let mut edited: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    edited["records"][2]["actor"] = json!("someone-else");
    let bad = dir.path().join("edited.json");
    std::fs::write(&bad, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = d.fluxctl(
        &d.admin,
        &["audit", "verify", "--file", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("record 3 was altered"),
        "{}",
        stdout(&out)
    );
    // Not an export at all: a clear refusal.
    std::fs::write(&bad, b"[1, 2").unwrap();
    let out = d.fluxctl(
        &d.admin,
        &["audit", "verify", "--file", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an audit export"),
        "{}",
        stderr(&out)
    );

    // The five exported records go; the export's own record and the later ones stay.
    d.wait_metric_at_least(
        "the exported records to be pruned",
        "flux_audit_pruned_total",
        5.0,
        T,
    )
    .await;
    submit(&d, &d.admin, 2).await;
    checks_pass(&d, 2.0).await;
    assert_eq!(d.metric("flux_audit_pruned_total").await, Some(5.0));
    let out = d.fluxctl(
        &d.admin,
        &["audit", "log", "--all", "--limit", "1", "-o", "json"],
    );
    let recs = json_of(&out);
    let seqs: Vec<u64> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&6), "{recs}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let out = d.fluxctl(&d.admin, &["audit", "verify"]);
    let text = ok(&out).unwrap();
    assert!(text.contains("default: ok"), "{text}");
    assert_eq!(d.metric("flux_integrity_mismatch_total").await, Some(0.0));
    // A second export continues where the first ended.
    let next = dir.path().join("next.json");
    export_all(&d, &next, "exported records 6..=");
}
