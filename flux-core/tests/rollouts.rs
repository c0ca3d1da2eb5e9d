//! The rollout service and the leader's rollout pass (`flux_core::rollout`) against a real
//! embedded redb store, with the agent's side played by the test and time handed in: the pass
//! reaches every unfinished rollout however many paused ones come first, a tenant's unfinished
//! rollouts are capped, job retention keeps the jobs an unfinished rollout has not read yet,
//! and rollout retention is not stalled by unfinished rollouts at the front.

use flux_core::jobs::{Jobs, JobsConfig};
use flux_core::keys;
use flux_core::model::{Millis, RegisterAgent};
use flux_core::quota::Quota;
use flux_core::retention::{Collector, RetentionConfig};
use flux_core::rollout::driver::MAX_ACTIVE_PER_PASS;
use flux_core::rollout::{
    Control, LimitSpec, RolloutError, RolloutSpec, RolloutStatus, Rollouts, TargetState,
};
use flux_core::store::{DynStore, Key};

mod common;

use common::{T0, TENANT, open_redb, play_agent, set_quota};

struct Env {
    _dir: tempfile::TempDir,
    store: DynStore,
    jobs: Jobs,
    rollouts: Rollouts,
}

async fn env(max_unfinished: usize) -> Env {
    let (dir, store) = open_redb("r.redb").await;
    let jobs = Jobs::new(store.clone(), JobsConfig::default());
    let rollouts = Rollouts::new(store.clone(), jobs.clone()).with_max_unfinished(max_unfinished);
    let req = RegisterAgent {
        slots: Some(64),
        ..Default::default()
    };
    jobs.register(TENANT, "a1", &req, T0).await.unwrap();
    Env {
        _dir: dir,
        store,
        jobs,
        rollouts,
    }
}

fn spec() -> RolloutSpec {
    RolloutSpec {
        command: Some("true".into()),
        nodes: vec!["a1".into()],
        max_concurrency: Some(LimitSpec::Count(1)),
        ..RolloutSpec::default()
    }
}

/// Alice creates a rollout of [`spec`] at `now`.
async fn create(e: &Env, now: Millis) -> flux_core::rollout::Rollout {
    e.rollouts
        .create(TENANT, "alice", spec(), now, None)
        .await
        .unwrap()
}

/// Applies `c` to rollout `id` at `now`.
async fn control(e: &Env, id: &str, c: Control, now: Millis) {
    e.rollouts.control(TENANT, id, c, now).await.unwrap();
}

/// Plays the agent: runs every job given to `a1` to exit 0 at `now`.
async fn run_jobs(e: &Env, epoch: u64, now: Millis) -> usize {
    play_agent(&e.jobs, TENANT, epoch, "a1", now, false, |_| 0)
        .await
        .len()
}

/// More paused rollouts than one page of the pass come first: the newest one still starts.
/// Creating past the tenant's cap of unfinished rollouts is a conflict naming it.
#[tokio::test]
async fn the_pass_reaches_every_unfinished_rollout_and_their_number_is_capped() {
    let cap = MAX_ACTIVE_PER_PASS + 10;
    let e = env(cap).await;
    let epoch = e.store.next_epoch().await.unwrap();
    for i in 0..MAX_ACTIVE_PER_PASS + 5 {
        let r = create(&e, T0 + i as u64).await;
        control(&e, &r.rollout_id, Control::Pause, T0 + i as u64).await;
    }
    let now = T0 + 10_000;
    let newest = create(&e, now).await;
    e.rollouts.pass(TENANT, epoch, now).await.unwrap();
    let (r, _) = e.rollouts.load(TENANT, &newest.rollout_id).await.unwrap();
    assert_eq!(r.targets[0].state, TargetState::Running, "{r:?}");

    // The cap: the unfinished count reaches it, and one more is refused naming it.
    let have = MAX_ACTIVE_PER_PASS + 6;
    for i in have..cap {
        create(&e, now + i as u64).await;
    }
    match e
        .rollouts
        .create(TENANT, "alice", spec(), now + 9_999, None)
        .await
    {
        Err(RolloutError::Conflict(m)) => assert!(m.contains("max_unfinished_rollouts"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A rollout target's job finished, but the rollout has not read its result yet (paused, or
/// between passes): job retention with a zero retention keeps it, and the rollout records
/// the target as succeeded. Once the rollout finished, the job may go.
#[tokio::test]
async fn job_retention_keeps_the_jobs_of_an_unfinished_rollout() {
    let e = env(100).await;
    let epoch = e.store.next_epoch().await.unwrap();
    let r = create(&e, T0).await;
    e.rollouts.pass(TENANT, epoch, T0).await.unwrap();
    assert_eq!(run_jobs(&e, epoch, T0 + 1).await, 1);
    let (rec, _) = e.rollouts.load(TENANT, &r.rollout_id).await.unwrap();
    let job = rec.targets[0].job_id.clone().unwrap();

    let cfg = RetentionConfig {
        job_retention: std::time::Duration::ZERO,
        ..RetentionConfig::default()
    };
    let mut c = Collector::new(e.store.clone(), cfg);
    let later = T0 + 3_600_000;
    for _ in 0..4 {
        c.pass(TENANT, &Quota::default(), epoch, later)
            .await
            .unwrap();
    }
    let k = Key::new(TENANT, keys::job(&job)).unwrap();
    assert!(
        e.store.get(&k).await.unwrap().is_some(),
        "the job was deleted"
    );

    e.rollouts.pass(TENANT, epoch, later).await.unwrap();
    let (rec, _) = e.rollouts.load(TENANT, &r.rollout_id).await.unwrap();
    assert_eq!(rec.targets[0].state, TargetState::Succeeded, "{rec:?}");
    assert_eq!(rec.status, RolloutStatus::Succeeded, "{rec:?}");
    for _ in 0..4 {
        c.pass(TENANT, &Quota::default(), epoch, later + 1)
            .await
            .unwrap();
    }
    assert!(
        e.store.get(&k).await.unwrap().is_none(),
        "the finished rollout's job was kept"
    );
}

/// More unfinished rollouts than one retention page come first: finished ones behind them are
/// still collected.
#[tokio::test]
async fn rollout_retention_is_not_stalled_by_unfinished_rollouts() {
    let e = env(1000).await;
    let epoch = e.store.next_epoch().await.unwrap();
    for i in 0..70u64 {
        let r = create(&e, T0 + i).await;
        control(&e, &r.rollout_id, Control::Pause, T0 + i).await;
    }
    let mut done = Vec::new();
    for i in 0..3u64 {
        let r = create(&e, T0 + 1000 + i).await;
        control(&e, &r.rollout_id, Control::Cancel, T0 + 1000 + i).await;
        done.push(r.rollout_id);
    }
    // The pass finishes the cancelled ones; the paused ones stay unfinished.
    e.rollouts.pass(TENANT, epoch, T0 + 2000).await.unwrap();
    for id in &done {
        let (r, _) = e.rollouts.load(TENANT, id).await.unwrap();
        assert!(r.status.is_finished(), "{r:?}");
    }
    let n = e
        .rollouts
        .collect(TENANT, 1000, epoch, T0 + 10_000)
        .await
        .unwrap();
    assert_eq!(n, 3);
    for id in done {
        assert!(matches!(
            e.rollouts.load(TENANT, &id).await,
            Err(RolloutError::NotFound(_))
        ));
    }
    assert_eq!(
        e.store.list(TENANT, keys::ROLLOUTS).await.unwrap().len(),
        70,
        "an unfinished rollout was collected"
    );
}

/// The jobs a rollout starts are admitted against the tenant's queue quota: with
/// `max_queued = 1`, a step that would queue three starts one, the others stay pending (not
/// failed), and they start as the queue drains; every target ends succeeded.
#[tokio::test]
async fn rollout_jobs_wait_for_the_queue_quota_instead_of_failing() {
    let e = env(100).await;
    let epoch = e.store.next_epoch().await.unwrap();
    let q = Quota {
        max_queued: Some(1),
        ..Quota::default()
    };
    set_quota(&e.store, TENANT, &q).await;
    let req = RegisterAgent {
        slots: Some(64),
        ..Default::default()
    };
    for n in ["a2", "a3"] {
        e.jobs.register(TENANT, n, &req, T0).await.unwrap();
    }
    let spec = RolloutSpec {
        nodes: vec!["a1".into(), "a2".into(), "a3".into()],
        max_concurrency: Some(LimitSpec::Count(3)),
        ..spec()
    };
    let r = e
        .rollouts
        .create(TENANT, "alice", spec, T0, None)
        .await
        .unwrap();
    let states = |r: &flux_core::rollout::Rollout| -> Vec<TargetState> {
        r.targets.iter().map(|t| t.state).collect()
    };
    let rep = e.rollouts.pass(TENANT, epoch, T0).await.unwrap();
    assert_eq!((rep.started, rep.deferred), (1, 2), "{rep:?}");
    let (rec, _) = e.rollouts.load(TENANT, &r.rollout_id).await.unwrap();
    use TargetState::{Pending, Running, Succeeded};
    assert_eq!(states(&rec), vec![Running, Pending, Pending]);
    // Still queued: nothing more starts, and nothing is failed.
    let rep = e.rollouts.pass(TENANT, epoch, T0 + 1).await.unwrap();
    assert_eq!((rep.started, rep.deferred), (0, 2), "{rep:?}");
    // The queue drains as agents take and run the jobs: the others start, one at a time.
    for now in T0 + 2..T0 + 12 {
        for n in ["a1", "a2", "a3"] {
            play(&e, epoch, n, now).await;
        }
        e.rollouts.pass(TENANT, epoch, now).await.unwrap();
        let (rec, _) = e.rollouts.load(TENANT, &r.rollout_id).await.unwrap();
        if rec.status.is_finished() {
            assert_eq!(
                states(&rec),
                vec![Succeeded, Succeeded, Succeeded],
                "{rec:?}"
            );
            assert_eq!(rec.status, RolloutStatus::Succeeded);
            return;
        }
    }
    panic!("the rollout did not finish");
}

/// Plays agent `node`: schedules, then runs every job it was given to exit 0.
async fn play(e: &Env, epoch: u64, node: &str, now: Millis) {
    play_agent(&e.jobs, TENANT, epoch, node, now, false, |_| 0).await;
}
