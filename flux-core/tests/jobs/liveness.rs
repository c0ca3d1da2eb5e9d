//! Liveness and requeue: dead agents, start deadlines, attempts running out, a heartbeat racing
//! the sweep that marks its agent dead, and liveness off the durable path (heartbeats noted in
//! memory, published as one record per node, judged by the leader).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flux_core::jobs::{AgentCaller, SeenRecord};

use super::*;

// ---- 4. liveness and requeue ---------------------------------------------------------------

#[tokio::test]
async fn a_dead_agents_attempt_is_requeued_to_another_agent() {
    let (e, epoch) = env_with_agent("node-a").await;
    let c = cfg();
    let (job, att1) = submit_and_assign(&e, epoch, shell("sleep 100"), "node-a", T0).await;
    e.jobs
        .start(TENANT, "node-a", &att1, T0 + 10)
        .await
        .unwrap();
    upload(&e.jobs, "node-a", &att1, chunk(0, Stream::Stdout, "tick\n")).await;
    // node-a stops heartbeating after T0.

    let t_unreach = T0 + ms(c.unreachable_after);
    let quiet = e
        .jobs
        .sweep_tenant(TENANT, epoch, t_unreach - 1, 0)
        .await
        .unwrap();
    assert_eq!(quiet, SweepReport::default());
    assert_eq!(
        e.jobs.agent(TENANT, "node-a").await.unwrap().state,
        AgentState::Online
    );

    let r = e
        .jobs
        .sweep_tenant(TENANT, epoch, t_unreach, 0)
        .await
        .unwrap();
    assert_eq!(r.marked_unreachable, 1, "{r:?}");
    assert_eq!((r.marked_dead, r.requeued, r.failed), (0, 0, 0), "{r:?}");
    assert_eq!(
        e.jobs.agent(TENANT, "node-a").await.unwrap().state,
        AgentState::Unreachable
    );
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Running);
    assert_eq!(j.current_attempt.as_deref(), Some(att1.as_str()));
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att1).await.state,
        AttemptState::Running
    );

    let t_dead = T0 + ms(c.dead_after);
    // A leader elected recently does not judge silence from before its election.
    let r = e
        .jobs
        .sweep_tenant(TENANT, epoch, t_dead, t_dead - 1)
        .await
        .unwrap();
    assert_eq!((r.marked_dead, r.requeued), (0, 0), "{r:?}");

    register(&e.jobs, TENANT, "node-b", t_dead).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();
    assert_eq!((r.marked_dead, r.requeued, r.failed), (1, 1, 0), "{r:?}");
    assert_eq!(
        e.jobs.agent(TENANT, "node-a").await.unwrap().state,
        AgentState::Dead
    );
    assert_eq!(
        e.jobs.agent(TENANT, "node-b").await.unwrap().state,
        AgentState::Online
    );
    let a1 = attempt(&e.jobs, TENANT, &job.job_id, &att1).await;
    assert_eq!(a1.state, AttemptState::Abandoned);
    assert!(a1.abandoned_reason.is_some());
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(j.current_attempt, None);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 1);
    assert!(e.jobs.poll(TENANT, "node-a", 0).await.unwrap().is_empty());

    // Attempt 2 goes to the live agent.
    assert_eq!(schedule_pass(&e.jobs, epoch, t_dead).await, 1);
    let (j, task_b) = assigned_to(&e, &job.job_id, "node-b").await;
    assert_eq!(j.attempts, 2);
    assert_ne!(task_b.attempt_id, att1);
    let att2 = task_b.attempt_id;
    let a2 = attempt(&e.jobs, TENANT, &job.job_id, &att2).await;
    assert_eq!((a2.number, a2.agent.as_str()), (2, "node-b"));
    assert!(e.jobs.poll(TENANT, "node-a", 0).await.unwrap().is_empty());

    // node-a comes back late: its reports for attempt 1 no longer decide anything.
    let late = t_dead + 1000;
    match e
        .jobs
        .finish(TENANT, "node-a", &att1, exited(0), late)
        .await
    {
        Ok(recorded) => assert!(!recorded),
        Err(err) => assert!(matches!(err, JobError::Gone(_)), "{err:?}"),
    }
    let late_chunk = chunk(1, Stream::Stdout, "late");
    for err in start_and_upload_errors(&e.jobs, TENANT, "node-a", &att1, late_chunk, late).await {
        assert!(matches!(err, JobError::Gone(_)), "{err:?}");
    }
    assert_eq!(e.jobs.get(TENANT, &job.job_id).await.unwrap(), j);
    assert_eq!(attempt(&e.jobs, TENANT, &job.job_id, &att1).await, a1);
    // Its heartbeat is told to stop the attempt it lost.
    let reply = e
        .jobs
        .heartbeat(
            TENANT,
            "node-a",
            &Heartbeat {
                running: vec![att1.clone()],
                facts: None,
            },
            late,
        )
        .await
        .unwrap();
    assert_eq!(reply.cancel, vec![att1.clone()]);

    e.jobs.start(TENANT, "node-b", &att2, late).await.unwrap();
    assert!(finish_ok(&e.jobs, "node-b", &att2, exited(0), late + 5).await);
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.agent.as_deref(), Some("node-b"));
    assert_eq!(j.attempts, 2);
}

// ---- 5. start timeout ----------------------------------------------------------------------

#[tokio::test]
async fn an_attempt_not_started_in_time_is_requeued() {
    let c = cfg_with_start_timeout(Duration::from_secs(5));
    let start_timeout = ms(c.start_timeout);
    let (e, epoch) = env_with_cfg_and_agent(c, "node-1").await;
    let (job, att1) = submit_and_assign(&e, epoch, shell("true"), "node-1", T0).await;

    // The agent stays alive but never starts the attempt.
    let before = T0 + start_timeout - 1;
    heartbeat(&e.jobs, TENANT, "node-1", &[], before).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, before, 0).await.unwrap();
    assert_eq!(r.requeued, 0, "{r:?}");
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Assigned);

    let after = T0 + start_timeout + 1;
    heartbeat(&e.jobs, TENANT, "node-1", &[], after).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, after, 0).await.unwrap();
    assert_eq!((r.requeued, r.marked_dead, r.failed), (1, 0, 0), "{r:?}");
    let a1 = attempt(&e.jobs, TENANT, &job.job_id, &att1).await;
    assert_eq!(a1.state, AttemptState::Abandoned);
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 1);
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());
    assert_refused!(
        e.jobs.start(TENANT, "node-1", &att1, after).await,
        JobError::Gone(_)
    );

    // The retry is attempt 2; once started it is not taken back by the start deadline.
    assert_eq!(schedule_pass(&e.jobs, epoch, after).await, 1);
    let att2 = only_task(&e.jobs, TENANT, "node-1").await.attempt_id;
    assert_ne!(att2, att1);
    e.jobs
        .start(TENANT, "node-1", &att2, after + 1)
        .await
        .unwrap();
    let later = after + 2 * start_timeout;
    heartbeat(&e.jobs, TENANT, "node-1", &[&att2], later).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, later, 0).await.unwrap();
    assert_eq!(r.requeued, 0, "{r:?}");
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Running);
    assert_eq!(j.current_attempt.as_deref(), Some(att2.as_str()));
}

// ---- 6. attempts run out -------------------------------------------------------------------

#[tokio::test]
async fn a_job_out_of_attempts_fails_instead_of_looping() {
    let c = cfg_with_start_timeout(Duration::from_secs(5));
    let start_timeout = ms(c.start_timeout);
    let (e, epoch) = env_with_cfg_and_agent(c, "node-1").await;
    let req = SubmitJob {
        max_attempts: Some(2),
        ..shell("true")
    };
    let (job, _) = submit_and_assign(&e, epoch, req, "node-1", T0).await;

    // Attempt 1 times out and is requeued.
    let t1 = T0 + start_timeout + 1;
    heartbeat(&e.jobs, TENANT, "node-1", &[], t1).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, t1, 0).await.unwrap();
    assert_eq!((r.requeued, r.failed), (1, 0), "{r:?}");
    assert_eq!(schedule_pass(&e.jobs, epoch, t1).await, 1);

    // Attempt 2 times out too: that was the last one.
    let t2 = t1 + start_timeout + 1;
    heartbeat(&e.jobs, TENANT, "node-1", &[], t2).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, t2, 0).await.unwrap();
    assert_eq!((r.requeued, r.failed), (0, 1), "{r:?}");
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(j.status.is_terminal());
    assert_eq!(j.finished_at, Some(t2));
    assert!(j.error.is_some());
    assert_eq!(j.attempts, 2);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);
    let attempts = e.jobs.attempts(TENANT, &job.job_id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts.iter().all(|a| a.state == AttemptState::Abandoned),
        "{attempts:?}"
    );

    // Nothing brings it back.
    let t3 = t2 + 10 * start_timeout;
    heartbeat(&e.jobs, TENANT, "node-1", &[], t3).await;
    assert_eq!(schedule_pass(&e.jobs, epoch, t3).await, 0);
    let r = e.jobs.sweep_tenant(TENANT, epoch, t3, 0).await.unwrap();
    assert_eq!((r.requeued, r.failed), (0, 0), "{r:?}");
    assert_eq!(e.jobs.get(TENANT, &job.job_id).await.unwrap(), j);
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());
}

// ---- race: a heartbeat landing while the sweep marks the agent dead --------------------------

#[tokio::test]
async fn a_heartbeat_that_wins_against_the_dead_mark_keeps_the_attempt() {
    let (e, epoch) = env_with_agent("node-1").await;
    let c = cfg();
    let (job, att) = submit_and_start(&e, epoch, shell("sleep 100"), "node-1", T0, T0).await;
    let r = e
        .jobs
        .sweep_tenant(TENANT, epoch, T0 + ms(c.unreachable_after), 0)
        .await
        .unwrap();
    assert_eq!(r.marked_unreachable, 1, "{r:?}");

    let t_dead = T0 + ms(c.dead_after);
    // Just before the sweep's first fenced write to an agent record, the unreachable agent
    // reports in on another node (a `Jobs` of its own on the real store, which writes it back
    // online): a heartbeat racing the dead mark.
    let pending = Mutex::new(Some(Jobs::new(e.store.clone(), c.clone())));
    let hooked = BeforeCommit::wrap(
        e.store.clone(),
        Box::new(move |txn| {
            let marks_agent = txn.fence.is_some()
                && txn.ops.iter().any(
                    |op| matches!(op, Op::Put { key, .. } if key.path().starts_with("agents/")),
                );
            let jobs = if marks_agent {
                pending.lock().unwrap().take()
            } else {
                None
            }?;
            Some(Box::pin(async move {
                jobs.heartbeat(TENANT, "node-1", &Heartbeat::default(), t_dead)
                    .await
                    .unwrap();
            }))
        }),
    );
    let leader = Jobs::new(hooked.clone(), c);
    let r = leader.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();

    // The heartbeat won: the agent is online and was never marked dead ...
    assert_eq!(
        e.jobs.agent(TENANT, "node-1").await.unwrap().state,
        AgentState::Online
    );
    assert_eq!(r.marked_dead, 0, "{r:?}");
    // ... so its running attempt must be left alone.
    assert_eq!(r.requeued, 0, "{r:?}");
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att).await.state,
        AttemptState::Running
    );
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Running);
    assert_eq!(j.current_attempt.as_deref(), Some(att.as_str()));
}

// ---- liveness off the durable path: per-node records -----------------------------------------

/// A store that counts the transactions committed through it.
fn counting(store: DynStore) -> (DynStore, Arc<AtomicUsize>) {
    let commits = Arc::new(AtomicUsize::new(0));
    let n = commits.clone();
    let store = BeforeCommit::wrap(
        store,
        Box::new(move |_| {
            n.fetch_add(1, Ordering::SeqCst);
            None
        }),
    );
    (store, commits)
}

/// Another fluxd node's job service on the same store (its own liveness memory).
fn node(e: &Env) -> Jobs {
    Jobs::new(e.store.clone(), cfg())
}

fn seen_record(rec: Option<store::Versioned>) -> SeenRecord {
    serde_json::from_slice(&rec.expect("a liveness record").value).unwrap()
}

#[tokio::test]
async fn heartbeats_write_nothing_and_a_node_publishes_one_record_per_interval() {
    let e = env().await;
    let (store, commits) = counting(e.store.clone());
    let jobs = Jobs::new(store, cfg());
    for n in ["node-1", "node-2", "node-3"] {
        register(&jobs, TENANT, n, T0).await;
    }
    assert_eq!(commits.load(Ordering::SeqCst), 3, "one per registration");
    let before = snapshot(&e.store, TENANT).await;

    for i in 0..300u64 {
        let n = format!("node-{}", i % 3 + 1);
        heartbeat(&jobs, TENANT, &n, &[], T0 + 10 * i).await;
    }
    assert_eq!(commits.load(Ordering::SeqCst), 3, "heartbeats committed");
    assert_eq!(snapshot(&e.store, TENANT).await, before);

    // One record for the whole tenant, whatever the number of agents.
    assert_eq!(
        jobs.publish_liveness("fluxd-a", T0 + 3000).await.unwrap(),
        1
    );
    assert_eq!(commits.load(Ordering::SeqCst), 4);
    let k = Key::new(TENANT, "liveness/fluxd-a").unwrap();
    let rec = seen_record(e.store.get(&k).await.unwrap());
    assert_eq!(rec.node, "fluxd-a");
    assert_eq!(rec.published_at, T0 + 3000);
    let expected: BTreeMap<String, Millis> = [
        ("node-1".to_string(), T0 + 2970),
        ("node-2".to_string(), T0 + 2980),
        ("node-3".to_string(), T0 + 2990),
    ]
    .into();
    assert_eq!(rec.agents, expected);

    // Nothing heard since: nothing written.
    assert_eq!(
        jobs.publish_liveness("fluxd-a", T0 + 4000).await.unwrap(),
        0
    );
    assert_eq!(commits.load(Ordering::SeqCst), 4);
    heartbeat(&jobs, TENANT, "node-2", &[], T0 + 4500).await;
    assert_eq!(
        jobs.publish_liveness("fluxd-a", T0 + 5000).await.unwrap(),
        1
    );
    let next = seen_record(e.store.get(&k).await.unwrap());
    assert!(next.seq > rec.seq, "{next:?} after {rec:?}");
    assert_eq!(next.agents["node-2"], T0 + 4500);

    // Agents not heard from for the dead window are dropped; then the record goes.
    let late = T0 + 4500 + ms(cfg().dead_after);
    heartbeat(&jobs, TENANT, "node-2", &[], late - 1).await;
    assert_eq!(jobs.publish_liveness("fluxd-a", late).await.unwrap(), 1);
    let rec = seen_record(e.store.get(&k).await.unwrap());
    assert_eq!(rec.agents.keys().collect::<Vec<_>>(), ["node-2"]);
    assert_eq!(
        jobs.publish_liveness("fluxd-a", late + ms(cfg().dead_after))
            .await
            .unwrap(),
        1
    );
    assert_eq!(e.store.get(&k).await.unwrap(), None);
}

#[tokio::test]
async fn an_agent_that_stops_heartbeating_goes_unreachable_then_dead_and_its_attempt_is_requeued() {
    let (e, epoch) = env_with_agent("node-1").await;
    let c = cfg();
    // The agent talks to node A (e.jobs); another node leads.
    let leader = node(&e);
    let (job, att) = submit_and_start(&e, epoch, shell("sleep 100"), "node-1", T0, T0 + 10).await;

    // Heard from for 20 s through node A's records only: the leader keeps it online.
    let mut t = T0;
    while t < T0 + 20_000 {
        t += 1000;
        heartbeat(&e.jobs, TENANT, "node-1", &[&att], t).await;
        e.jobs.publish_liveness("fluxd-a", t).await.unwrap();
        let r = leader
            .sweep_tenant(TENANT, epoch, t + 100, 0)
            .await
            .unwrap();
        assert_eq!(r, SweepReport::default(), "at {t}");
    }
    let agent = e.jobs.agent(TENANT, "node-1").await.unwrap();
    assert_eq!(agent.state, AgentState::Online);
    assert_eq!(agent.last_seen, T0, "heartbeats are not durable");
    let last = t;

    // It falls silent; node A keeps publishing (nothing new).
    let t_unreach = last + ms(c.unreachable_after);
    e.jobs
        .publish_liveness("fluxd-a", t_unreach - 1)
        .await
        .unwrap();
    let r = leader
        .sweep_tenant(TENANT, epoch, t_unreach - 1, 0)
        .await
        .unwrap();
    assert_eq!(r, SweepReport::default());
    let r = leader
        .sweep_tenant(TENANT, epoch, t_unreach, 0)
        .await
        .unwrap();
    assert_eq!(
        (r.marked_unreachable, r.marked_dead, r.requeued),
        (1, 0, 0),
        "{r:?}"
    );
    let agent = e.jobs.agent(TENANT, "node-1").await.unwrap();
    assert_eq!(agent.state, AgentState::Unreachable);
    assert_eq!(
        agent.last_seen, last,
        "the transition records the last sign of life"
    );
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att).await.state,
        AttemptState::Running
    );

    let t_dead = last + ms(c.dead_after);
    let r = leader
        .sweep_tenant(TENANT, epoch, t_dead - 1, 0)
        .await
        .unwrap();
    assert_eq!(r, SweepReport::default());
    let r = leader.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();
    assert_eq!((r.marked_dead, r.requeued, r.failed), (1, 1, 0), "{r:?}");
    assert_eq!(
        e.jobs.agent(TENANT, "node-1").await.unwrap().state,
        AgentState::Dead
    );
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att).await.state,
        AttemptState::Abandoned
    );
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 1);
}

#[tokio::test]
async fn an_agent_heard_from_again_is_back_online() {
    let (e, epoch) = env_with_agent("node-1").await;
    let c = cfg();
    let leader = node(&e);

    // Node A hears from the agent but has not published yet when the leader sweeps.
    heartbeat(&e.jobs, TENANT, "node-1", &[], T0 + 5000).await;
    let t = T0 + ms(c.unreachable_after);
    let r = leader.sweep_tenant(TENANT, epoch, t, 0).await.unwrap();
    assert_eq!(r.marked_unreachable, 1, "{r:?}");
    // Node A publishes: the leader's next sweep brings the agent back.
    e.jobs.publish_liveness("fluxd-a", t + 100).await.unwrap();
    let r = leader
        .sweep_tenant(TENANT, epoch, t + 200, 0)
        .await
        .unwrap();
    assert_eq!((r.marked_online, r.marked_unreachable), (1, 0), "{r:?}");
    let agent = e.jobs.agent(TENANT, "node-1").await.unwrap();
    assert_eq!(agent.state, AgentState::Online);
    assert_eq!(agent.last_seen, T0 + 5000);

    // Silent until dead; a heartbeat then writes it back online at once, on the node that
    // hears it, without waiting for a sweep.
    let t_dead = T0 + 5000 + ms(c.dead_after);
    let r = leader.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();
    assert_eq!(r.marked_dead, 1, "{r:?}");
    let other = node(&e);
    heartbeat(&other, TENANT, "node-1", &[], t_dead + 1000).await;
    let agent = e.jobs.agent(TENANT, "node-1").await.unwrap();
    assert_eq!(agent.state, AgentState::Online);
    assert_eq!(agent.last_seen, t_dead + 1000);
    let r = leader
        .sweep_tenant(TENANT, epoch, t_dead + 1100, 0)
        .await
        .unwrap();
    assert_eq!(r, SweepReport::default());
}

#[tokio::test]
async fn a_node_restarted_under_its_name_still_counts_what_its_predecessor_published() {
    let (e, epoch) = env_with_agent("node-1").await;
    let c = cfg();
    heartbeat(&e.jobs, TENANT, "node-1", &[], T0 + 1000).await;
    e.jobs.publish_liveness("fluxd-a", T0 + 1100).await.unwrap();
    // After the registration's silence would count, before the heartbeat's does: the node that
    // published (its own record not read back, its memory read) and the same node restarted
    // (no memory: the record is its only evidence) judge alike.
    let t = T0 + ms(c.unreachable_after) + 500;
    let restarted = node(&e);
    for (who, jobs) in [
        ("the publisher", &e.jobs),
        ("the restarted node", &restarted),
    ] {
        let r = jobs.sweep_tenant(TENANT, epoch, t, 0).await.unwrap();
        assert_eq!(r, SweepReport::default(), "{who}");
    }
    // Past the heartbeat's window both mark it.
    let later = T0 + 1000 + ms(c.unreachable_after);
    let r = restarted
        .sweep_tenant(TENANT, epoch, later, 0)
        .await
        .unwrap();
    assert_eq!(r.marked_unreachable, 1, "{r:?}");
}

#[tokio::test]
async fn a_polls_arrival_is_heard_like_a_heartbeat_without_news() {
    let (e, epoch) = env_with_agent("node-1").await;
    let c = cfg();
    let (store, commits) = counting(e.store.clone());
    let jobs = Jobs::new(store, cfg());
    let leader = node(&e);

    // Heard at the poll's arrival, in memory only, and published like a heartbeat.
    let polled = jobs
        .poll_heard(TENANT, "node-1", 0, Some(T0 + 5000))
        .await
        .unwrap();
    assert!(polled.is_empty());
    // Reading the inbox again (the same poll woken) hears nothing new.
    jobs.poll_heard(TENANT, "node-1", 0, None).await.unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 0, "a poll wrote");
    jobs.publish_liveness("fluxd-a", T0 + 6000).await.unwrap();
    let k = Key::new(TENANT, "liveness/fluxd-a").unwrap();
    let rec = seen_record(e.store.get(&k).await.unwrap());
    assert_eq!(rec.agents["node-1"], T0 + 5000);
    let r = leader
        .sweep_tenant(TENANT, epoch, T0 + 5000 + ms(c.unreachable_after) - 1, 0)
        .await
        .unwrap();
    assert_eq!(r, SweepReport::default(), "the poll kept it online");

    // Polls without `heard` (and the plain `poll`) are not heard: silent until dead.
    jobs.poll(TENANT, "node-1", 0).await.unwrap();
    let t_dead = T0 + 5000 + ms(c.dead_after);
    jobs.publish_liveness("fluxd-a", t_dead - 1).await.unwrap();
    let r = leader.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();
    assert_eq!((r.marked_unreachable, r.marked_dead), (0, 1), "{r:?}");

    // A poll of a dead agent writes it back online at once, as a heartbeat would.
    let before = commits.load(Ordering::SeqCst);
    jobs.poll_heard(TENANT, "node-1", 0, Some(t_dead + 1000))
        .await
        .unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), before + 1);
    let agent = e.jobs.agent(TENANT, "node-1").await.unwrap();
    assert_eq!(agent.state, AgentState::Online);
    assert_eq!(agent.last_seen, t_dead + 1000);

    // Only the holder of the registration is heard: a caller without its session is refused.
    let stranger = AgentCaller::new("node-1", Some("not-the-session"));
    assert_refused!(
        jobs.poll_heard(TENANT, stranger, 0, Some(t_dead + 2000))
            .await,
        JobError::Session(_)
    );
}

#[tokio::test]
async fn a_new_leader_grants_grace_and_a_dead_nodes_record_keeps_no_agent_alive() {
    let e = env().await;
    let c = cfg();
    register(&e.jobs, TENANT, "node-1", T0).await;
    register(&e.jobs, TENANT, "node-2", T0).await;
    // Node A heard from node-1 and published, then died. Node B's clock runs an hour ahead:
    // it heard from node-2, published, and died too.
    heartbeat(&e.jobs, TENANT, "node-1", &[], T0 + 1000).await;
    e.jobs.publish_liveness("fluxd-a", T0 + 1000).await.unwrap();
    let b = node(&e);
    let ahead = 3_600_000;
    heartbeat(&b, TENANT, "node-2", &[], T0 + 1000 + ahead).await;
    b.publish_liveness("fluxd-b", T0 + 1000 + ahead)
        .await
        .unwrap();

    // A leader elected a minute later judges nobody on the silence before its election.
    let elected = T0 + 60_000;
    let epoch = e.store.next_epoch().await.unwrap();
    let leader = node(&e);
    let sweep = |now| leader.sweep_tenant(TENANT, epoch, now, elected);
    assert_eq!(sweep(elected).await.unwrap(), SweepReport::default());
    let t = elected + ms(c.unreachable_after);
    assert_eq!(sweep(t - 1).await.unwrap(), SweepReport::default());
    // node-1: node A's record is older than the dead window, so it does not count.
    let r = sweep(t).await.unwrap();
    assert_eq!(r.marked_unreachable, 1, "{r:?}");
    let state = |n: &'static str| {
        let jobs = e.jobs.clone();
        async move { jobs.agent(TENANT, n).await.unwrap().state }
    };
    assert_eq!(state("node-1").await, AgentState::Unreachable);
    // node-2: node B's record looks fresh by B's clock (it counts so far) ...
    assert_eq!(state("node-2").await, AgentState::Online);
    // ... but it never changes: once the leader has seen it unchanged for the dead window it
    // stops counting, so it keeps node-2 alive no longer than the grace.
    let t = elected + ms(c.dead_after);
    assert_eq!(sweep(t - 1).await.unwrap(), SweepReport::default());
    let r = sweep(t).await.unwrap();
    assert_eq!(r.marked_dead, 2, "{r:?}");
    assert_eq!(state("node-1").await, AgentState::Dead);
    assert_eq!(state("node-2").await, AgentState::Dead);
}

#[tokio::test]
async fn the_api_shows_the_freshest_last_seen_any_node_published() {
    let e = env().await;
    let now = flux_core::model::now_ms();
    register(&e.jobs, TENANT, "node-1", now - 5000).await;
    heartbeat(&e.jobs, TENANT, "node-1", &[], now - 100).await;
    let other = node(&e);
    // Not published yet: another node knows only the registration.
    assert_eq!(
        other.agent_seen(TENANT, "node-1").await.unwrap().last_seen,
        now - 5000
    );
    // This node knows what it heard.
    assert_eq!(
        e.jobs.agent_seen(TENANT, "node-1").await.unwrap().last_seen,
        now - 100
    );
    e.jobs.publish_liveness("fluxd-a", now - 50).await.unwrap();
    assert_eq!(
        other.agent_seen(TENANT, "node-1").await.unwrap().last_seen,
        now - 100
    );
    let listed = other.agents_seen(TENANT).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seen, now - 100);
    // The durable record is unchanged.
    assert_eq!(
        other.agent(TENANT, "node-1").await.unwrap().last_seen,
        now - 5000
    );
}

#[tokio::test]
async fn a_live_holder_known_only_from_liveness_records_is_not_taken_over() {
    let e = env().await;
    let c = cfg();
    register(&e.jobs, TENANT, "node-1", T0).await;
    // The holder keeps heartbeating through node A long past the dead window of its
    // registration time; node A publishes.
    let t = T0 + 2 * ms(c.dead_after);
    heartbeat(&e.jobs, TENANT, "node-1", &[], t).await;
    e.jobs.publish_liveness("fluxd-a", t).await.unwrap();
    // Another agent process registering the node on node B (without the session) is refused.
    let b = node(&e);
    assert_refused!(
        b.register(
            TENANT,
            AgentCaller::new("node-1", None),
            &RegisterAgent::default(),
            t + 100
        )
        .await,
        JobError::Session(_)
    );
    // Once the holder is silent for the dead window, it may.
    let later = t + ms(c.dead_after);
    let reply = b
        .register(
            TENANT,
            AgentCaller::new("node-1", None),
            &RegisterAgent::default(),
            later,
        )
        .await
        .unwrap();
    assert!(reply.session.is_some());
}
