//! The garbage collector (`flux_core::retention::Collector`) against real stores: the embedded
//! redb and a real `redis-server`. Expired objects go with everything they own; unfinished,
//! referenced and idempotency-protected jobs stay; a batch that raced a change deletes nothing;
//! a stale leader's batch is fenced; a backup carries the `gc/state` record.
//!
//! Time never passes on its own: every call takes an explicit `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flux_core::backup::{self, BackupKey};
use flux_core::jobs::{Jobs, JobsConfig};
use flux_core::keys;
use flux_core::model::{
    Agent, AgentState, Job, Millis, OutputChunk, RegisterAgent, Stream, SubmitJob,
};
use flux_core::quota::Quota;
use flux_core::reconcile::RECONCILER;
use flux_core::retention::{Collector, GcState, RetentionConfig};
use flux_core::store::{self, DynStore, Epoch, Expect, Key, StoreError};
use flux_core::testing::{BeforeCommit, RedisServer};

mod common;

use common::{T0, TENANT, exited, open_redb};

const H: Millis = 3600 * 1000;
const D: Millis = 24 * H;

struct Backend {
    store: DynStore,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn redb() -> Backend {
    let (dir, store) = open_redb("s.redb").await;
    Backend {
        store,
        _guard: Box::new(dir),
    }
}

async fn redis() -> Option<Backend> {
    let server = RedisServer::start()?;
    let store = store::open(&server.url()).await.unwrap();
    Some(Backend {
        store,
        _guard: Box::new(server),
    })
}

async fn register(jobs: &Jobs, node: &str, now: Millis) {
    let req = RegisterAgent {
        slots: Some(64),
        ..Default::default()
    };
    jobs.register(TENANT, node, &req, now).await.unwrap();
}

/// The store of `b`, a job service on it (default configuration) and a new term's epoch, with
/// agent `a1` registered at `T0`.
async fn jobs_with_a1(b: &Backend) -> (DynStore, Jobs, Epoch) {
    let store = b.store.clone();
    let jobs = Jobs::new(store.clone(), JobsConfig::default());
    let epoch = store.next_epoch().await.unwrap();
    register(&jobs, "a1", T0).await;
    (store, jobs, epoch)
}

/// Submits a job as `by`, runs it on `a1` with some output, and finishes it at `finished`.
async fn finished_job(
    jobs: &Jobs,
    epoch: Epoch,
    by: &str,
    req: SubmitJob,
    created: Millis,
    finished: Millis,
) -> Job {
    let (job, _) = jobs.submit(TENANT, by, req, created).await.unwrap();
    jobs.schedule_tenant(TENANT, epoch, created, None)
        .await
        .unwrap();
    let job = jobs.get(TENANT, &job.job_id).await.unwrap();
    let att = job.current_attempt.clone().expect("assigned");
    jobs.start(TENANT, "a1", &att, created + 1).await.unwrap();
    for seq in 0..3 {
        jobs.append_output(
            TENANT,
            "a1",
            &att,
            OutputChunk {
                seq,
                stream: Stream::Stdout,
                data: format!("line {seq}\n"),
            },
        )
        .await
        .unwrap();
    }
    jobs.finish(TENANT, "a1", &att, exited(0), finished)
        .await
        .unwrap();
    jobs.get(TENANT, &job.job_id).await.unwrap()
}

fn shell(cmd: &str) -> SubmitJob {
    SubmitJob {
        command: Some(cmd.into()),
        node_id: Some("a1".into()),
        ..Default::default()
    }
}

fn k(path: impl Into<String>) -> Key {
    Key::new(TENANT, path).unwrap()
}

/// Stores desired-state target `name` (an empty record) and its status record `status` on
/// agent `a1`.
async fn put_target(store: &DynStore, name: &str, status: &serde_json::Value) {
    store
        .put(k(keys::state(name)), b"{}".to_vec(), Expect::Absent)
        .await
        .unwrap();
    store
        .put(
            k(keys::status(name, "a1")),
            serde_json::to_vec(status).unwrap(),
            Expect::Absent,
        )
        .await
        .unwrap();
}

async fn exists(store: &DynStore, path: impl Into<String>) -> bool {
    store.get(&k(path)).await.unwrap().is_some()
}

/// Every object the tenant holds under `prefix`.
async fn count(store: &DynStore, prefix: &str) -> usize {
    store.list(TENANT, prefix).await.unwrap().len()
}

async fn gc_state(store: &DynStore) -> GcState {
    serde_json::from_slice(&store.get(&k(keys::GC_STATE)).await.unwrap().unwrap().value).unwrap()
}

/// Runs passes until two whole sweeps in a row delete nothing (at most 200 passes).
async fn settle(c: &mut Collector, quota: &Quota, epoch: Epoch, now: Millis) {
    let mut quiet = 0;
    for _ in 0..200 {
        let r = c.pass(TENANT, quota, epoch, now).await.unwrap();
        // Pages of the longest sweep (jobs, agents or keys) as the store holds them now.
        let most = count(c.store(), keys::JOBS)
            .await
            .max(count(c.store(), keys::AGENTS).await)
            .max(count(c.store(), keys::IDEMPOTENCY).await);
        let pages = most / c.config().batch + 1;
        quiet = if r.deleted.total() > 0 { 0 } else { quiet + 1 };
        if quiet > 2 * pages {
            return;
        }
    }
    panic!("the collector did not settle");
}

async fn expired_objects_go_and_protected_ones_stay(b: Backend) {
    let (store, jobs, epoch) = jobs_with_a1(&b).await;
    let now = T0 + 8 * D;

    let expired = finished_job(&jobs, epoch, "alice", shell("true"), T0, T0 + 1000).await;
    let keyed_expired = finished_job(
        &jobs,
        epoch,
        "alice",
        SubmitJob {
            idempotency_key: Some("deploy-1".into()),
            secret_env: [("TOKEN".to_string(), "s3cret-value".to_string())].into(),
            ..shell("make deploy")
        },
        T0,
        T0 + 2000,
    )
    .await;
    let referenced =
        finished_job(&jobs, epoch, RECONCILER, shell("check web"), T0, T0 + 3000).await;
    let unreferenced =
        finished_job(&jobs, epoch, RECONCILER, shell("check web"), T0, T0 + 3500).await;
    // Still queued (pinned to an agent that never comes), however old.
    let (unfinished, _) = jobs
        .submit(
            TENANT,
            "alice",
            SubmitJob {
                node_id: Some("nobody".into()),
                ..shell("sleep 1")
            },
            T0,
        )
        .await
        .unwrap();
    // Ended 3 hours ago: past the tenant's 1h retention, but its key is live for 24h.
    let keyed_live = finished_job(
        &jobs,
        epoch,
        "alice",
        SubmitJob {
            idempotency_key: Some("deploy-2".into()),
            ..shell("make deploy")
        },
        now - 4 * H,
        now - 3 * H,
    )
    .await;
    let young = finished_job(
        &jobs,
        epoch,
        "alice",
        shell("true"),
        now - H,
        now - 10 * 60 * 1000,
    )
    .await;

    // A desired-state target points at one reconciler job.
    let status = serde_json::json!({
        "state": "web", "agent": "a1", "status": "compliant", "spec_version": 1,
        "round": 1, "next_check": now, "failures": 0, "repairs": 0,
        "last_job": referenced.job_id, "events": []
    });
    put_target(&store, "web", &status).await;

    // A dead agent seen last 8 days ago goes; the live one stays.
    register(&jobs, "old", T0).await;
    let ak = k(keys::agent("old"));
    let v = store.get(&ak).await.unwrap().unwrap();
    let mut old: Agent = serde_json::from_slice(&v.value).unwrap();
    old.state = AgentState::Dead;
    store
        .put(
            ak,
            serde_json::to_vec(&old).unwrap(),
            Expect::Version(v.version),
        )
        .await
        .unwrap();

    assert!(count(&store, &keys::job_output(&expired.job_id)).await > 0);

    let cfg = RetentionConfig {
        batch: 2,
        ..RetentionConfig::default()
    };
    let quota = Quota {
        job_retention_secs: Some(3600),
        ..Quota::default()
    };
    let mut c = Collector::new(store.clone(), cfg);
    settle(&mut c, &quota, epoch, now).await;

    for gone in [&expired, &keyed_expired, &unreferenced] {
        let id = &gone.job_id;
        assert!(!exists(&store, keys::job(id)).await, "{id} should be gone");
        assert_eq!(count(&store, &keys::attempts(id)).await, 0, "{id}");
        assert_eq!(count(&store, &keys::job_output(id)).await, 0, "{id}");
        assert!(!exists(&store, keys::secrets(id)).await, "{id}");
    }
    assert!(!exists(&store, keys::idempotency("deploy-1")).await);
    for kept in [&referenced, &unfinished, &keyed_live, &young] {
        let id = &kept.job_id;
        assert!(exists(&store, keys::job(id)).await, "{id} should stay");
    }
    assert!(count(&store, &keys::job_output(&young.job_id)).await > 0);
    assert!(exists(&store, keys::pending(&unfinished.job_id)).await);
    assert!(exists(&store, keys::idempotency("deploy-2")).await);
    assert!(!exists(&store, keys::agent("old")).await);
    assert!(exists(&store, keys::agent("a1")).await);
    // Nothing of the deleted jobs is left in any inbox, nor in the listing indexes; the
    // jobs that stay are still listed.
    assert_eq!(count(&store, keys::INBOX).await, 0);
    let index = store.list(TENANT, keys::JOB_INDEX).await.unwrap();
    for gone in [&expired, &keyed_expired, &unreferenced] {
        assert!(
            !index
                .iter()
                .any(|e| keys::job_index_target(e.key.path()) == Some(gone.job_id.as_str())),
            "an index entry of {} is left",
            gone.job_id
        );
    }
    for kept in [&referenced, &unfinished, &keyed_live, &young] {
        assert!(
            index
                .iter()
                .any(|e| keys::job_index_target(e.key.path()) == Some(kept.job_id.as_str())),
            "{} is not indexed",
            kept.job_id
        );
    }

    let st = gc_state(&store).await;
    assert_eq!(st.deleted.jobs, 2);
    assert_eq!(st.deleted.reconciler_jobs, 1);
    assert_eq!(st.deleted.attempts, 3);
    assert_eq!(st.deleted.output_chunks, 9);
    assert_eq!(st.deleted.idempotency_keys, 1);
    assert_eq!(st.deleted.agents, 1);
    assert_eq!(st.counted.jobs, Some(4));
    assert_eq!(st.counted.agents, Some(1));
    assert_eq!(st.counted.idempotency_keys, Some(1));
    assert_eq!(st.epoch, epoch);

    // Once the key's window has passed, the job it protected goes too, and its key with it.
    settle(&mut c, &quota, epoch, now + 21 * H).await;
    assert!(!exists(&store, keys::job(&keyed_live.job_id)).await);
    assert!(!exists(&store, keys::idempotency("deploy-2")).await);
    assert!(exists(&store, keys::job(&referenced.job_id)).await);
    assert!(exists(&store, keys::job(&unfinished.job_id)).await);

    assert!(!exists(&store, keys::job(&young.job_id)).await);

    // A leader whose epoch was superseded deletes nothing, even what has expired.
    let more = finished_job(&jobs, epoch, "alice", shell("true"), T0, T0 + 5).await;
    let before = store.list(TENANT, "").await.unwrap();
    store.next_epoch().await.unwrap();
    let stale = c
        .pass(TENANT, &quota, epoch, now + 30 * D)
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Fenced { .. }), "{stale:?}");
    assert_eq!(store.list(TENANT, "").await.unwrap(), before);
    assert!(exists(&store, keys::job(&more.job_id)).await);
}

async fn the_count_rule_keeps_the_newest(b: Backend) {
    let (store, jobs, epoch) = jobs_with_a1(&b).await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(finished_job(&jobs, epoch, "alice", shell("true"), T0 + i, T0 + 10 + i).await);
    }
    let quota = Quota {
        job_retention_count: Some(2),
        ..Quota::default()
    };
    let mut c = Collector::new(store.clone(), cfg_batch(2));
    settle(&mut c, &quota, epoch, T0 + H).await;
    let left: Vec<bool> = {
        let mut v = Vec::new();
        for j in &all {
            v.push(exists(&store, keys::job(&j.job_id)).await);
        }
        v
    };
    assert_eq!(left, [false, false, false, true, true]);
    assert_eq!(gc_state(&store).await.counted.finished_user_jobs, Some(2));
    // Once settled, a pass over a tenant that fits one page writes nothing at all (a longer
    // sweep moves its cursor, one small write per pass).
    let before = store.list(TENANT, "").await.unwrap();
    let mut idle = Collector::new(store.clone(), RetentionConfig::default());
    for _ in 0..3 {
        idle.pass(TENANT, &quota, epoch, T0 + H).await.unwrap();
    }
    assert!(
        store.list(TENANT, "").await.unwrap() == before,
        "an idle pass wrote"
    );
}

async fn reconciler_jobs_keep_the_last_n_of_each_target_and_what_records_point_at(b: Backend) {
    let (store, jobs, epoch) = jobs_with_a1(&b).await;
    let mut checks = Vec::new();
    let mut applies = Vec::new();
    for i in 0..5 {
        checks.push(finished_job(&jobs, epoch, RECONCILER, shell("check"), T0 + i, T0 + 10).await);
        applies.push(finished_job(&jobs, epoch, RECONCILER, shell("apply"), T0 + i, T0 + 10).await);
    }
    // The target's record names the oldest check in one of its events.
    let status = serde_json::json!({
        "state": "motd", "agent": "a1", "status": "compliant", "spec_version": 1,
        "round": 5, "next_check": T0, "failures": 0, "repairs": 0,
        "events": [{"at": T0, "kind": "applying", "message": "m", "job_id": checks[0].job_id}]
    });
    put_target(&store, "motd", &status).await;
    let cfg = RetentionConfig {
        reconciler_keep: 2,
        batch: 3,
        ..RetentionConfig::default()
    };
    let mut c = Collector::new(store.clone(), cfg);
    settle(&mut c, &Quota::default(), epoch, T0 + H).await;
    let mut left = Vec::new();
    for j in checks.iter().chain(&applies) {
        left.push(exists(&store, keys::job(&j.job_id)).await);
    }
    assert_eq!(
        left,
        [
            true, false, false, true, true, false, false, false, true, true
        ]
    );
}

async fn a_job_that_changed_after_it_was_read_is_not_deleted(b: Backend) {
    let jobs = Jobs::new(b.store.clone(), JobsConfig::default());
    let epoch = b.store.next_epoch().await.unwrap();
    register(&jobs, "a1", T0).await;
    let job = finished_job(&jobs, epoch, "alice", shell("true"), T0, T0 + 10).await;
    // Just before the collector's batch commits, someone rewrites the job record.
    let fired = Arc::new(AtomicBool::new(false));
    let (inner, jk) = (b.store.clone(), k(keys::job(&job.job_id)));
    let flag = fired.clone();
    let hooked = BeforeCommit::wrap(
        b.store.clone(),
        Box::new(move |txn| {
            let deletes_job = txn.ops.iter().any(|o| {
                matches!(o, flux_core::store::Op::Delete { key, .. } if key.path().starts_with(keys::JOBS))
            });
            if !deletes_job || flag.swap(true, Ordering::SeqCst) {
                return None;
            }
            let (inner, jk) = (inner.clone(), jk.clone());
            Some(Box::pin(async move {
                let v = inner.get(&jk).await.unwrap().unwrap();
                inner
                    .put(jk, v.value, Expect::Version(v.version))
                    .await
                    .unwrap();
            }))
        }),
    );
    let mut c = Collector::new(hooked, RetentionConfig::default());
    let r = c
        .pass(TENANT, &Quota::default(), epoch, T0 + 8 * D)
        .await
        .unwrap();
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!((r.deleted.total(), r.conflicts), (0, 1));
    assert!(exists(&b.store, keys::job(&job.job_id)).await);
    assert_eq!(count(&b.store, &keys::job_output(&job.job_id)).await, 3);
    // Decided again from fresh reads, it goes.
    let r = c
        .pass(TENANT, &Quota::default(), epoch, T0 + 8 * D)
        .await
        .unwrap();
    assert_eq!(r.deleted.jobs, 1);
    assert!(!exists(&b.store, keys::job(&job.job_id)).await);
}

async fn expired_idempotency_keys_name_a_new_job(b: Backend) {
    let jobs = Jobs::new(
        b.store.clone(),
        JobsConfig {
            idempotency_window: Duration::from_secs(3600),
            ..JobsConfig::default()
        },
    );
    let req = SubmitJob {
        idempotency_key: Some("nightly".into()),
        ..shell("backup")
    };
    let (first, created) = jobs.submit(TENANT, "alice", req.clone(), T0).await.unwrap();
    assert!(created);
    // Inside the window: the first job again.
    let (again, created) = jobs
        .submit(TENANT, "alice", req.clone(), T0 + H - 1)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.job_id, first.job_id);
    // After it, before any collection: a new job, and the key names it.
    let (second, created) = jobs
        .submit(TENANT, "alice", req.clone(), T0 + H)
        .await
        .unwrap();
    assert!(created);
    assert_ne!(second.job_id, first.job_id);
    let v = b
        .store
        .get(&k(keys::idempotency("nightly")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.value, second.job_id.as_bytes());
    assert!(exists(&b.store, keys::job(&first.job_id)).await);
    let (third, created) = jobs.submit(TENANT, "alice", req, T0 + H + 5).await.unwrap();
    assert!(!created);
    assert_eq!(third.job_id, second.job_id);
}

async fn a_backup_carries_the_gc_record(b: Backend) {
    let jobs = Jobs::new(b.store.clone(), JobsConfig::default());
    let epoch = b.store.next_epoch().await.unwrap();
    register(&jobs, "a1", T0).await;
    for i in 0..3 {
        finished_job(&jobs, epoch, "alice", shell("true"), T0 + i, T0 + 10).await;
    }
    let cfg = RetentionConfig {
        batch: 2,
        ..RetentionConfig::default()
    };
    let mut c = Collector::new(b.store.clone(), cfg.clone());
    // One pass: the sweep stops half way, its cursor in the record.
    c.pass(TENANT, &Quota::default(), epoch, T0 + 8 * D)
        .await
        .unwrap();
    let before = gc_state(&b.store).await;
    assert!(before.jobs_cursor.is_some());
    assert_eq!(before.deleted.jobs, 2);
    let key = BackupKey::from_audit_key(&[7; 32]);
    let bytes = backup::create(b.store.as_ref(), T0, &key).await.unwrap();
    let fresh = redb().await;
    backup::restore(
        fresh.store.as_ref(),
        backup::decode(&bytes, &key).unwrap(),
        false,
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(gc_state(&fresh.store).await, before);
    // A collector on the restored store resumes from the cursor and finishes the sweep.
    let epoch = fresh.store.current_epoch().await.unwrap();
    let mut c = Collector::new(fresh.store.clone(), cfg);
    let r = c
        .pass(TENANT, &Quota::default(), epoch, T0 + 8 * D)
        .await
        .unwrap();
    assert_eq!(r.deleted.jobs, 1);
    let after = gc_state(&fresh.store).await;
    assert_eq!(after.deleted.jobs, 3);
    assert_eq!(after.jobs_cursor, None);
    assert_eq!(count(&fresh.store, keys::JOBS).await, 0);
}

async fn a_job_with_more_output_than_one_batch_goes_in_pieces_record_last(b: Backend) {
    let jobs = Jobs::new(b.store.clone(), JobsConfig::default());
    let epoch = b.store.next_epoch().await.unwrap();
    register(&jobs, "a1", T0).await;
    let big = finished_job(&jobs, epoch, "alice", shell("yes"), T0, T0 + 10).await;
    let small = finished_job(&jobs, epoch, "alice", shell("true"), T0 + 1, T0 + 11).await;
    let att = big.current_attempt.clone().unwrap();
    // More chunks than one collection transaction may hold.
    let extra = flux_core::retention::MAX_OPS_PER_TXN as u64 + 500;
    for part in 0..4u64 {
        let mut txn = flux_core::store::Txn::new();
        for seq in (3 + part * extra / 4)..(3 + (part + 1) * extra / 4) {
            txn = txn.put(
                k(keys::output_chunk(&att, seq)),
                b"{}".to_vec(),
                Expect::Absent,
            );
        }
        b.store.commit(txn).await.unwrap();
    }
    let chunks = count(&b.store, &keys::job_output(&big.job_id)).await;
    assert_eq!(chunks as u64, extra + 3);
    let mut c = Collector::new(b.store.clone(), RetentionConfig::default());
    // The first pass takes one transaction's worth of chunks; the job record stays meanwhile.
    c.pass(TENANT, &Quota::default(), epoch, T0 + 8 * D)
        .await
        .unwrap();
    let left = count(&b.store, &keys::job_output(&big.job_id)).await;
    assert!(left > 0 && left < chunks, "{left} of {chunks}");
    assert!(exists(&b.store, keys::job(&big.job_id)).await);
    settle(&mut c, &Quota::default(), epoch, T0 + 8 * D).await;
    for j in [&big, &small] {
        assert!(!exists(&b.store, keys::job(&j.job_id)).await);
        assert_eq!(count(&b.store, &keys::job_output(&j.job_id)).await, 0);
    }
}

/// `gc/state.behind_since` opens at the first page that deletes, stays open over a page of
/// unfinished jobs and through a deleting page, and closes at a page of jobs kept for their
/// own reasons (live idempotency keys, the retention being shorter than the window) and at
/// young jobs; a new term restarts it.
async fn the_backlog_opens_while_pages_delete_and_closes_at_kept_or_young_jobs(b: Backend) {
    let (store, jobs, epoch) = jobs_with_a1(&b).await;
    let now = T0 + 2 * H;
    let plain = |i: Millis| (T0 + i, T0 + 10 + i);
    for i in 0..2 {
        let (c, f) = plain(i);
        finished_job(&jobs, epoch, "alice", shell("true"), c, f).await;
    }
    for i in 2..4 {
        let req = SubmitJob {
            node_id: Some("nobody".into()),
            ..shell("sleep 1")
        };
        jobs.submit(TENANT, "alice", req, T0 + i).await.unwrap();
    }
    for i in 4..6 {
        let (c, f) = plain(i);
        finished_job(&jobs, epoch, "alice", shell("true"), c, f).await;
    }
    // Past the 1h retention, inside the 24h key window.
    for i in 6..8 {
        let req = SubmitJob {
            idempotency_key: Some(format!("k-{i}")),
            ..shell("true")
        };
        finished_job(&jobs, epoch, "alice", req, T0 + i, T0 + 10 + i).await;
    }
    for i in 0..2 {
        let c = now - 10 * 60 * 1000 + i;
        finished_job(&jobs, epoch, "alice", shell("true"), c, c + 1000).await;
    }
    let quota = Quota {
        job_retention_secs: Some(3600),
        ..Quota::default()
    };
    let mut c = Collector::new(store.clone(), cfg_batch(2));
    let mut seen = Vec::new();
    for p in 0..5 {
        c.pass(TENANT, &quota, epoch, now + p * 1000).await.unwrap();
        seen.push(gc_state(&store).await.behind_since);
    }
    // Pages: deleting (opens), unfinished (unchanged), deleting (kept open), keyed (closes),
    // young (closed).
    assert_eq!(seen, [Some(now), Some(now), Some(now), None, None]);
    let max = Some(Duration::from_secs(60));
    let late = flux_core::retention::backlog(seen[0], now + 61_000, max).expect("refused");
    assert_eq!(late.lag, Duration::from_millis(61_000));

    // A new term restarts an open run: a backlog left by a leader long gone is not counted
    // from its start.
    for i in 0..4 {
        let (c, f) = plain(100 + i);
        finished_job(&jobs, epoch, "alice", shell("true"), c, f).await;
    }
    let later = now + H;
    c.pass(TENANT, &quota, epoch, later).await.unwrap();
    let opened = gc_state(&store).await.behind_since;
    assert_eq!(opened, Some(later));
    let next = store.next_epoch().await.unwrap();
    let mut successor = Collector::new(store.clone(), cfg_batch(2));
    successor
        .pass(TENANT, &quota, next, later + 5000)
        .await
        .unwrap();
    assert_eq!(gc_state(&store).await.behind_since, Some(later + 5000));
}

fn cfg_batch(batch: usize) -> RetentionConfig {
    RetentionConfig {
        batch,
        ..RetentionConfig::default()
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::redb().await).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    // None only when redis-server is absent and not required.
                    let Some(b) = super::redis().await else { return };
                    super::$name(b).await;
                }
            )*
        }
    };
}

on_both_backends!(
    expired_objects_go_and_protected_ones_stay,
    the_count_rule_keeps_the_newest,
    a_job_that_changed_after_it_was_read_is_not_deleted,
    expired_idempotency_keys_name_a_new_job,
    a_backup_carries_the_gc_record,
    reconciler_jobs_keep_the_last_n_of_each_target_and_what_records_point_at,
    a_job_with_more_output_than_one_batch_goes_in_pieces_record_last,
    the_backlog_opens_while_pages_delete_and_closes_at_kept_or_young_jobs,
);
