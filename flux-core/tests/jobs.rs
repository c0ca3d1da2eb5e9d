//! The job service (`flux_core::jobs::Jobs`) driven directly against a real embedded redb store.
//!
//! Time never passes on its own here: every call takes an explicit `now` in milliseconds, so
//! liveness, start deadlines and requeues are exercised by handing later timestamps to the
//! leader's sweeps.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use flux_core::jobs::{JobError, JobFilter, Jobs, JobsConfig, SweepReport};
use flux_core::model::{
    AgentState, Attempt, AttemptResult, AttemptState, CommandSpec, Heartbeat, Job, JobStatus,
    Millis, Outcome, OutputChunk, RegisterAgent, Stream, SubmitJob, Task,
};
use flux_core::store::{self, DynStore, Epoch, Key, Op, StoreError, Version};
use flux_core::testing::BeforeCommit;

const T0: Millis = 1_700_000_000_000;
const TENANT: &str = "acme";

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

fn cfg() -> JobsConfig {
    JobsConfig::default()
}

struct Env {
    _dir: tempfile::TempDir,
    store: DynStore,
    jobs: Jobs,
}

async fn env_with(cfg: JobsConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    let store = store::open(&format!("redb:{}", path.display()))
        .await
        .unwrap();
    let jobs = Jobs::new(store.clone(), cfg);
    Env {
        _dir: dir,
        store,
        jobs,
    }
}

async fn env() -> Env {
    env_with(cfg()).await
}

fn shell(cmd: &str) -> SubmitJob {
    SubmitJob {
        command: Some(cmd.to_string()),
        ..Default::default()
    }
}

fn exited(code: i32) -> AttemptResult {
    AttemptResult {
        outcome: Outcome::Exited,
        exit_code: Some(code),
        signal: None,
        message: None,
    }
}

fn chunk(seq: u64, stream: Stream, data: &str) -> OutputChunk {
    OutputChunk {
        seq,
        stream,
        data: data.to_string(),
    }
}

async fn register(jobs: &Jobs, tenant: &str, node: &str, now: Millis) {
    let req = RegisterAgent {
        slots: Some(4),
        ..Default::default()
    };
    let reply = jobs.register(tenant, node, &req, now).await.unwrap();
    assert!(reply.cancel.is_empty(), "{reply:?}");
}

async fn heartbeat(jobs: &Jobs, tenant: &str, node: &str, running: &[&str], now: Millis) {
    let hb = Heartbeat {
        running: running.iter().map(|s| s.to_string()).collect(),
    };
    jobs.heartbeat(tenant, node, &hb, now).await.unwrap();
}

/// The one task in an agent's inbox.
async fn only_task(jobs: &Jobs, tenant: &str, node: &str) -> Task {
    let mut tasks = jobs.poll(tenant, node, 0).await.unwrap();
    assert_eq!(tasks.len(), 1, "inbox of {node}: {tasks:?}");
    tasks.pop().unwrap()
}

/// Every object of a tenant, with its version, for "nothing was written" checks.
async fn snapshot(store: &DynStore, tenant: &str) -> Vec<(String, Version, Vec<u8>)> {
    store
        .list(tenant, "")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key.path().to_string(), e.version, e.value))
        .collect()
}

async fn attempt(jobs: &Jobs, tenant: &str, job_id: &str, attempt_id: &str) -> Attempt {
    jobs.attempts(tenant, job_id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.attempt_id == attempt_id)
        .unwrap_or_else(|| panic!("attempt {attempt_id} of job {job_id} not found"))
}

/// Submits a job and assigns it to `node` (which must be the only free agent); returns the job
/// and the attempt id the agent received.
async fn submit_and_assign(
    e: &Env,
    epoch: Epoch,
    req: SubmitJob,
    node: &str,
    now: Millis,
) -> (Job, String) {
    let (job, created) = e.jobs.submit(TENANT, "alice", req, now).await.unwrap();
    assert!(created);
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, now, None)
            .await
            .unwrap(),
        1
    );
    let job = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Assigned);
    assert_eq!(job.agent.as_deref(), Some(node));
    let task = only_task(&e.jobs, TENANT, node).await;
    assert_eq!(Some(&task.attempt_id), job.current_attempt.as_ref());
    (job, task.attempt_id)
}

fn is_fenced(err: &JobError, presented: Epoch, current: Epoch) -> bool {
    matches!(
        err,
        JobError::Store(StoreError::Fenced { presented: p, current: c })
            if *p == presented && *c == current
    )
}

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
    assert_eq!(
        e.jobs
            .list(TENANT, &JobFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
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
        let err = e
            .jobs
            .submit(TENANT, "alice", different, T0 + 2)
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::Conflict(_)), "{err:?}");
    }
    assert_eq!(snapshot(&e.store, TENANT).await, before);

    // Once the job has moved on, a replay still returns it rather than a new job.
    register(&e.jobs, TENANT, "node-1", T0).await;
    let epoch = e.store.next_epoch().await.unwrap();
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0, None)
            .await
            .unwrap(),
        1
    );
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
    let e = env_with(JobsConfig {
        start_timeout: Duration::from_secs(5),
        ..cfg()
    })
    .await;
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
    assert_eq!(
        e.jobs
            .schedule_tenant(TENANT, epoch, T0 + 2, None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        e.jobs.cancel(TENANT, &queued.job_id, T0 + 3).await.unwrap(),
        c
    );
    assert!(e.jobs.poll(TENANT, "node-1", 0).await.unwrap().is_empty());

    // Running: the agent is asked through its inbox; the job ends when it reports.
    let t = T0 + 10;
    let (job, att) = submit_and_assign(&e, epoch, shell("sleep 600"), "node-1", t).await;
    e.jobs.start(TENANT, "node-1", &att, t).await.unwrap();
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
    };
    let reply = e
        .jobs
        .heartbeat(TENANT, "node-1", &hb, t + 1)
        .await
        .unwrap();
    assert_eq!(reply.cancel, vec![att.clone()], "{reply:?}");

    let result = AttemptResult {
        outcome: Outcome::Cancelled,
        exit_code: None,
        signal: Some(15),
        message: None,
    };
    assert!(
        e.jobs
            .finish(TENANT, "node-1", &att, result, t + 2)
            .await
            .unwrap()
    );
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

    let err = e.jobs.get(b, &job.job_id).await.unwrap_err();
    assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
    let err = e.jobs.attempts(b, &job.job_id).await.unwrap_err();
    assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
    let err = e.jobs.cancel(b, &job.job_id, T0).await.unwrap_err();
    assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
    assert!(
        e.jobs
            .list(b, &JobFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
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
    let err = e.jobs.start(b, "node-1", &att, T0 + 2).await.unwrap_err();
    assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
    let err = e
        .jobs
        .append_output(b, "node-1", &att, chunk(0, Stream::Stdout, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
    let err = e
        .jobs
        .finish(b, "node-1", &att, exited(0), T0 + 2)
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::NotFound(_)), "{err:?}");
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
    assert!(
        e.jobs
            .list(TENANT, &JobFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
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
    assert_eq!(
        e.jobs
            .list(TENANT, &JobFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
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
