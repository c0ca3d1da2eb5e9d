//! Scheduling: fencing of a stale leader, queue order and priorities, `max_running`, the
//! per-pass scan budget, and queue entries that describe their job.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flux_core::jobs::ScheduleReport;
use flux_core::jobs::index::Indexes;

use super::*;

// ---- 7. fencing ----------------------------------------------------------------------------

#[tokio::test]
async fn a_stale_leader_can_neither_schedule_nor_sweep() {
    let c = cfg_with_start_timeout(Duration::from_secs(5));
    let (start_timeout, dead_after) = (ms(c.start_timeout), ms(c.dead_after));
    let e = env_with(c).await;
    register(&e.jobs, TENANT, "node-1", T0).await;
    let (job, _) = e
        .jobs
        .submit(TENANT, "alice", shell("true"), T0)
        .await
        .unwrap();
    let old = e.store.next_epoch().await.unwrap();
    let new = e.store.next_epoch().await.unwrap();
    assert!(new > old);

    let before = snapshot(&e.store, TENANT).await;
    let err = e
        .jobs
        .schedule_tenant(TENANT, old, T0, None)
        .await
        .unwrap_err();
    assert!(is_fenced(&err, old, new), "{err:?}");
    assert_eq!(snapshot(&e.store, TENANT).await, before);
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Queued);

    // The current leader can.
    assert_eq!(schedule_pass(&e.jobs, new, T0).await, 1);

    // Sweep that would requeue a timed-out attempt of a live agent.
    let t1 = T0 + start_timeout + 1;
    heartbeat(&e.jobs, TENANT, "node-1", &[], t1).await;
    let before = snapshot(&e.store, TENANT).await;
    let err = e.jobs.sweep_tenant(TENANT, old, t1, 0).await.unwrap_err();
    assert!(is_fenced(&err, old, new), "{err:?}");
    assert_eq!(snapshot(&e.store, TENANT).await, before);

    // Sweep that would mark the agent dead.
    let t2 = t1 + dead_after;
    let err = e.jobs.sweep_tenant(TENANT, old, t2, 0).await.unwrap_err();
    assert!(is_fenced(&err, old, new), "{err:?}");
    assert_eq!(snapshot(&e.store, TENANT).await, before);
    assert_eq!(
        e.jobs.agent(TENANT, "node-1").await.unwrap().state,
        AgentState::Online
    );

    let r = e.jobs.sweep_tenant(TENANT, new, t2, 0).await.unwrap();
    assert_eq!((r.marked_dead, r.requeued), (1, 1), "{r:?}");
}

#[tokio::test]
async fn a_queue_full_of_jobs_for_an_absent_agent_does_not_stop_the_others() {
    let (e, epoch) = env_with_agent("node-1").await;
    // More high-priority jobs for an absent agent than one pass looks at.
    for _ in 0..(flux_core::jobs::MAX_SCAN_PER_PASS + 20) {
        let mut req = shell("true");
        req.node_id = Some("away".into());
        req.priority = Some(10);
        e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    }
    let mut low = shell("true");
    low.node_id = Some("node-1".into());
    low.priority = Some(-10);
    let (job, _) = e.jobs.submit(TENANT, "alice", low, T0).await.unwrap();
    assert_eq!(schedule_pass(&e.jobs, epoch, T0).await, 1);
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Assigned);
}

#[tokio::test]
async fn higher_priority_is_assigned_first_and_max_running_caps_assignment() {
    let (e, epoch) = env_with_agent("node-1").await;
    let mut ids = Vec::new();
    for p in [0, 5, -5, 5] {
        let mut req = shell("true");
        req.priority = Some(p);
        ids.push(
            e.jobs
                .submit(TENANT, "alice", req, T0)
                .await
                .unwrap()
                .0
                .job_id,
        );
    }
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, Some(2))
            .await
            .unwrap(),
        2
    );
    let status = |i: usize| {
        let jobs = e.jobs.clone();
        let id = ids[i].clone();
        async move { jobs.get(TENANT, &id).await.unwrap().status }
    };
    // The two priority-5 jobs, oldest first, and no more than max_running.
    assert_eq!(status(1).await, JobStatus::Assigned);
    assert_eq!(status(3).await, JobStatus::Assigned);
    assert_eq!(status(0).await, JobStatus::Queued);
    assert_eq!(status(2).await, JobStatus::Queued);
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, Some(2))
            .await
            .unwrap(),
        0,
        "two are in flight already"
    );
}

#[tokio::test]
async fn jobs_no_free_agent_can_take_do_not_use_up_the_pass() {
    let (e, epoch) = env_with_agent("node-1").await;
    // Many high-priority jobs for a label no agent carries (a typo, or busy GPU machines).
    for _ in 0..(flux_core::jobs::MAX_SCAN_PER_PASS + 20) {
        let mut req = shell("true");
        req.selector = flux_core::selector::Selector::labels([("gpu", "yes")]);
        req.priority = Some(10);
        e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    }
    let (plain, _) = e
        .jobs
        .submit(TENANT, "alice", shell("true"), T0)
        .await
        .unwrap();
    assert_eq!(schedule_pass(&e.jobs, epoch, T0).await, 1);
    assert_eq!(status_of(&e.jobs, &plain.job_id).await, JobStatus::Assigned);
}

#[tokio::test]
async fn pending_entries_without_a_description_are_described_once() {
    let (e, epoch) = env_with_agent("node-1").await;
    let mut req = shell("true");
    req.node_id = Some("away".into());
    let (job, _) = e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    // As written before entries carried the pinned agent.
    let pk = Key::new(TENANT, format!("pending/{}", job.job_id)).unwrap();
    e.store
        .put(pk.clone(), b"{}".to_vec(), store::Expect::Any)
        .await
        .unwrap();
    assert_eq!(schedule_pass(&e.jobs, epoch, T0).await, 0);
    let now: serde_json::Value =
        serde_json::from_slice(&e.store.get(&pk).await.unwrap().unwrap().value).unwrap();
    assert_eq!(now["node_id"], "away");
}

// ---- batched passes and the leader's view ---------------------------------------------------

/// A store that counts what reaches it (batches handed to `commit_many` with their sizes,
/// single commits, listings, reads) and can land one write of its own just before the next
/// batch.
struct Counting {
    inner: DynStore,
    batches: Mutex<Vec<usize>>,
    commits: AtomicUsize,
    lists: AtomicUsize,
    gets: AtomicUsize,
    before_batch: Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting").finish_non_exhaustive()
    }
}

impl Counting {
    fn wrap(inner: DynStore) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            batches: Mutex::new(Vec::new()),
            commits: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            before_batch: Mutex::new(None),
        })
    }

    fn batches(&self) -> Vec<usize> {
        std::mem::take(&mut *self.batches.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl store::Layer for Counting {
    fn inner(&self) -> &dyn store::Store {
        self.inner.as_ref()
    }
    async fn get(&self, key: &Key) -> store::Result<Option<store::Versioned>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn commit(&self, txn: store::Txn) -> store::Result<Version> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(txn).await
    }
    async fn commit_many(&self, txns: Vec<store::Txn>) -> Vec<store::Result<Version>> {
        self.batches.lock().unwrap().push(txns.len());
        let hook = self.before_batch.lock().unwrap().take();
        if let Some(f) = hook {
            f.await;
        }
        self.inner.commit_many(txns).await
    }
    async fn list(&self, tenant: &str, prefix: &str) -> store::Result<Vec<store::Entry>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(tenant, prefix).await
    }
    async fn list_range(
        &self,
        tenant: &str,
        range: &store::Range,
    ) -> store::Result<Vec<store::Entry>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_range(tenant, range).await
    }
}

/// Inbox entries per agent.
async fn inbox_counts(store: &DynStore) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in store.list(TENANT, "inbox/").await.unwrap() {
        let agent = e.key.path().split('/').nth(1).unwrap().to_string();
        *m.entry(agent).or_default() += 1;
    }
    m
}

/// A leader's job service reading through `store`, and its scheduler's view.
fn leader_on(store: DynStore) -> (Jobs, Indexes) {
    let leader = Jobs::new(store, cfg());
    let indexes = leader.scheduler_indexes();
    (leader, indexes)
}

/// One scheduling pass of `leader` from its view `indexes` over the tenant at `T0`, with no cap
/// on running jobs.
async fn indexed_pass(leader: &Jobs, indexes: &mut Indexes, epoch: Epoch) -> ScheduleReport {
    leader
        .schedule_indexed(indexes, TENANT, epoch, T0, None)
        .await
        .unwrap()
}

async fn submit_many(e: &Env, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            e.jobs
                .submit(TENANT, "alice", shell("true"), T0)
                .await
                .unwrap()
                .0
                .job_id,
        );
    }
    ids
}

#[tokio::test]
async fn a_pass_assigns_every_job_it_can_in_one_batch_spread_over_the_agents() {
    let (e, epoch) = env_with_agents((0..50).map(|i| format!("node-{i:02}"))).await;
    let ids = submit_many(&e, 120).await;
    let counting = Counting::wrap(e.store.clone());
    let leader = Jobs::new(counting.clone(), cfg());
    assert_eq!(schedule_pass(&leader, epoch, T0).await, 120);
    // One batch of 120 assignments, and no commit awaited on its own.
    assert_eq!(counting.batches(), [120]);
    assert_eq!(counting.commits.load(Ordering::SeqCst), 0);
    for id in &ids {
        let job = e.jobs.get(TENANT, id).await.unwrap();
        assert_eq!(job.status, JobStatus::Assigned, "{id}");
        let agent = job.agent.unwrap();
        let task = e
            .store
            .get(&Key::new(TENANT, format!("inbox/{agent}/{id}.1")).unwrap())
            .await
            .unwrap();
        assert!(task.is_some(), "{id} has no task in the inbox of {agent}");
    }
    assert!(e.store.list(TENANT, "pending/").await.unwrap().is_empty());
    // Least loaded first: 120 jobs over 50 agents is two or three each, never more.
    let counts = inbox_counts(&e.store).await;
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|n| (2..=3).contains(n)), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 120);
}

#[tokio::test]
async fn a_conflict_in_a_batch_leaves_the_others_assigned_and_its_job_queued() {
    let (e, epoch) = env_with_agents((0..3).map(|i| format!("node-{i}"))).await;
    let ids = submit_many(&e, 10).await;
    let counting = Counting::wrap(e.store.clone());
    // Just before the batch lands, another writer moves the fifth job's record.
    let (inner, raced) = (e.store.clone(), ids[4].clone());
    *counting.before_batch.lock().unwrap() = Some(Box::pin(async move {
        let k = Key::new(TENANT, format!("jobs/{raced}")).unwrap();
        let v = inner.get(&k).await.unwrap().unwrap();
        inner.put(k, v.value, store::Expect::Any).await.unwrap();
    }));
    let (leader, mut indexes) = leader_on(counting.clone());
    let r = indexed_pass(&leader, &mut indexes, epoch).await;
    assert_eq!((r.assigned, r.conflicts), (9, 1));
    assert_eq!(counting.batches(), [10]);
    for (i, id) in ids.iter().enumerate() {
        let status = e.jobs.get(TENANT, id).await.unwrap().status;
        let expected = if i == 4 {
            JobStatus::Queued
        } else {
            JobStatus::Assigned
        };
        assert_eq!(status, expected, "job {i}");
    }
    // The raced job is untouched: still queued, no attempt, no task.
    let raced = &ids[4];
    let pk = Key::new(TENANT, format!("pending/{raced}")).unwrap();
    assert!(e.store.get(&pk).await.unwrap().is_some());
    assert!(e.jobs.attempts(TENANT, raced).await.unwrap().is_empty());
    assert_eq!(inbox_counts(&e.store).await.values().sum::<usize>(), 9);
    // The next pass takes it, from the same view.
    let r = indexed_pass(&leader, &mut indexes, epoch).await;
    assert_eq!((r.assigned, r.conflicts), (1, 0));
    assert_eq!(status_of(&e.jobs, raced).await, JobStatus::Assigned);
}

#[tokio::test]
async fn the_leaders_view_reads_only_what_changed_and_a_stale_agent_costs_a_conflict() {
    let (e, epoch) = env_with_agent("node-1").await;
    submit_many(&e, 2).await;
    let counting = Counting::wrap(e.store.clone());
    let (leader, mut indexes) = leader_on(counting.clone());
    let r = indexed_pass(&leader, &mut indexes, epoch).await;
    assert_eq!(r.assigned, 2);
    let lists = counting.lists.load(Ordering::SeqCst);
    assert_eq!(
        lists, 3,
        "agents, queue and inboxes are listed once, to build the view"
    );

    // Many jobs queued and a new agent registered since: the next passes read those keys,
    // never a whole listing again.
    let ids = submit_many(&e, 6).await;
    register(&e.jobs, TENANT, "node-2", T0).await;
    counting.gets.store(0, Ordering::SeqCst);
    let r = indexed_pass(&leader, &mut indexes, epoch).await;
    // node-1 had 2 free slots left, node-2 has 4.
    assert_eq!(r.assigned, 6);
    assert_eq!(counting.lists.load(Ordering::SeqCst), lists);
    // The 6 queue entries and the agent record that changed, then the 6 planned jobs; the
    // view's own writes (its assignments) are not read back.
    assert_eq!(counting.gets.load(Ordering::SeqCst), 7 + 6);
    for id in &ids {
        assert_eq!(status_of(&e.jobs, id).await, JobStatus::Assigned);
    }
    assert_eq!(
        inbox_counts(&e.store).await,
        [("node-1".to_string(), 4), ("node-2".to_string(), 4)].into()
    );

    // An agent record that moves between the view's refresh and the batch (here: an operator
    // gives both agents one slot): the assignment conflicts on it, the job stays queued, and
    // the next pass sees the new record.
    for node in ["node-1", "node-2"] {
        let done = only_done(&e, node).await;
        finish_ok(&e.jobs, node, &done, exited(0), T0).await;
    }
    let [late] = submit_many(&e, 1).await.try_into().unwrap();
    let inner = e.store.clone();
    *counting.before_batch.lock().unwrap() = Some(Box::pin(async move {
        for node in ["node-1", "node-2"] {
            let k = Key::new(TENANT, format!("agents/{node}")).unwrap();
            let mut a: serde_json::Value =
                serde_json::from_slice(&inner.get(&k).await.unwrap().unwrap().value).unwrap();
            a["slots"] = 1.into();
            let bytes = serde_json::to_vec(&a).unwrap();
            inner.put(k, bytes, store::Expect::Any).await.unwrap();
        }
    }));
    let r = indexed_pass(&leader, &mut indexes, epoch).await;
    assert_eq!((r.assigned, r.conflicts), (0, 1));
    assert_eq!(status_of(&e.jobs, &late).await, JobStatus::Queued);
    // Both agents now hold more than their one slot: nothing is assigned.
    let r = indexed_pass(&leader, &mut indexes, epoch).await;
    assert_eq!(r, Default::default());
    assert_eq!(counting.lists.load(Ordering::SeqCst), lists);
}

/// Starts one of the agent's assigned tasks and returns its attempt id.
async fn only_done(e: &Env, node: &str) -> String {
    let task = e.jobs.poll(TENANT, node, 0).await.unwrap().remove(0);
    e.jobs
        .start(TENANT, node, &task.attempt_id, T0)
        .await
        .unwrap();
    task.attempt_id
}
