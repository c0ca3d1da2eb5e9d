//! The agent protocol end to end: a job submitted, assigned, started, streamed and finished;
//! one result per attempt; the output cap; secret values kept only while the job runs.

use super::*;

// ---- 1. the happy path ---------------------------------------------------------------------

#[tokio::test]
async fn submitted_job_runs_on_a_registered_agent_and_succeeds() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;

    let mut env_vars = BTreeMap::new();
    env_vars.insert("GREETING".to_string(), "hi".to_string());
    let req = SubmitJob {
        command: Some("echo $GREETING".into()),
        env: env_vars.clone(),
        workdir: Some("/tmp".into()),
        timeout_secs: Some(30),
        ..Default::default()
    };
    let (job, created) = e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    assert!(created);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.command, CommandSpec::Shell("echo $GREETING".into()));
    assert_eq!(job.submitted_by, "alice");
    assert_eq!(job.attempts, 0);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 1);
    assert_eq!(e.jobs.get(TENANT, &job.job_id).await.unwrap(), job);

    // Nothing is in the inbox until the leader schedules.
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);

    let assigned = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(assigned.status, JobStatus::Assigned);
    assert_eq!(assigned.agent.as_deref(), Some("node-1"));
    assert_eq!(assigned.attempts, 1);

    let task = only_task(&e.jobs, TENANT, "node-1").await;
    assert_eq!(Some(&task.attempt_id), assigned.current_attempt.as_ref());
    assert_eq!(task.job_id, job.job_id);
    assert_eq!(task.command, job.command);
    assert_eq!(task.env, env_vars);
    assert_eq!(task.workdir.as_deref(), Some("/tmp"));
    assert_eq!(task.timeout_secs, 30);
    assert!(!task.cancel);
    assert!(task.revision > 0);
    assert!(
        e.jobs
            .poll(TENANT, "node-1", task.revision)
            .await
            .unwrap()
            .is_empty(),
        "polling after the task's revision must not return it again"
    );
    let att_id = task.attempt_id.clone();

    let a = attempt(&e.jobs, TENANT, &job.job_id, &att_id).await;
    assert_eq!(a.state, AttemptState::Assigned);
    assert_eq!(a.agent, "node-1");
    assert_eq!(a.number, 1);
    assert_eq!(a.assigned_at, T0);
    assert_eq!(a.start_deadline, T0 + ms(cfg().start_timeout));

    e.jobs
        .start(TENANT, "node-1", &att_id, T0 + 100)
        .await
        .unwrap();
    let running = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.started_at, Some(T0 + 100));
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att_id).await.state,
        AttemptState::Running
    );

    let sent = [
        chunk(0, Stream::Stdout, "hello "),
        chunk(1, Stream::Stderr, "warning: x\n"),
        chunk(2, Stream::Stdout, "world\n"),
    ];
    for c in &sent {
        e.jobs
            .append_output(TENANT, "node-1", &att_id, c.clone())
            .await
            .unwrap();
    }
    // A repeated chunk is accepted and ignored; a gap is refused.
    e.jobs
        .append_output(
            TENANT,
            "node-1",
            &att_id,
            chunk(1, Stream::Stderr, "DUPLICATE"),
        )
        .await
        .unwrap();
    let gap = e
        .jobs
        .append_output(TENANT, "node-1", &att_id, chunk(7, Stream::Stdout, "x"))
        .await
        .unwrap_err();
    assert!(matches!(gap, JobError::Conflict(_)), "{gap:?}");

    let out = e.jobs.output(TENANT, &att_id, 0).await.unwrap();
    let got: Vec<(u64, Stream, &str)> = out
        .iter()
        .map(|c| (c.seq, c.stream, c.data.as_str()))
        .collect();
    let want: Vec<(u64, Stream, &str)> = sent
        .iter()
        .map(|c| (c.seq, c.stream, c.data.as_str()))
        .collect();
    assert_eq!(got, want);
    let tail: Vec<u64> = e
        .jobs
        .output(TENANT, &att_id, 1)
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(tail, vec![1, 2]);
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att_id).await;
    let total: usize = sent.iter().map(|c| c.data.len()).sum();
    assert_eq!(a.output_bytes, total as u64);
    assert_eq!(a.output_dropped, 0);
    assert_eq!(a.output_seq, sent.len() as u64);

    assert!(
        e.jobs
            .finish(TENANT, "node-1", &att_id, exited(0), T0 + 500)
            .await
            .unwrap()
    );
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.finished_at, Some(T0 + 500));
    assert_eq!(done.started_at, Some(T0 + 100));
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att_id).await;
    assert_eq!(a.state, AttemptState::Finished);
    assert_eq!(a.result, Some(exited(0)));
    assert_eq!(a.finished_at, Some(T0 + 500));
    // The finished task leaves the inbox; output stays readable.
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());
    assert_eq!(e.jobs.output(TENANT, &att_id, 0).await.unwrap(), out);
    let listed = e
        .jobs
        .list(
            TENANT,
            &JobFilter {
                status: Some(JobStatus::Succeeded),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![done]);
}

// ---- 2. one result per attempt -------------------------------------------------------------

#[tokio::test]
async fn a_second_result_for_the_same_attempt_changes_nothing() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
    let (job, att) = submit_and_assign(&e, epoch, shell("false"), "node-1", T0).await;
    e.jobs.start(TENANT, "node-1", &att, T0 + 1).await.unwrap();

    assert!(
        e.jobs
            .finish(TENANT, "node-1", &att, exited(3), T0 + 10)
            .await
            .unwrap()
    );
    let first = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(first.status, JobStatus::Failed);
    assert_eq!(first.exit_code, Some(3));
    let first_attempt = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(first_attempt.result, Some(exited(3)));

    // A repeated (here: contradicting) report is either accepted as a no-op or refused.
    match e
        .jobs
        .finish(TENANT, "node-1", &att, exited(0), T0 + 20)
        .await
    {
        Ok(recorded) => assert!(!recorded, "a second result must not be recorded"),
        Err(err) => assert!(
            matches!(err, JobError::Gone(_) | JobError::Conflict(_)),
            "{err:?}"
        ),
    }
    assert_eq!(e.jobs.get(TENANT, &job.job_id).await.unwrap(), first);
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att).await,
        first_attempt
    );
    // Output after the result is not stored either.
    e.jobs
        .append_output(TENANT, "node-1", &att, chunk(0, Stream::Stdout, "late"))
        .await
        .unwrap();
    assert!(e.jobs.output(TENANT, &att, 0).await.unwrap().is_empty());
}

// ---- 3. output cap -------------------------------------------------------------------------

#[tokio::test]
async fn output_beyond_the_cap_is_counted_not_stored() {
    let cap = 16u64;
    let e = env_with(JobsConfig {
        output_cap_bytes: cap,
        ..cfg()
    })
    .await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, "node-1", T0).await;
    let (job, att) = submit_and_assign(&e, epoch, shell("yes"), "node-1", T0).await;
    e.jobs.start(TENANT, "node-1", &att, T0).await.unwrap();

    let sent = ["0123456789", "abcdefghij", "XYZ"];
    for (seq, data) in sent.iter().enumerate() {
        e.jobs
            .append_output(
                TENANT,
                "node-1",
                &att,
                chunk(seq as u64, Stream::Stdout, data),
            )
            .await
            .unwrap();
    }
    let sent_bytes: u64 = sent.iter().map(|s| s.len() as u64).sum();
    let stored: String = e
        .jobs
        .output(TENANT, &att, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.data)
        .collect();
    assert_eq!(stored.len() as u64, cap);
    assert!(sent.concat().starts_with(&stored), "{stored:?}");
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.output_bytes, cap);
    assert_eq!(a.output_dropped, sent_bytes - cap);
    assert_eq!(a.output_seq, sent.len() as u64);

    assert!(
        e.jobs
            .finish(TENANT, "node-1", &att, exited(0), T0 + 1)
            .await
            .unwrap()
    );

    // A cap inside a multi-byte character stores only whole characters and counts the rest.
    let odd = Jobs::new(
        e.store.clone(),
        JobsConfig {
            output_cap_bytes: 5,
            ..cfg()
        },
    );
    let (job2, att2) = submit_and_assign(&e, epoch, shell("printf"), "node-1", T0 + 1).await;
    let text = "ééé"; // 6 bytes
    odd.append_output(TENANT, "node-1", &att2, chunk(0, Stream::Stdout, text))
        .await
        .unwrap();
    let stored: String = odd
        .output(TENANT, &att2, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.data)
        .collect();
    assert!(stored.len() <= 5 && text.starts_with(&stored), "{stored:?}");
    let a = attempt(&odd, TENANT, &job2.job_id, &att2).await;
    assert_eq!(a.output_bytes, stored.len() as u64);
    assert_eq!(a.output_bytes + a.output_dropped, text.len() as u64);
}

#[tokio::test]
async fn secret_values_are_kept_only_until_the_job_ends_and_never_in_the_job() {
    let e = env().await;
    let mut req = shell("echo $TOKEN");
    req.secret_env = [("TOKEN".to_string(), "s3cr3t-value".to_string())].into();
    let (job, _) = e.jobs.submit(TENANT, "alice", req, T0).await.unwrap();
    assert_eq!(job.secret_env, vec!["TOKEN"]);
    let raw = e
        .store
        .get(&Key::new(TENANT, format!("jobs/{}", job.job_id)).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw.value).contains("s3cr3t-value"));
    let sk = Key::new(TENANT, format!("secrets/{}", job.job_id)).unwrap();
    assert!(e.store.get(&sk).await.unwrap().is_some());
    e.jobs.cancel(TENANT, &job.job_id, T0 + 1).await.unwrap();
    assert!(
        e.store.get(&sk).await.unwrap().is_none(),
        "secrets outlived the job"
    );
}
