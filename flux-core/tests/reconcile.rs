//! The reconciler (`flux_core::reconcile`) driven directly against a real embedded redb store,
//! with the agent's side of each job played by the test. Time is handed in explicitly.

use flux_core::jobs::{JobFilter, Jobs, JobsConfig};
use flux_core::keys;
use flux_core::model::{JobStatus, Millis, RegisterAgent};
use flux_core::quota::Quota;
use flux_core::reconcile::{Reconciler, TargetState};
use flux_core::state::{ApplyRequest, StateError};
use flux_core::state::{StateSpec, Targets};
use flux_core::store::{self, DynStore, Expect, Key, StoreError};
use flux_core::testing::BeforeCommit;

mod common;

use common::{
    T0, TENANT, entries, exited, jobs_with_status, listed_jobs, open_redb, play_agent, set_quota,
};

struct Env {
    _dir: tempfile::TempDir,
    store: DynStore,
    jobs: Jobs,
    rec: Reconciler,
}

async fn env() -> Env {
    let (dir, store) = open_redb("f.redb").await;
    let jobs = Jobs::new(store.clone(), JobsConfig::default());
    let rec = Reconciler::new(store.clone(), jobs.clone());
    Env {
        _dir: dir,
        store,
        jobs,
        rec,
    }
}

/// Whether state `name` of `tenant` has a status record for agent `a1`.
async fn has_status(e: &Env, tenant: &str, name: &str) -> bool {
    let k = Key::new(tenant, keys::status(name, "a1")).unwrap();
    e.store.get(&k).await.unwrap().is_some()
}

/// [`env`], the epoch of a leader, and agent `a1` registered at `T0`.
async fn env_with_a1() -> (Env, u64) {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e, TENANT, "a1", T0).await;
    (e, epoch)
}

/// Alice creates state `motd` on agent `a1` at `T0`.
async fn put_motd(e: &Env) {
    e.rec
        .put(TENANT, "alice", spec("motd", "a1"), Expect::Absent, T0)
        .await
        .unwrap();
}

fn spec(name: &str, agent: &str) -> StateSpec {
    StateSpec {
        name: name.into(),
        targets: Targets {
            agents: vec![agent.into()],
            labels: Default::default(),
        },
        check: "check".into(),
        apply: "apply".into(),
        interval_secs: 10,
        timeout_secs: 5,
        env: Default::default(),
        desired_exit_code: 0,
        rollout: None,
    }
}

async fn register(e: &Env, tenant: &str, node: &str, now: Millis) {
    e.jobs
        .register(tenant, node, &RegisterAgent::default(), now)
        .await
        .unwrap();
}

/// Plays the agent: assigns pending jobs and finishes each with the exit code `code_for` picks
/// from its command. Returns the commands run.
async fn run_jobs(
    e: &Env,
    epoch: u64,
    node: &str,
    now: Millis,
    code_for: impl FnMut(&str) -> i32,
) -> Vec<String> {
    play_agent(&e.jobs, TENANT, epoch, node, now, true, code_for).await
}

/// Plays each of `agents` in turn, every job failing (exit 1); returns how many ran `cmd`.
async fn failed_runs_of(e: &Env, epoch: u64, agents: &[&str], now: Millis, cmd: &str) -> usize {
    let mut n = 0;
    for a in agents {
        n += run_jobs(e, epoch, a, now, |_| 1)
            .await
            .iter()
            .filter(|c| *c == cmd)
            .count();
    }
    n
}

#[tokio::test]
async fn a_drifted_target_is_applied_verified_and_then_compliant() {
    let (e, epoch) = env_with_a1().await;
    let (v, created) = e
        .rec
        .put(TENANT, "alice", spec("motd", "a1"), Expect::Absent, T0)
        .await
        .unwrap();
    assert!(created);
    let mut fixed = false;
    let mut ran_all = Vec::new();
    for i in 0..4 {
        let now = T0 + i;
        e.rec.pass(TENANT, epoch, now).await.unwrap();
        let ran = run_jobs(&e, epoch, "a1", now, |c| {
            if c == "apply" {
                fixed = true;
            }
            if c == "check" && !fixed { 1 } else { 0 }
        })
        .await;
        ran_all.extend(ran);
    }
    assert_eq!(ran_all, vec!["check", "apply", "check"]);
    let view = e.rec.get(TENANT, "motd").await.unwrap();
    let t = &view.status[0];
    assert_eq!(
        (t.status, t.repairs, t.spec_version),
        (TargetState::Compliant, 1, v)
    );
    assert_eq!(t.settled_at(v), Some(TargetState::Compliant));
    // Nothing more until the interval has passed.
    let tally = e.rec.pass(TENANT, epoch, T0 + 5_000).await.unwrap();
    assert_eq!(tally.checks, 0);
    let tally = e.rec.pass(TENANT, epoch, T0 + 10_010).await.unwrap();
    assert_eq!(tally.checks, 1);
}

/// A pass by a leader whose epoch was superseded writes nothing at all: no job and no record
/// (they are one fenced transaction), so its successor never meets a job nobody recorded.
#[tokio::test]
async fn a_superseded_leader_creates_neither_job_nor_record() {
    let (e, old) = env_with_a1().await;
    put_motd(&e).await;
    let new = e.store.next_epoch().await.unwrap();
    let err = e.rec.pass(TENANT, old, T0).await.unwrap_err();
    assert!(
        matches!(err, StateError::Store(StoreError::Fenced { .. })),
        "{err:?}"
    );
    assert!(listed_jobs(&e.jobs, TENANT).await.is_empty());
    assert!(entries(&e.store, TENANT, keys::STATUSES).await.is_empty());
    // The current leader proceeds normally.
    let tally = e.rec.pass(TENANT, new, T0).await.unwrap();
    assert_eq!(tally.checks, 1);
    let jobs = e.jobs.list(TENANT, &JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // The reconciler's jobs are its own kind, apart from users' in listings.
    assert_eq!(jobs[0].kind, flux_core::model::JobKind::Reconciler);
    let user = JobFilter {
        kind: Some(flux_core::model::JobKind::User),
        ..Default::default()
    };
    assert!(e.jobs.list(TENANT, &user).await.unwrap().is_empty());
}

/// A state deleted between the pass's read and its write gets no job: the job's creation is
/// conditional on the state's version, in the same transaction as its record.
#[tokio::test]
async fn a_state_deleted_during_a_pass_gets_no_new_job() {
    let (e, epoch) = env_with_a1().await;
    put_motd(&e).await;
    // An operator's DELETE lands just before the reconciler's first record write.
    let armed = std::sync::atomic::AtomicBool::new(true);
    let inner = e.store.clone();
    let racing = BeforeCommit::wrap(
        e.store.clone(),
        Box::new(move |txn| {
            let records = txn
                .ops
                .iter()
                .any(|op| op.key().path().starts_with(keys::STATUSES));
            if !(records && armed.swap(false, std::sync::atomic::Ordering::SeqCst)) {
                return None;
            }
            let inner = inner.clone();
            Some(Box::pin(async move {
                let k = Key::new(TENANT, keys::state("motd")).unwrap();
                inner.delete(k, Expect::Any).await.unwrap();
            }))
        }),
    );
    let rec = Reconciler::new(racing.clone(), Jobs::new(racing, JobsConfig::default()));
    rec.pass(TENANT, epoch, T0).await.unwrap();
    assert!(matches!(
        e.rec.get(TENANT, "motd").await,
        Err(StateError::NotFound(_))
    ));
    assert!(listed_jobs(&e.jobs, TENANT).await.is_empty());
    assert!(entries(&e.store, TENANT, keys::STATUSES).await.is_empty());
}

#[tokio::test]
async fn an_apply_planned_against_old_versions_changes_nothing() {
    let e = env().await;
    let file = |check: &str| {
        format!(
            "[[state]]\nname = \"motd\"\ntargets = {{ agents = [\"a1\"] }}\ncheck = \"{check}\"\napply = \"true\"\n"
        )
    };
    let apply = |text: String, dry_run: bool, expect: Vec<(&str, u64)>| ApplyRequest {
        toml: Some(text),
        dry_run,
        expect: expect
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..ApplyRequest::default()
    };
    // Two operators plan against the empty store.
    let plan_a = e
        .rec
        .apply(TENANT, "a", apply(file("a"), true, vec![]), T0)
        .await
        .unwrap();
    assert_eq!(plan_a.items[0].from_version, 0);
    let done = e
        .rec
        .apply(TENANT, "a", apply(file("a"), false, vec![("motd", 0)]), T0)
        .await
        .unwrap();
    let v1 = done.items[0].to_version.unwrap();
    // B planned before A applied: B's apply must fail and leave A's state alone.
    let err = e
        .rec
        .apply(TENANT, "b", apply(file("b"), false, vec![("motd", 0)]), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict(_)), "{err:?}");
    let view = e.rec.get(TENANT, "motd").await.unwrap();
    assert_eq!((view.spec.check.as_str(), view.version), ("a", v1));
    // PUT with a stale version fails too; with the current one it succeeds.
    let err = e
        .rec
        .put(TENANT, "b", spec("motd", "a1"), Expect::Version(v1 - 1), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::PreconditionFailed(_)), "{err:?}");
    let (v2, created) = e
        .rec
        .put(TENANT, "b", spec("motd", "a1"), Expect::Version(v1), T0)
        .await
        .unwrap();
    assert!(!created && v2 > v1);
    // An identical PUT writes nothing: same version, so no target is re-checked for nothing.
    let (same, _) = e
        .rec
        .put(TENANT, "b", spec("motd", "a1"), Expect::Any, T0)
        .await
        .unwrap();
    assert_eq!(same, v2);
    // A state created after a pruning apply was planned is not pruned unseen.
    e.rec
        .put(TENANT, "c", spec("later", "a1"), Expect::Absent, T0)
        .await
        .unwrap();
    let mut req = apply(file("a"), false, vec![("motd", v2)]);
    req.prune = true;
    let err = e.rec.apply(TENANT, "a", req, T0).await.unwrap_err();
    assert!(matches!(err, StateError::Conflict(_)), "{err:?}");
    assert!(e.rec.get(TENANT, "later").await.is_ok());
}

#[tokio::test]
async fn prune_deletes_only_the_tenants_own_undeclared_states_and_their_records() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    for t in [TENANT, "other"] {
        register(&e, t, "a1", T0).await;
        for n in ["keep", "drop"] {
            e.rec
                .put(t, "x", spec(n, "a1"), Expect::Absent, T0)
                .await
                .unwrap();
        }
        e.rec.pass(t, epoch, T0).await.unwrap();
    }
    assert!(has_status(&e, TENANT, "drop").await);
    let text = "[[state]]\nname = \"keep\"\ntargets = { agents = [\"a1\"] }\ncheck = \"check\"\napply = \"apply\"\ninterval = \"10s\"\ntimeout = \"5s\"\n";
    let plan = e
        .rec
        .apply(
            TENANT,
            "x",
            ApplyRequest {
                toml: Some(text.into()),
                prune: true,
                ..ApplyRequest::default()
            },
            T0,
        )
        .await
        .unwrap();
    let actions: Vec<(String, String)> = plan
        .items
        .iter()
        .map(|i| (i.name.clone(), format!("{:?}", i.action)))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("keep".into(), "Unchanged".into()),
            ("drop".into(), "Delete".into())
        ]
    );
    let names = |views: Vec<flux_core::state::StateView>| {
        views.into_iter().map(|v| v.name).collect::<Vec<_>>()
    };
    assert_eq!(names(e.rec.list(TENANT).await.unwrap()), vec!["keep"]);
    assert_eq!(
        names(e.rec.list("other").await.unwrap()),
        vec!["drop", "keep"]
    );
    assert!(!has_status(&e, TENANT, "drop").await);
    assert!(has_status(&e, "other", "drop").await);
    assert!(matches!(
        e.rec.get(TENANT, "drop").await,
        Err(StateError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_label_selector_follows_agents_and_drops_records_of_former_targets() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    let web = RegisterAgent {
        labels: [("role".to_string(), "web".to_string())].into(),
        ..RegisterAgent::default()
    };
    e.jobs.register(TENANT, "w1", &web, T0).await.unwrap();
    e.jobs.register(TENANT, "w2", &web, T0).await.unwrap();
    register(&e, TENANT, "db1", T0).await;
    let mut s = spec("web", "x");
    s.targets = Targets {
        agents: vec![],
        labels: flux_core::selector::Selector::labels([("role", "web")]),
    };
    e.rec.put(TENANT, "x", s, Expect::Absent, T0).await.unwrap();
    let tally = e.rec.pass(TENANT, epoch, T0).await.unwrap();
    assert_eq!(tally.checks, 2);
    let agents: Vec<String> = e
        .rec
        .get(TENANT, "web")
        .await
        .unwrap()
        .status
        .into_iter()
        .map(|t| t.agent)
        .collect();
    assert_eq!(agents, vec!["w1", "w2"]);
    // w2 re-registers without the label: its record goes.
    e.jobs
        .register(TENANT, "w2", &RegisterAgent::default(), T0 + 1)
        .await
        .unwrap();
    e.rec.pass(TENANT, epoch, T0 + 2).await.unwrap();
    let left = e.store.list(TENANT, keys::STATUSES).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].key.path().ends_with("/w1"));
    let checks = jobs_with_status(&e.jobs, TENANT, JobStatus::Queued).await;
    assert_eq!(
        checks.len(),
        2,
        "one check per target was submitted, no more"
    );
}

/// Reconciler jobs go through the same admission as submissions: with `max_queued 3`, forty
/// states of one tenant never make more than three queued jobs. The targets refused wait with
/// the reason on their record, and every one is checked in the end.
#[tokio::test]
async fn reconciler_jobs_never_queue_past_the_tenants_max_queued() {
    let (e, epoch) = env_with_a1().await;
    let q = Quota {
        max_queued: Some(3),
        ..Quota::default()
    };
    set_quota(&e.store, TENANT, &q).await;
    for i in 0..40 {
        e.rec
            .put(
                TENANT,
                "alice",
                spec(&format!("s{i:02}"), "a1"),
                Expect::Absent,
                T0,
            )
            .await
            .unwrap();
    }
    let tally = e.rec.pass(TENANT, epoch, T0).await.unwrap();
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 3);
    assert_eq!((tally.checks, tally.deferred), (3, 37));
    let waiting = e.rec.get(TENANT, "s39").await.unwrap().status[0].clone();
    let d = waiting
        .deferred
        .expect("a refused target says why it waits");
    assert!(d.reason.contains("quota of 3"), "{}", d.reason);
    assert_eq!(waiting.events.last().unwrap().kind, "deferred");
    // A second pass with the queue still full adds nothing and rewrites nothing.
    let before = e.store.list(TENANT, keys::STATUSES).await.unwrap();
    e.rec.pass(TENANT, epoch, T0 + 1).await.unwrap();
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 3);
    let after = e.store.list(TENANT, keys::STATUSES).await.unwrap();
    let versions = |l: &[flux_core::store::Entry]| l.iter().map(|x| x.version).collect::<Vec<_>>();
    assert_eq!(versions(&before), versions(&after));

    let mut compliant = 0;
    for round in 2..200 {
        let now = T0 + round;
        e.rec.pass(TENANT, epoch, now).await.unwrap();
        let queued = e.jobs.queue_depth(TENANT).await.unwrap();
        assert!(queued <= 3, "pass {round}: {queued} queued jobs");
        run_jobs(&e, epoch, "a1", now, |_| 0).await;
        let views = e.rec.list(TENANT).await.unwrap();
        compliant = views
            .iter()
            .filter(|v| v.status[0].status == TargetState::Compliant)
            .count();
        if compliant == 40 {
            assert!(views.iter().all(|v| v.status[0].deferred.is_none()));
            break;
        }
    }
    assert_eq!(compliant, 40, "every state is checked in the end");
    let all = e.jobs.list(TENANT, &JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 40, "one check per state, none past the quota");
}

/// `max_states` bounds how many states a tenant holds, on PUT and on apply (which is all or
/// nothing); updates and prunes that do not grow the count pass even at the limit.
#[tokio::test]
async fn a_tenant_holds_no_more_states_than_its_max_states() {
    let e = env().await;
    let q = Quota {
        max_states: Some(2),
        ..Quota::default()
    };
    set_quota(&e.store, TENANT, &q).await;
    for n in ["s1", "s2"] {
        e.rec
            .put(TENANT, "alice", spec(n, "a1"), Expect::Absent, T0)
            .await
            .unwrap();
    }
    let err = e
        .rec
        .put(TENANT, "alice", spec("s3", "a1"), Expect::Absent, T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Quota(_)), "{err:?}");
    assert!(err.to_string().contains("max_states is 2"), "{err}");
    // Another tenant is not bound by it.
    e.rec
        .put("globex", "bob", spec("s3", "a1"), Expect::Absent, T0)
        .await
        .unwrap();
    // An update at the limit is fine.
    let mut changed = spec("s1", "a1");
    changed.check = "check2".into();
    e.rec
        .put(TENANT, "alice", changed, Expect::Any, T0)
        .await
        .unwrap();
    let names = |e: &Env| {
        let rec = e.rec.clone();
        async move {
            rec.list(TENANT)
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
        }
    };
    // An apply that would grow past the limit changes nothing, dry run or not.
    for dry_run in [true, false] {
        let req = ApplyRequest {
            states: Some(vec![spec("s1", "a1"), spec("s2", "a1"), spec("s3", "a1")]),
            dry_run,
            ..ApplyRequest::default()
        };
        let err = e.rec.apply(TENANT, "alice", req, T0).await.unwrap_err();
        assert!(matches!(err, StateError::Quota(_)), "{err:?}");
    }
    assert_eq!(names(&e).await, vec!["s1", "s2"]);
    // Replacing one state by another (a prune) keeps the count and passes.
    let req = ApplyRequest {
        states: Some(vec![spec("s1", "a1"), spec("s3", "a1")]),
        prune: true,
        ..ApplyRequest::default()
    };
    e.rec.apply(TENANT, "alice", req, T0).await.unwrap();
    assert_eq!(names(&e).await, vec!["s1", "s3"]);
}

/// A store that records the size of every batch handed to `commit_many` and counts single
/// commits.
#[derive(Debug)]
struct Batches {
    inner: DynStore,
    batches: std::sync::Mutex<Vec<usize>>,
    commits: std::sync::atomic::AtomicUsize,
}

impl Batches {
    fn take(&self) -> (Vec<usize>, usize) {
        (
            std::mem::take(&mut *self.batches.lock().unwrap()),
            self.commits.swap(0, std::sync::atomic::Ordering::SeqCst),
        )
    }
}

#[async_trait::async_trait]
impl store::Layer for Batches {
    fn inner(&self) -> &dyn store::Store {
        self.inner.as_ref()
    }
    async fn commit(&self, txn: store::Txn) -> store::Result<store::Version> {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.commit(txn).await
    }
    async fn commit_many(&self, txns: Vec<store::Txn>) -> Vec<store::Result<store::Version>> {
        self.batches.lock().unwrap().push(txns.len());
        self.inner.commit_many(txns).await
    }
}

/// Every target of a pass advances in that pass, with one batch of writes: 200 targets get
/// their check submitted together, and once the checks have run, all 200 are recorded
/// compliant together.
#[tokio::test]
async fn two_hundred_targets_advance_in_one_pass_and_one_batch() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    let nodes: Vec<String> = (0..200).map(|i| format!("t{i:03}")).collect();
    for n in &nodes {
        let req = RegisterAgent {
            labels: [("fleet".to_string(), "big".to_string())].into(),
            ..RegisterAgent::default()
        };
        e.jobs.register(TENANT, n.as_str(), &req, T0).await.unwrap();
    }
    let mut s = spec("motd", "unused");
    s.targets = Targets {
        agents: vec![],
        labels: flux_core::selector::Selector::labels([("fleet", "big")]),
    };
    e.rec
        .put(TENANT, "alice", s, Expect::Absent, T0)
        .await
        .unwrap();
    let batches = std::sync::Arc::new(Batches {
        inner: e.store.clone(),
        batches: Default::default(),
        commits: Default::default(),
    });
    let rec = Reconciler::new(
        batches.clone(),
        Jobs::new(batches.clone(), JobsConfig::default()),
    );

    let tally = rec.pass(TENANT, epoch, T0).await.unwrap();
    assert_eq!(tally.checks, 200);
    assert_eq!(batches.take(), (vec![200], 0));
    let jobs = e.jobs.list(TENANT, &JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 200);
    // The reconciler is woken by its own jobs, and by no one else's.
    let change = |path: String| store::Change {
        tenant: TENANT.into(),
        revision: 1,
        paths: vec![path],
        deleted: Vec::new(),
    };
    assert!(rec.concerns(&change(keys::job(&jobs[17].job_id))));
    assert!(!rec.concerns(&change(keys::job("someone-elses"))));
    assert!(!rec.concerns(&change(keys::agent("t001"))));
    assert!(rec.concerns(&change(keys::state("motd"))));
    assert!(rec.concerns(&store::Change::resync()));

    // Every agent runs its check, and passes: all 200 are compliant after one more pass.
    e.jobs
        .schedule_tenant(TENANT, epoch, T0, None)
        .await
        .unwrap();
    for n in &nodes {
        let tasks = e.jobs.poll(TENANT, n.as_str(), 0).await.unwrap();
        assert_eq!(tasks.len(), 1, "{n}");
        let att = &tasks[0].attempt_id;
        e.jobs.start(TENANT, n.as_str(), att, T0).await.unwrap();
        e.jobs
            .finish(TENANT, n.as_str(), att, exited(0), T0)
            .await
            .unwrap();
    }
    rec.pass(TENANT, epoch, T0 + 1).await.unwrap();
    assert_eq!(batches.take(), (vec![200], 0));
    let view = rec.get(TENANT, "motd").await.unwrap();
    assert_eq!(view.status.len(), 200);
    assert!(
        view.status
            .iter()
            .all(|t| t.status == TargetState::Compliant && t.in_flight.is_none()),
        "{:?}",
        view.status
            .iter()
            .find(|t| t.status != TargetState::Compliant)
    );
    // Settled: the reconciler waits for no job now.
    assert!(!rec.concerns(&change(keys::job(&jobs[17].job_id))));
}

/// A state with `rollout = { max_concurrency = 1, max_errors = 0 }` over three drifted
/// targets: one apply at a time (the others held, counted), and its first failed repair halts
/// remediation: the halt record is written, fenced (a superseded leader writes none), and no
/// further apply is submitted while passes go on. A new version lifts it.
#[tokio::test]
async fn a_states_rollout_bounds_applies_and_a_fenced_halt_stops_them() {
    let e = env().await;
    let old = e.store.next_epoch().await.unwrap();
    let agents = ["a1", "a2", "a3"];
    for a in agents {
        register(&e, TENANT, a, T0).await;
    }
    let mut s = spec("web", "a1");
    s.targets.agents = agents.iter().map(|a| a.to_string()).collect();
    s.rollout = Some(flux_core::state::StateRollout {
        max_concurrency: Some(flux_core::rollout::LimitSpec::Count(1)),
        max_errors: Some(flux_core::rollout::LimitSpec::Count(0)),
    });
    e.rec
        .put(TENANT, "alice", s.clone(), Expect::Absent, T0)
        .await
        .unwrap();
    let epoch = e.store.next_epoch().await.unwrap();
    // Checks everywhere, all drifted.
    e.rec.pass(TENANT, epoch, T0).await.unwrap();
    let mut applies = 0;
    for a in agents {
        let ran = run_jobs(&e, epoch, a, T0, |_| 1).await;
        assert_eq!(ran, vec!["check"]);
    }
    // One apply; two held.
    let t = e.rec.pass(TENANT, epoch, T0 + 1).await.unwrap();
    assert_eq!(t.held, 2, "{t:?}");
    let halt = Key::new(TENANT, keys::state_rollout("web")).unwrap();
    // A superseded leader's pass (the apply fails first) writes no halt.
    applies += failed_runs_of(&e, epoch, &agents, T0 + 1, "apply").await;
    assert_eq!(applies, 1);
    let err = e.rec.pass(TENANT, old, T0 + 2).await.unwrap_err();
    assert!(
        matches!(err, StateError::Store(StoreError::Fenced { .. })),
        "{err:?}"
    );
    assert!(e.store.get(&halt).await.unwrap().is_none());
    // The leader's pass records the halt; later passes start no apply.
    e.rec.pass(TENANT, epoch, T0 + 2).await.unwrap();
    assert!(e.store.get(&halt).await.unwrap().is_some());
    let v = e.rec.get(TENANT, "web").await.unwrap();
    let r = v.rollout.unwrap();
    assert!(r.halted && r.failed_repairs == 1, "{r:?}");
    for i in 3..40 {
        let now = T0 + i * 1000;
        e.rec.pass(TENANT, epoch, now).await.unwrap();
        applies += failed_runs_of(&e, epoch, &agents, now, "apply").await;
    }
    assert_eq!(applies, 1, "applies after the halt");
    // A new version: remediation goes on (one at a time again).
    s.apply = "apply2".into();
    e.rec
        .put(TENANT, "alice", s, Expect::Any, T0 + 50_000)
        .await
        .unwrap();
    let mut after = 0;
    for i in 0..6 {
        let now = T0 + 50_000 + i;
        e.rec.pass(TENANT, epoch, now).await.unwrap();
        after += failed_runs_of(&e, epoch, &agents, now, "apply2").await;
    }
    assert_eq!(after, 1, "the new version's first failure halts it again");
    assert!(
        e.rec
            .get(TENANT, "web")
            .await
            .unwrap()
            .rollout
            .unwrap()
            .halted
    );
}
