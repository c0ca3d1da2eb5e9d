//! Submission and the reads after it: idempotency keys, cancel, tenant isolation, and
//! invalid submissions that write nothing.

use super::*;

// ---- 8. idempotency ------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_key_returns_the_first_job_or_a_conflict() {
    let e = env().await;
    let req = SubmitJob {
        idempotency_key: Some("deploy-42".into()),
        timeout_secs: Some(60),
        ..shell("make deploy")
    };
    let (first, created) = e
        .jobs
        .submit(TENANT, "alice", req.clone(), T0)
        .await
        .unwrap();
    assert!(created);

    let (again, created) = e
        .jobs
        .submit(TENANT, "alice", req.clone(), T0 + 1)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, first);
    assert_eq!(listed_jobs(&e.jobs, TENANT).await.len(), 1);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 1);

    let before = snapshot(&e.store, TENANT).await;
    for different in [
        SubmitJob {
            command: Some("make destroy".into()),
            ..req.clone()
        },
        SubmitJob {
            timeout_secs: Some(61),
            ..req.clone()
        },
    ] {
        assert_refused!(
            e.jobs.submit(TENANT, "alice", different, T0 + 2).await,
            JobError::Conflict(_)
        );
    }
    assert_eq!(snapshot(&e.store, TENANT).await, before);

    // Once the job has moved on, a replay still returns it rather than a new job.
    register(&e.jobs, TENANT, "node-1", T0).await;
    let epoch = e.store.next_epoch().await.unwrap();
    assert_eq!(schedule_pass(&e.jobs, epoch, T0).await, 1);
    let (replay, created) = e
        .jobs
        .submit(TENANT, "alice", req.clone(), T0 + 3)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(replay.job_id, first.job_id);
    assert_eq!(replay.status, JobStatus::Assigned);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);

    // Keys are per tenant.
    let (other, created) = e.jobs.submit("globex", "bob", req, T0 + 4).await.unwrap();
    assert!(created);
    assert_ne!(other.job_id, first.job_id);
}

// ---- 9. cancel -----------------------------------------------------------------------------

#[tokio::test]
async fn cancel_ends_queued_jobs_and_asks_the_agent_to_stop_running_ones() {
    let e = env_with(cfg_with_start_timeout(Duration::from_secs(5))).await;
    let epoch = e.store.next_epoch().await.unwrap();

    // Queued: cancelled at once, never scheduled.
    let (queued, _) = e
        .jobs
        .submit(TENANT, "alice", shell("true"), T0)
        .await
        .unwrap();
    let c = e.jobs.cancel(TENANT, &queued.job_id, T0 + 1).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert_eq!(c.finished_at, Some(T0 + 1));
    assert_eq!(e.jobs.get(TENANT, &queued.job_id).await.unwrap(), c);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);
    register(&e.jobs, TENANT, "node-1", T0 + 2).await;
    assert_eq!(schedule_pass(&e.jobs, epoch, T0 + 2).await, 0);
    assert_eq!(
        e.jobs.cancel(TENANT, &queued.job_id, T0 + 3).await.unwrap(),
        c
    );
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());

    // Running: the agent is asked through its inbox; the job ends when it reports.
    let t = T0 + 10;
    let (job, att) = submit_and_start(&e, epoch, shell("sleep 600"), "node-1", t, t).await;
    let seen = only_task(&e.jobs, TENANT, "node-1").await.revision;
    let c = e.jobs.cancel(TENANT, &job.job_id, t + 1).await.unwrap();
    assert!(c.cancel_requested);
    assert_eq!(c.status, JobStatus::Running);
    let stored = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert!(stored.cancel_requested);
    assert_eq!(stored.status, JobStatus::Running);
    let news = e.jobs.poll(TENANT, "node-1", seen).await.unwrap();
    assert_eq!(news.len(), 1, "{news:?}");
    assert_eq!(news[0].attempt_id, att);
    assert!(
        news[0].cancel,
        "the inbox entry must ask the agent to cancel"
    );
    // The heartbeat says so too, for an agent whose poll missed the inbox update.
    let hb = Heartbeat {
        running: vec![att.clone()],
        facts: None,
    };
    let reply = e
        .jobs
        .heartbeat(TENANT, "node-1", &hb, t + 1)
        .await
        .unwrap();
    assert_eq!(reply.cancel, vec![att.clone()], "{reply:?}");

    let result = ended_by(Outcome::Cancelled, Some(15));
    assert!(finish_ok(&e.jobs, "node-1", &att, result, t + 2).await);
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.signal, Some(15));
    assert_eq!(done.finished_at, Some(t + 2));

    // Assigned, cancel requested, never started: the sweep ends it cancelled, not requeued.
    let t = T0 + 100;
    let (job, _) = submit_and_assign(&e, epoch, shell("sleep 600"), "node-1", t).await;
    let c = e.jobs.cancel(TENANT, &job.job_id, t + 1).await.unwrap();
    assert!(c.cancel_requested);
    let late = t + 60_000;
    heartbeat(&e.jobs, TENANT, "node-1", &[], late).await;
    let r = e.jobs.sweep_tenant(TENANT, epoch, late, 0).await.unwrap();
    assert_eq!(r.requeued, 0, "{r:?}");
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Cancelled);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);
}

// ---- 10. tenant isolation ------------------------------------------------------------------

#[tokio::test]
async fn tenants_never_see_or_run_each_others_jobs() {
    let e = env().await;
    let (a, b) = ("acme", "acme-corp");
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, b, "node-1", T0).await;
    let (job, _) = e.jobs.submit(a, "alice", shell("id"), T0).await.unwrap();

    assert_refused!(e.jobs.get(b, &job.job_id).await, JobError::NotFound(_));
    assert_refused!(e.jobs.attempts(b, &job.job_id).await, JobError::NotFound(_));
    assert_refused!(
        e.jobs.cancel(b, &job.job_id, T0).await,
        JobError::NotFound(_)
    );
    assert!(listed_jobs(&e.jobs, b).await.is_empty());
    assert_eq!(e.jobs.queue_depth(b).await.unwrap(), 0);

    // b's node-1 is no agent of a.
    assert_eq!(e.jobs.schedule_tenant(a, epoch, T0, None).await.unwrap(), 0);
    assert_eq!(e.jobs.schedule_tenant(b, epoch, T0, None).await.unwrap(), 0);
    assert!(e.jobs.poll(b, "node-1", 0).await.unwrap().is_empty());
    assert_eq!(
        e.jobs.get(a, &job.job_id).await.unwrap().status,
        JobStatus::Queued
    );

    // a's own node-1 gets it; b's node-1 still sees nothing and cannot act on it.
    register(&e.jobs, a, "node-1", T0 + 1).await;
    assert_eq!(
        e.jobs
            .schedule_tenant(a, epoch, T0 + 1, None)
            .await
            .unwrap(),
        1
    );
    let att = only_task(&e.jobs, a, "node-1").await.attempt_id;
    assert!(e.jobs.poll(b, "node-1", 0).await.unwrap().is_empty());
    let c = chunk(0, Stream::Stdout, "x");
    for err in start_and_upload_errors(&e.jobs, b, "node-1", &att, c, T0 + 2).await {
        assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
    }
    assert_refused!(
        e.jobs.finish(b, "node-1", &att, exited(0), T0 + 2).await,
        JobError::NotFound(_)
    );
    assert!(e.jobs.output(b, &att, 0).await.unwrap().is_empty());

    // b's agent dying does not touch a's attempt.
    let r = e
        .jobs
        .sweep_tenant(b, epoch, T0 + ms(cfg().dead_after), 0)
        .await
        .unwrap();
    assert_eq!((r.marked_dead, r.requeued), (1, 0), "{r:?}");
    let j = e.jobs.get(a, &job.job_id).await.unwrap();
    assert_eq!(j.status, JobStatus::Assigned);
    assert_eq!(j.current_attempt.as_deref(), Some(att.as_str()));
    assert_eq!(j.agent.as_deref(), Some("node-1"));
}

// ---- 11. invalid submissions ---------------------------------------------------------------

#[tokio::test]
async fn invalid_submissions_are_refused_and_write_nothing() {
    let e = env().await;
    let mut bad_env = BTreeMap::new();
    bad_env.insert("1BAD".to_string(), "x".to_string());
    let cases: Vec<(&str, SubmitJob)> = vec![
        ("empty command", shell("")),
        ("blank command", shell("   ")),
        ("no command", SubmitJob::default()),
        (
            "command and argv",
            SubmitJob {
                argv: Some(vec!["echo".into(), "hi".into()]),
                ..shell("echo hi")
            },
        ),
        (
            "empty argv",
            SubmitJob {
                argv: Some(vec![]),
                ..Default::default()
            },
        ),
        (
            "bad node id",
            SubmitJob {
                node_id: Some("node/../1".into()),
                ..shell("true")
            },
        ),
        (
            "empty node id",
            SubmitJob {
                node_id: Some(String::new()),
                ..shell("true")
            },
        ),
        (
            "zero timeout",
            SubmitJob {
                timeout_secs: Some(0),
                ..shell("true")
            },
        ),
        (
            "huge timeout",
            SubmitJob {
                timeout_secs: Some(flux_core::jobs::MAX_TIMEOUT_SECS + 1),
                ..shell("true")
            },
        ),
        (
            "zero attempts",
            SubmitJob {
                max_attempts: Some(0),
                ..shell("true")
            },
        ),
        (
            "bad idempotency key",
            SubmitJob {
                idempotency_key: Some("has space".into()),
                ..shell("true")
            },
        ),
        (
            "bad env name",
            SubmitJob {
                env: bad_env,
                ..shell("true")
            },
        ),
        (
            "relative workdir",
            SubmitJob {
                workdir: Some("tmp".into()),
                ..shell("true")
            },
        ),
    ];
    for (what, req) in cases {
        let err = e.jobs.submit(TENANT, "alice", req, T0).await.unwrap_err();
        assert!(matches!(err, JobError::Invalid(_)), "{what}: {err:?}");
    }
    assert!(listed_jobs(&e.jobs, TENANT).await.is_empty());
    assert!(snapshot(&e.store, TENANT).await.is_empty());
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);

    // The same service accepts a valid submission, so the refusals above were about the input.
    let (ok, created) = e
        .jobs
        .submit(
            TENANT,
            "alice",
            SubmitJob {
                argv: Some(vec!["echo".into(), "hi".into()]),
                ..Default::default()
            },
            T0,
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        ok.command,
        CommandSpec::Argv(vec!["echo".into(), "hi".into()])
    );
    assert_eq!(listed_jobs(&e.jobs, TENANT).await.len(), 1);
}

/// `any_agent` pages through the agents: it finds a match on a later page (past the first 256),
/// and answers false only after reading them all.
#[tokio::test]
async fn any_agent_finds_a_match_past_the_first_page_and_none_when_there_is_none() {
    let e = env().await;
    for i in 0..300 {
        register(&e.jobs, TENANT, &format!("n{i:03}"), T0).await;
    }
    assert!(
        e.jobs
            .any_agent(TENANT, |a| a.node_id == "n000")
            .await
            .unwrap()
    );
    assert!(
        e.jobs
            .any_agent(TENANT, |a| a.node_id == "n299")
            .await
            .unwrap()
    );
    assert!(
        !e.jobs
            .any_agent(TENANT, |a| a.node_id == "n300")
            .await
            .unwrap()
    );
    assert!(!e.jobs.any_agent("other", |_| true).await.unwrap());
}
