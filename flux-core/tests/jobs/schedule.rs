//! Scheduling: fencing of a stale leader, queue order and priorities, `max_running`, the
//! per-pass scan budget, and queue entries that describe their job.

use super::*;

// ---- 7. fencing ----------------------------------------------------------------------------

#[tokio::test]
async fn a_stale_leader_can_neither_schedule_nor_sweep() {
    let c = JobsConfig {
        start_timeout: Duration::from_secs(5),
        ..cfg()
    };
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
    assert_eq!(
        e.jobs.get(TENANT, &job.job_id).await.unwrap().status,
        JobStatus::Queued
    );

    // The current leader can.
    assert_eq!(
        e.jobs.schedule_tenant(TENANT, new, T0, None).await.unwrap(),
        1
    );

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
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
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
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        e.jobs.get(TENANT, &job.job_id).await.unwrap().status,
        JobStatus::Assigned
    );
}

#[tokio::test]
async fn higher_priority_is_assigned_first_and_max_running_caps_assignment() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
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
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
    // Many high-priority jobs for a label no agent carries (a typo, or busy GPU machines).
    for _ in 0..(flux_core::jobs::MAX_SCAN_PER_PASS + 20) {
        let mut req = shell("true");
        req.selector = [("gpu".to_string(), "yes".to_string())].into();
        req.priority = Some(10);
        e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    }
    let (plain, _) = e
        .jobs
        .submit(TENANT, "alice", shell("true"), T0)
        .await
        .unwrap();
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        e.jobs.get(TENANT, &plain.job_id).await.unwrap().status,
        JobStatus::Assigned
    );
}

#[tokio::test]
async fn pending_entries_without_a_description_are_described_once() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
    let mut req = shell("true");
    req.node_id = Some("away".into());
    let (job, _) = e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    // As written before entries carried the pinned agent.
    let pk = Key::new(TENANT, format!("pending/{}", job.job_id)).unwrap();
    e.store
        .put(pk.clone(), b"{}".to_vec(), store::Expect::Any)
        .await
        .unwrap();
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, None)
            .await
            .unwrap(),
        0
    );
    let now: serde_json::Value =
        serde_json::from_slice(&e.store.get(&pk).await.unwrap().unwrap().value).unwrap();
    assert_eq!(now["node_id"], "away");
}
