//! The agent protocol end to end: a job submitted, assigned, started, streamed and finished;
//! one result per attempt; the output cap; secret values kept only while the job runs.

use super::*;

// ---- 1. the happy path ---------------------------------------------------------------------

#[tokio::test]
async fn submitted_job_runs_on_a_registered_agent_and_succeeds() {
    let (e, epoch) = env_with_agent("node-1").await;

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
    assert_eq!(schedule_pass(&e.jobs, epoch, T0).await, 1);
    assert_eq!(e.jobs.queue_depth(TENANT).await.unwrap(), 0);

    let (assigned, task) = assigned_to(&e, &job.job_id, "node-1").await;
    assert_eq!(assigned.attempts, 1);
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
    upload(
        &e.jobs,
        "node-1",
        &att_id,
        chunk(1, Stream::Stderr, "DUPLICATE"),
    )
    .await;
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

    assert!(finish_ok(&e.jobs, "node-1", &att_id, exited(0), T0 + 500).await);
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
    let listed = jobs_with_status(&e.jobs, TENANT, JobStatus::Succeeded).await;
    assert_eq!(listed, vec![done]);
}

// ---- 2. one result per attempt -------------------------------------------------------------

#[tokio::test]
async fn a_second_result_for_the_same_attempt_changes_nothing() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (job, att) = submit_and_start(&e, epoch, shell("false"), "node-1", T0, T0 + 1).await;

    assert!(finish_ok(&e.jobs, "node-1", &att, exited(3), T0 + 10).await);
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
    upload(&e.jobs, "node-1", &att, chunk(0, Stream::Stdout, "late")).await;
    assert!(e.jobs.output(TENANT, &att, 0).await.unwrap().is_empty());
}

// ---- 3. output cap -------------------------------------------------------------------------

/// What the stored chunks take in the store, key and record, as written.
async fn stored_cost(store: &DynStore, att: &str) -> u64 {
    store
        .list(TENANT, &format!("output/{att}/"))
        .await
        .unwrap()
        .iter()
        .map(|e| (e.key.path().len() + e.value.len()) as u64)
        .sum()
}

#[tokio::test]
async fn output_beyond_the_cap_is_counted_not_stored() {
    let cap = 200u64;
    let (e, epoch) = env_with_output_cap(cap).await;
    let (job, att) = submit_and_start(&e, epoch, shell("yes"), "node-1", T0, T0).await;

    let sent = ["0123456789", "abcdefghij", "XYZ\n\"q\"", "more", "and more"];
    for (seq, data) in sent.iter().enumerate() {
        upload(
            &e.jobs,
            "node-1",
            &att,
            chunk(seq as u64, Stream::Stdout, data),
        )
        .await;
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
    // What the store holds stays within the cap and is what the attempt counts.
    let cost = stored_cost(&e.store, &att).await;
    assert!(cost <= cap, "{cost} stored bytes over a cap of {cap}");
    assert!(
        !stored.is_empty() && (stored.len() as u64) < sent_bytes,
        "{stored:?}"
    );
    assert!(sent.concat().starts_with(&stored), "{stored:?}");
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.output_stored_bytes, cost);
    assert_eq!(a.output_bytes, stored.len() as u64);
    assert_eq!(a.output_dropped, sent_bytes - stored.len() as u64);
    assert_eq!(a.output_seq, sent.len() as u64);

    assert!(finish_ok(&e.jobs, "node-1", &att, exited(0), T0 + 1).await);

    // A cap inside a multi-byte character stores only whole characters and counts the rest.
    let (job2, att2) = submit_and_assign(&e, epoch, shell("printf"), "node-1", T0 + 1).await;
    let empty = flux_core::model::StoredChunk {
        seq: 0,
        stream: Stream::Stdout,
        data: String::new(),
    };
    let overhead =
        flux_core::model::stored_chunk_cost(&flux_core::keys::output_chunk(&att2, 0), &empty);
    let odd = Jobs::new(
        e.store.clone(),
        JobsConfig {
            output_cap_bytes: overhead + 5,
            ..cfg()
        },
    );
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
    assert_eq!(stored, "éé");
    assert_eq!(stored_cost(&e.store, &att2).await, overhead + 4);
    let a = attempt(&odd, TENANT, &job2.job_id, &att2).await;
    assert_eq!(a.output_bytes, stored.len() as u64);
    assert_eq!(a.output_bytes + a.output_dropped, text.len() as u64);
}

/// Thousands of one-byte chunks store no more than the cap: each one's key and record count.
#[tokio::test]
async fn a_flood_of_tiny_chunks_stores_no_more_than_the_cap() {
    let cap = 4096u64;
    let (e, epoch) = env_with_output_cap(cap).await;
    let (job, att) = submit_and_start(&e, epoch, shell("yes"), "node-1", T0, T0).await;
    for seq in 0..3000u64 {
        upload(&e.jobs, "node-1", &att, chunk(seq, Stream::Stdout, "x")).await;
    }
    let cost = stored_cost(&e.store, &att).await;
    assert!(
        cost <= cap,
        "3000 one-byte chunks take {cost} bytes, cap {cap}"
    );
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert!(a.output_bytes > 0 && a.output_bytes < 3000, "{a:?}");
    assert_eq!(a.output_bytes + a.output_dropped, 3000);
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

// ---- registrations -------------------------------------------------------------------------

/// A node is held by one registration: another is refused while it lives (nothing written),
/// only its session polls the tasks (with the secret values) and acts for its attempts, and
/// once it is dead a new registration takes the node over and its attempts are requeued.
#[tokio::test]
async fn attempts_belong_to_the_registration_that_received_them() {
    use flux_core::jobs::AgentCaller;
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    let none = AgentCaller::new("node-1", None);
    let first = e
        .jobs
        .register(TENANT, none, &RegisterAgent::default(), T0)
        .await
        .unwrap();
    let s1 = first.session.expect("a new registration gets a session");
    let me = AgentCaller::new("node-1", Some(&s1));
    // Resuming with the session keeps it (no new secret).
    let again = e
        .jobs
        .register(TENANT, me, &RegisterAgent::default(), T0)
        .await
        .unwrap();
    assert_eq!(again.session, None);

    let before = snapshot(&e.store, TENANT).await;
    let forged = "00".repeat(32);
    for caller in [none, AgentCaller::new("node-1", Some(&forged))] {
        assert_refused!(
            e.jobs
                .register(TENANT, caller, &RegisterAgent::default(), T0 + 1)
                .await,
            JobError::Session(_)
        );
    }
    assert_eq!(snapshot(&e.store, TENANT).await, before, "a refusal wrote");

    let mut req = shell("echo $PW");
    req.secret_env = [("PW".to_string(), "hunter2222".to_string())].into();
    let (job, att) = submit_and_assign(&e, epoch, req, "node-1", T0 + 1).await;
    let before = snapshot(&e.store, TENANT).await;
    for caller in [none, AgentCaller::new("node-1", Some(&forged))] {
        let session = |r: Result<(), JobError>| {
            assert!(matches!(r, Err(JobError::Session(_))), "{r:?}");
        };
        session(e.jobs.poll(TENANT, caller, 0).await.map(drop));
        session(e.jobs.start(TENANT, caller, &att, T0 + 2).await);
        session(
            e.jobs
                .append_output(TENANT, caller, &att, chunk(0, Stream::Stdout, "x"))
                .await,
        );
        session(
            e.jobs
                .finish(TENANT, caller, &att, exited(0), T0 + 2)
                .await
                .map(drop),
        );
        session(
            e.jobs
                .heartbeat(TENANT, caller, &Heartbeat::default(), T0 + 2)
                .await
                .map(drop),
        );
    }
    assert_eq!(snapshot(&e.store, TENANT).await, before, "a refusal wrote");
    let tasks = e.jobs.poll(TENANT, me, 0).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].secret_env["PW"], "hunter2222");
    e.jobs.start(TENANT, me, &att, T0 + 2).await.unwrap();

    // The holder falls silent for the dead time: another process may register the node.
    let later = T0 + 2 + ms(cfg().dead_after);
    let second = e
        .jobs
        .register(TENANT, none, &RegisterAgent::default(), later)
        .await
        .unwrap();
    let s2 = second.session.expect("a takeover gets a new session");
    assert_ne!(s1, s2);
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.state, AttemptState::Abandoned, "{a:?}");
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Queued);
    // The old session is refused now; the new one does not get the old attempt.
    assert_refused!(
        e.jobs
            .heartbeat(TENANT, me, &Heartbeat::default(), later + 1)
            .await,
        JobError::Session(_)
    );
    let new = AgentCaller::new("node-1", Some(&s2));
    assert_refused!(
        e.jobs.start(TENANT, new, &att, later + 1).await,
        JobError::Gone(_)
    );
    assert!(e.jobs.poll(TENANT, new, 0).await.unwrap().is_empty());
}

// ---- the last output carried with the result -----------------------------------------------

use flux_core::keys;
use flux_core::model::ResultReport;

/// The stored chunks of an attempt as (seq, stream, data).
async fn stored_output(jobs: &Jobs, att: &str) -> Vec<(u64, Stream, String)> {
    jobs.output(TENANT, att, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.seq, c.stream, c.data))
        .collect()
}

/// The store version of each chunk key of an attempt.
async fn chunk_versions(store: &DynStore, att: &str) -> Vec<Version> {
    store
        .list(TENANT, &format!("output/{att}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.version)
        .collect()
}

#[tokio::test]
async fn a_result_carrying_the_last_output_records_both_in_one_commit() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (job, att) =
        submit_and_start(&e, epoch, shell("echo a; echo b"), "node-1", T0, T0 + 1).await;
    // Output uploaded while the command ran, then the rest with the result.
    upload(&e.jobs, "node-1", &att, chunk(0, Stream::Stdout, "a\n")).await;
    let first_chunk = chunk_versions(&e.store, &att).await;
    let tail = [
        chunk(1, Stream::Stderr, "warn\n"),
        chunk(2, Stream::Stdout, "b\n"),
    ];
    assert!(finish_carrying(&e.jobs, "node-1", &att, exited(0), &tail, T0 + 5).await);
    assert_eq!(
        stored_output(&e.jobs, &att).await,
        vec![
            (0, Stream::Stdout, "a\n".to_string()),
            (1, Stream::Stderr, "warn\n".to_string()),
            (2, Stream::Stdout, "b\n".to_string()),
        ]
    );
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.state, AttemptState::Finished);
    assert_eq!(
        a.result,
        Some(exited(0)),
        "the output is not part of the result"
    );
    assert_eq!((a.output_seq, a.output_bytes, a.output_dropped), (3, 9, 0));
    assert_eq!(a.output_stored_bytes, stored_cost(&e.store, &att).await);
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());
    // One transaction: the carried chunks carry the revision that finished the job.
    let version = |path: String| {
        let store = e.store.clone();
        async move {
            let k = Key::new(TENANT, path).unwrap();
            store.get(&k).await.unwrap().unwrap().version
        }
    };
    let job_version = version(keys::job(&job.job_id)).await;
    assert_eq!(version(keys::attempt(&job.job_id, 1)).await, job_version);
    let versions = chunk_versions(&e.store, &att).await;
    assert_eq!(versions[0], first_chunk[0]);
    assert!(first_chunk[0] < job_version);
    assert_eq!(versions[1..], [job_version, job_version]);
}

/// A short run's start is not reported on its own: its result starts and ends the attempt in
/// one transaction, the start dated the run's length before the result (never before the
/// assignment), with the job's started and finished events in that order.
#[tokio::test]
async fn a_result_for_an_unstarted_attempt_records_its_start_with_it() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (job, att) = submit_and_assign(&e, epoch, shell("true"), "node-1", T0).await;
    let before = flux_core::events::head(&*e.store, TENANT).await.unwrap();
    let recorded = e
        .jobs
        .finish_with_output(TENANT, "node-1", &att, exited(0), &[], Some(30), T0 + 100)
        .await
        .unwrap();
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.state, AttemptState::Finished);
    assert_eq!(
        (a.started_at, a.finished_at),
        (Some(T0 + 70), Some(T0 + 100))
    );
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(
        (done.started_at, done.finished_at),
        (Some(T0 + 70), Some(T0 + 100))
    );
    // The job the result ended is returned as it was stored.
    assert_eq!(
        recorded,
        Recorded::Result {
            ended: Some(Box::new(done.clone()))
        }
    );
    // The same result again records nothing.
    let again = e
        .jobs
        .finish_with_output(TENANT, "node-1", &att, exited(0), &[], Some(30), T0 + 101)
        .await
        .unwrap();
    assert_eq!(again, Recorded::Nothing);
    let logged = flux_core::events::read(&*e.store, TENANT, before, 10)
        .await
        .unwrap();
    let kinds: Vec<&str> = logged.iter().map(|l| l.event.kind.as_str()).collect();
    assert_eq!(kinds, ["job.started", "job.finished"]);
    assert_eq!(logged[0].position.revision, logged[1].position.revision);
    assert_eq!(logged[0].event.at, T0 + 70);

    // A run longer than the time since its assignment started at the assignment.
    let (job, att) = submit_and_assign(&e, epoch, shell("true"), "node-1", T0 + 200).await;
    let recorded = e
        .jobs
        .finish_with_output(
            TENANT,
            "node-1",
            &att,
            exited(1),
            &[],
            Some(u64::MAX),
            T0 + 250,
        )
        .await
        .unwrap();
    assert!(recorded.recorded());
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.started_at, Some(T0 + 200));

    // A started attempt keeps the start it reported; the run's length does not move it.
    let (job, att) = submit_and_start(&e, epoch, shell("true"), "node-1", T0 + 300, T0 + 310).await;
    let before = flux_core::events::head(&*e.store, TENANT).await.unwrap();
    e.jobs
        .finish_with_output(TENANT, "node-1", &att, exited(0), &[], Some(5), T0 + 400)
        .await
        .unwrap();
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.started_at, Some(T0 + 310));
    let logged = flux_core::events::read(&*e.store, TENANT, before, 10)
        .await
        .unwrap();
    let kinds: Vec<&str> = logged.iter().map(|l| l.event.kind.as_str()).collect();
    assert_eq!(kinds, ["job.finished"]);
}

#[tokio::test]
async fn a_repeated_result_with_its_output_stores_the_output_once() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (job, att) = submit_and_start(&e, epoch, shell("echo x"), "node-1", T0, T0 + 1).await;
    let tail = [
        chunk(0, Stream::Stdout, "x\n"),
        chunk(1, Stream::Stderr, "e\n"),
    ];
    assert!(finish_carrying(&e.jobs, "node-1", &att, exited(0), &tail, T0 + 2).await);
    let after_first = snapshot(&e.store, TENANT).await;
    // The agent did not hear the answer and sends the same report again: nothing changes.
    for _ in 0..2 {
        let again = finish_carrying(&e.jobs, "node-1", &att, exited(0), &tail, T0 + 9).await;
        assert!(!again, "a repeated result must not be recorded");
    }
    assert_eq!(snapshot(&e.store, TENANT).await, after_first);
    assert_eq!(stored_output(&e.jobs, &att).await.len(), 2);
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!((a.output_seq, a.output_bytes), (2, 4));
}

/// A chunk the output endpoint stored before (the agent's upload was stored but its answer
/// lost) is not stored twice when the result carries it again.
#[tokio::test]
async fn carried_chunks_already_uploaded_are_not_duplicated() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (job, att) = submit_and_start(&e, epoch, shell("echo"), "node-1", T0, T0 + 1).await;
    upload(&e.jobs, "node-1", &att, chunk(0, Stream::Stdout, "one\n")).await;
    let tail = [
        chunk(0, Stream::Stdout, "DUPLICATE"),
        chunk(1, Stream::Stdout, "two\n"),
    ];
    assert!(finish_carrying(&e.jobs, "node-1", &att, exited(0), &tail, T0 + 2).await);
    assert_eq!(
        stored_output(&e.jobs, &att).await,
        vec![
            (0, Stream::Stdout, "one\n".to_string()),
            (1, Stream::Stdout, "two\n".to_string()),
        ]
    );
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!((a.output_seq, a.output_bytes, a.output_dropped), (2, 8, 0));
}

#[tokio::test]
async fn output_carried_with_a_result_is_held_to_the_cap() {
    let cap = 200u64;
    let (e, epoch) = env_with_output_cap(cap).await;
    let (job, att) = submit_and_start(&e, epoch, shell("yes"), "node-1", T0, T0).await;
    upload(
        &e.jobs,
        "node-1",
        &att,
        chunk(0, Stream::Stdout, "0123456789"),
    )
    .await;
    let big = "y\n".repeat(200);
    let tail = [
        chunk(1, Stream::Stdout, &big),
        chunk(2, Stream::Stderr, "never stored"),
    ];
    assert!(finish_carrying(&e.jobs, "node-1", &att, exited(0), &tail, T0 + 1).await);
    let cost = stored_cost(&e.store, &att).await;
    assert!(cost <= cap, "{cost} stored bytes over a cap of {cap}");
    let stored: String = stored_output(&e.jobs, &att)
        .await
        .into_iter()
        .map(|(_, _, d)| d)
        .collect();
    assert!(stored.starts_with("0123456789y\n"), "{stored:?}");
    assert!(!stored.contains("never"), "{stored:?}");
    let sent = 10 + big.len() as u64 + "never stored".len() as u64;
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.output_stored_bytes, cost);
    assert_eq!(a.output_bytes, stored.len() as u64);
    assert_eq!(
        a.output_bytes + a.output_dropped,
        sent,
        "truncation is counted"
    );
    assert_eq!(a.output_seq, 3);
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Succeeded);
}

/// An attempt taken away from its agent (dead, its job requeued) does not get the output of
/// a late result: neither the attempt nor the job changes.
#[tokio::test]
async fn a_result_for_an_attempt_taken_away_does_not_record_its_output() {
    let (e, epoch) = env_with_agent("node-a").await;
    let c = cfg();
    let (job, att) = submit_and_start(&e, epoch, shell("sleep 100"), "node-a", T0, T0 + 1).await;
    let t_dead = T0 + ms(c.dead_after);
    let r = e.jobs.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();
    assert_eq!((r.marked_dead, r.requeued), (1, 1), "{r:?}");
    assert_eq!(
        attempt(&e.jobs, TENANT, &job.job_id, &att).await.state,
        AttemptState::Abandoned
    );
    let before = snapshot(&e.store, TENANT).await;
    let tail = [chunk(0, Stream::Stdout, "late output\n")];
    let recorded = finish_carrying(&e.jobs, "node-a", &att, exited(0), &tail, t_dead + 1).await;
    assert!(!recorded);
    assert_eq!(
        snapshot(&e.store, TENANT).await,
        before,
        "a late result wrote"
    );
    assert!(stored_output(&e.jobs, &att).await.is_empty());
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Queued);
}

#[tokio::test]
async fn carried_output_that_is_malformed_is_refused_and_changes_nothing() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (_, att) = submit_and_start(&e, epoch, shell("echo"), "node-1", T0, T0 + 1).await;
    let before = snapshot(&e.store, TENANT).await;

    let many: Vec<OutputChunk> = (0..=ResultReport::MAX_CHUNKS as u64)
        .map(|s| chunk(s, Stream::Stdout, "x"))
        .collect();
    let out_of_order = [chunk(0, Stream::Stdout, "a"), chunk(2, Stream::Stdout, "b")];
    for bad in [&many[..], &out_of_order[..]] {
        let err = e
            .jobs
            .finish_with_output(TENANT, "node-1", &att, exited(0), bad, None, T0 + 2)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::Invalid(m) if m.starts_with("output:")),
            "{err:?}"
        );
    }
    // Chunks beyond the next expected one are refused like on the output endpoint.
    let gap = [chunk(3, Stream::Stdout, "x")];
    assert_refused!(
        e.jobs
            .finish_with_output(TENANT, "node-1", &att, exited(0), &gap, None, T0 + 2)
            .await,
        JobError::Conflict(_)
    );
    assert_eq!(snapshot(&e.store, TENANT).await, before, "a refusal wrote");
}

/// An agent stopping mid-run reports `cancelled` without a cancel request: the job goes back
/// to the queue, and the output the run produced is kept on the attempt.
#[tokio::test]
async fn an_interrupted_run_keeps_its_carried_output_and_is_requeued() {
    let (e, epoch) = env_with_agent("node-1").await;
    let (job, att) = submit_and_start(&e, epoch, shell("sleep 9"), "node-1", T0, T0 + 1).await;
    let cancelled = ended_by(Outcome::Cancelled, None);
    let tail = [chunk(0, Stream::Stdout, "partial\n")];
    assert!(finish_carrying(&e.jobs, "node-1", &att, cancelled, &tail, T0 + 2).await);
    assert_eq!(
        stored_output(&e.jobs, &att).await,
        vec![(0, Stream::Stdout, "partial\n".to_string())]
    );
    let a = attempt(&e.jobs, TENANT, &job.job_id, &att).await;
    assert_eq!(a.state, AttemptState::Abandoned, "{a:?}");
    assert_eq!(a.output_seq, 1);
    assert_eq!(status_of(&e.jobs, &job.job_id).await, JobStatus::Queued);
}

/// An interrupted run that was the job's last attempt ends the job (failed), and the result
/// returns it as ended, so the result route counts the job's end.
#[tokio::test]
async fn an_interrupted_last_attempt_returns_the_job_it_failed() {
    let (e, epoch) = env_with_agent("node-1").await;
    let req = SubmitJob {
        max_attempts: Some(1),
        ..shell("sleep 9")
    };
    let (job, att) = submit_and_start(&e, epoch, req, "node-1", T0, T0 + 1).await;
    let cancelled = ended_by(Outcome::Cancelled, None);
    let recorded = e
        .jobs
        .finish_with_output(TENANT, "node-1", &att, cancelled, &[], None, T0 + 2)
        .await
        .unwrap();
    let done = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    assert_eq!(
        recorded,
        Recorded::Result {
            ended: Some(Box::new(done))
        }
    );
}

// ---- facts and admin labels ------------------------------------------------------------------

async fn agent_version(e: &Env, node: &str) -> Version {
    e.store
        .get(&Key::new(TENANT, flux_core::keys::agent(node)).unwrap())
        .await
        .unwrap()
        .unwrap()
        .version
}

#[tokio::test]
async fn facts_are_stored_at_registration_and_written_again_only_when_they_change() {
    use flux_core::model::Facts;
    let e = env().await;
    let facts = |cpus: u64| Facts {
        os: Some("linux".into()),
        cpus: Some(cpus),
        ..Facts::default()
    };
    let req = RegisterAgent {
        facts: Some(facts(2)),
        ..Default::default()
    };
    e.jobs.register(TENANT, "n1", &req, T0).await.unwrap();
    assert_eq!(e.jobs.agent(TENANT, "n1").await.unwrap().facts, facts(2));
    let v0 = agent_version(&e, "n1").await;
    // Heartbeats without facts, or with the same ones, write nothing.
    for f in [None, Some(facts(2))] {
        let hb = Heartbeat {
            running: vec![],
            facts: f,
        };
        e.jobs.heartbeat(TENANT, "n1", &hb, T0 + 1).await.unwrap();
        assert_eq!(agent_version(&e, "n1").await, v0);
    }
    // Changed facts are written.
    let hb = Heartbeat {
        running: vec![],
        facts: Some(facts(8)),
    };
    e.jobs.heartbeat(TENANT, "n1", &hb, T0 + 2).await.unwrap();
    assert_eq!(e.jobs.agent(TENANT, "n1").await.unwrap().facts, facts(8));
    let v1 = agent_version(&e, "n1").await;
    assert!(v1 > v0);
    // Oversized facts are refused, naming the field, and change nothing.
    let hb = Heartbeat {
        running: vec![],
        facts: Some(Facts {
            kernel: Some("k".repeat(1 << 20)),
            ..Facts::default()
        }),
    };
    match e.jobs.heartbeat(TENANT, "n1", &hb, T0 + 3).await {
        Err(JobError::Invalid(m)) => assert!(m.starts_with("facts.kernel:"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(agent_version(&e, "n1").await, v1);
}

#[tokio::test]
async fn admin_labels_survive_registration_and_win_in_placement() {
    use flux_core::model::LabelAgent;
    use flux_core::selector::Selector;
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    let declare = |labels: &[(&str, &str)]| RegisterAgent {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    e.jobs
        .register(TENANT, "n1", &declare(&[("role", "db")]), T0)
        .await
        .unwrap();
    let set = LabelAgent {
        set: [("role".to_string(), "web".to_string())].into(),
        remove: vec![],
    };
    let a = e.jobs.label_agent(TENANT, "n1", &set).await.unwrap();
    assert_eq!(a.admin_labels["role"], "web");
    // The agent registers again declaring other labels: its admin labels stay.
    e.jobs
        .register(
            TENANT,
            "n1",
            &declare(&[("role", "db"), ("zone", "a")]),
            T0 + 1,
        )
        .await
        .unwrap();
    let a = e.jobs.agent(TENANT, "n1").await.unwrap();
    assert_eq!(a.labels["zone"], "a");
    assert_eq!(a.admin_labels["role"], "web");
    // Placement sees the admin label, not the declared one.
    let mut db = shell("true");
    db.selector = Selector::parse("role=db").unwrap();
    let (db, _) = e.jobs.submit(TENANT, "alice", db, T0).await.unwrap();
    let mut web = shell("true");
    web.selector = Selector::parse("role in (web),zone=a").unwrap();
    let (web, _) = e.jobs.submit(TENANT, "alice", web, T0).await.unwrap();
    schedule_pass(&e.jobs, epoch, T0 + 2).await;
    assert_eq!(status_of(&e.jobs, &web.job_id).await, JobStatus::Assigned);
    assert_eq!(status_of(&e.jobs, &db.job_id).await, JobStatus::Queued);
    // Unknown agents and bad changes are refused; nothing changes.
    assert!(matches!(
        e.jobs.label_agent(TENANT, "ghost", &set).await,
        Err(JobError::NotFound(_))
    ));
    let bad = LabelAgent {
        set: [("fact.os".to_string(), "x".to_string())].into(),
        remove: vec![],
    };
    let v = agent_version(&e, "n1").await;
    assert!(matches!(
        e.jobs.label_agent(TENANT, "n1", &bad).await,
        Err(JobError::Invalid(_))
    ));
    assert_eq!(agent_version(&e, "n1").await, v);
}
