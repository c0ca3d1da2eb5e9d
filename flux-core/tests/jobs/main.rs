//! The job service (`flux_core::jobs::Jobs`) driven directly against a real embedded redb store.
//!
//! Time never passes on its own here: every call takes an explicit `now` in milliseconds, so
//! liveness, start deadlines and requeues are exercised by handing later timestamps to the
//! leader's sweeps.
//!
//! This file holds the shared fixtures (a store, a job service, agents and helpers); the tests
//! are grouped by the part of the service they drive: `submit`, `schedule`, `liveness` and
//! `protocol`, as in `flux-core/src/jobs/`.

/// Asserts that the call `result` was refused with an error matching `pattern`, showing the
/// error otherwise. Defined before the test modules so that they can use it.
macro_rules! assert_refused {
    ($result:expr, $pattern:pat) => {
        let err = $result.unwrap_err();
        assert!(matches!(err, $pattern), "{err:?}");
    };
}

#[path = "../common/mod.rs"]
mod common;
mod listing;
mod liveness;
mod protocol;
mod schedule;
mod submit;
mod sweep_view;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use flux_core::jobs::{JobError, JobFilter, Jobs, JobsConfig, Recorded, SweepReport};
use flux_core::model::{
    AgentState, Attempt, AttemptResult, AttemptState, CommandSpec, Heartbeat, Job, JobStatus,
    Millis, Outcome, OutputChunk, RegisterAgent, Stream, SubmitJob, Task,
};
use flux_core::store::{self, DynStore, Epoch, Key, Op, StoreError, Version};
use flux_core::testing::BeforeCommit;

use common::{T0, TENANT, ended_by, entries, exited, jobs_with_status, listed_jobs, open_redb};

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

fn cfg() -> JobsConfig {
    JobsConfig::default()
}

/// The default configuration, with attempts requeued when not started within `d`.
fn cfg_with_start_timeout(d: Duration) -> JobsConfig {
    JobsConfig {
        start_timeout: d,
        ..cfg()
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: DynStore,
    jobs: Jobs,
}

async fn env_with(cfg: JobsConfig) -> Env {
    let (dir, store) = open_redb("flux.redb").await;
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

/// A fresh store and job service, the epoch of a leader, and agent `node` registered at `T0`.
async fn env_with_agent(node: &str) -> (Env, Epoch) {
    env_with_cfg_and_agent(cfg(), node).await
}

/// A fresh store and job service, the epoch of a leader, and agents `nodes` registered at `T0`.
async fn env_with_agents(nodes: impl IntoIterator<Item = String>) -> (Env, Epoch) {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    for node in nodes {
        register(&e.jobs, TENANT, &node, T0).await;
    }
    (e, epoch)
}

/// [`env_with_agent`], with the job service configured by `cfg`.
async fn env_with_cfg_and_agent(cfg: JobsConfig, node: &str) -> (Env, Epoch) {
    let e = env_with(cfg).await;
    let epoch = e.store.next_epoch().await.unwrap();
    register(&e.jobs, TENANT, node, T0).await;
    (e, epoch)
}

/// [`env_with_agent`] for `node-1`, with the job service storing at most `cap` bytes of output
/// per attempt.
async fn env_with_output_cap(cap: u64) -> (Env, Epoch) {
    let c = JobsConfig {
        output_cap_bytes: cap,
        ..cfg()
    };
    env_with_cfg_and_agent(c, "node-1").await
}

fn shell(cmd: &str) -> SubmitJob {
    SubmitJob {
        command: Some(cmd.to_string()),
        ..Default::default()
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
        facts: None,
    };
    jobs.heartbeat(tenant, node, &hb, now).await.unwrap();
}

/// The leader's scheduling pass over the tenant at `now` (no cap on running jobs); returns how
/// many jobs it assigned.
async fn schedule_pass(jobs: &Jobs, epoch: Epoch, now: Millis) -> usize {
    jobs.schedule_tenant(TENANT, epoch, now, None)
        .await
        .unwrap()
}

/// `node` reports the end of attempt `attempt` at `now`; returns whether it was recorded.
async fn finish_ok(
    jobs: &Jobs,
    node: &str,
    attempt: &str,
    result: AttemptResult,
    now: Millis,
) -> bool {
    jobs.finish(TENANT, node, attempt, result, now)
        .await
        .unwrap()
}

/// The status job `job_id` has now.
async fn status_of(jobs: &Jobs, job_id: &str) -> JobStatus {
    jobs.get(TENANT, job_id).await.unwrap().status
}

/// The one task in an agent's inbox.
async fn only_task(jobs: &Jobs, tenant: &str, node: &str) -> Task {
    let mut tasks = jobs.poll(tenant, node, 0).await.unwrap();
    assert_eq!(tasks.len(), 1, "inbox of {node}: {tasks:?}");
    tasks.pop().unwrap()
}

/// [`submit_and_assign`], then `node` starts the attempt at `started`.
async fn submit_and_start(
    e: &Env,
    epoch: Epoch,
    req: SubmitJob,
    node: &str,
    now: Millis,
    started: Millis,
) -> (Job, String) {
    let (job, att) = submit_and_assign(e, epoch, req, node, now).await;
    e.jobs.start(TENANT, node, &att, started).await.unwrap();
    (job, att)
}

/// What `node` of `tenant` is answered when it reports the start of attempt `att` at `now` and
/// when it uploads chunk `c` of its output: both must be refused; returns the two errors.
async fn start_and_upload_errors(
    jobs: &Jobs,
    tenant: &str,
    node: &str,
    att: &str,
    c: OutputChunk,
    now: Millis,
) -> [JobError; 2] {
    let start = jobs.start(tenant, node, att, now).await;
    let upload = jobs.append_output(tenant, node, att, c).await;
    [
        start.expect_err("the start was accepted"),
        upload.expect_err("the upload was accepted"),
    ]
}

/// `node` uploads chunk `c` of the output of attempt `att`.
async fn upload(jobs: &Jobs, node: &str, att: &str, c: OutputChunk) {
    jobs.append_output(TENANT, node, att, c).await.unwrap();
}

/// `node` reports the end of attempt `att` at `now` carrying the last output `tail`; returns
/// whether it was recorded.
async fn finish_carrying(
    jobs: &Jobs,
    node: &str,
    att: &str,
    result: AttemptResult,
    tail: &[OutputChunk],
    now: Millis,
) -> bool {
    jobs.finish_with_output(TENANT, node, att, result, tail, None, now)
        .await
        .unwrap()
        .recorded()
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
    assert_eq!(schedule_pass(&e.jobs, epoch, now).await, 1);
    let (job, task) = assigned_to(e, &job.job_id, node).await;
    (job, task.attempt_id)
}

/// Job `job_id` as it is now, asserted to be assigned to `node`, and the one task in the inbox
/// of `node`, asserted to be the job's current attempt.
async fn assigned_to(e: &Env, job_id: &str, node: &str) -> (Job, Task) {
    let job = e.jobs.get(TENANT, job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Assigned);
    assert_eq!(job.agent.as_deref(), Some(node));
    let task = only_task(&e.jobs, TENANT, node).await;
    assert_eq!(Some(&task.attempt_id), job.current_attempt.as_ref());
    (job, task)
}

fn is_fenced(err: &JobError, presented: Epoch, current: Epoch) -> bool {
    matches!(
        err,
        JobError::Store(StoreError::Fenced { presented: p, current: c })
            if *p == presented && *c == current
    )
}
