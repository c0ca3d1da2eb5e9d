//! Liveness and requeue: dead agents, start deadlines, attempts running out, and a heartbeat
//! racing the sweep that marks its agent dead.

use super::*;

// ---- 4. liveness and requeue ---------------------------------------------------------------

#[tokio::test]
async fn a_dead_agents_attempt_is_requeued_to_another_agent() {
    let e = env().await;
    let c = cfg();
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-a", T0).await;
    let (job, att1) = submit_and_assign(&e, epoch, shell("sleep 100"), "node-a", T0).await;
    e.jobs
        .start(TENANT, "node-a", &att1, T0 + 10)
        .await
        .unwrap();
    e.jobs
        .append_output(TENANT, "node-a", &att1, chunk(0, Stream::Stdout, "tick\n"))
        .await
        .unwrap();
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
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, t_dead, None)
            .await
            .unwrap(),
        1
    );
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Assigned);
    assert_eq!(j.agent.as_deref(), Some("node-b"));
    assert_eq!(j.attempts, 2);
    let task_b = only_task(&e.jobs, TENANT, "node-b").await;
    assert_eq!(Some(&task_b.attempt_id), j.current_attempt.as_ref());
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
    let err = e
        .jobs
        .start(TENANT, "node-a", &att1, late)
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Gone(_)), "{err:?}");
    let err = e
        .jobs
        .append_output(TENANT, "node-a", &att1, chunk(1, Stream::Stdout, "late"))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Gone(_)), "{err:?}");
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
            },
            late,
        )
        .await
        .unwrap();
    assert_eq!(reply.cancel, vec![att1.clone()]);

    e.jobs.start(TENANT, "node-b", &att2, late).await.unwrap();
    assert!(
        e.jobs
            .finish(TENANT, "node-b", &att2, exited(0), late + 5)
            .await
            .unwrap()
    );
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.agent.as_deref(), Some("node-b"));
    assert_eq!(j.attempts, 2);
}

// ---- 5. start timeout ----------------------------------------------------------------------

#[tokio::test]
async fn an_attempt_not_started_in_time_is_requeued() {
    let c = JobsConfig {
        start_timeout: Duration::from_secs(5),
        ..cfg()
    };
    let start_timeout = ms(c.start_timeout);
    let e = env_with(c).await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
    let (job, att1) = submit_and_assign(&e, epoch, shell("true"), "node-1", T0).await;

    // The agent stays alive but never starts the attempt.
    let before = T0 + start_timeout - 1;
    heartbeat(&e.jobs, TENANT, "node-1", &[], before).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, before, 0).await.unwrap();
    assert_eq!(r.requeued, 0, "{r:?}");
    assert_eq!(
        e.jobs.get(TENANT, &job.job_id).await.unwrap().status,
        JobStatus::Assigned
    );

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
    let err = e
        .jobs
        .start(TENANT, "node-1", &att1, after)
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Gone(_)), "{err:?}");

    // The retry is attempt 2; once started it is not taken back by the start deadline.
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, after, None)
            .await
            .unwrap(),
        1
    );
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
    let c = JobsConfig {
        start_timeout: Duration::from_secs(5),
        ..cfg()
    };
    let start_timeout = ms(c.start_timeout);
    let e = env_with(c).await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
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
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, t1, None)
            .await
            .unwrap(),
        1
    );

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
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, t3, None)
            .await
            .unwrap(),
        0
    );
    let r = e.jobs.sweep_tenant(TENANT, epoch, t3, 0).await.unwrap();
    assert_eq!((r.requeued, r.failed), (0, 0), "{r:?}");
    assert_eq!(e.jobs.get(TENANT, &job.job_id).await.unwrap(), j);
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());
}

// ---- race: a heartbeat landing while the sweep marks the agent dead --------------------------

#[tokio::test]
async fn a_heartbeat_that_wins_against_the_dead_mark_keeps_the_attempt() {
    let e = env().await;
    let c = cfg();
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
    let (job, att) = submit_and_assign(&e, epoch, shell("sleep 100"), "node-1", T0).await;
    e.jobs.start(TENANT, "node-1", &att, T0).await.unwrap();

    let t_dead = T0 + ms(c.dead_after);
    // Just before the sweep's first fenced write to an agent record, the agent reports in
    // (through a `Jobs` on the real store): a heartbeat racing the dead mark.
    let pending = Mutex::new(Some(e.jobs.clone()));
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
