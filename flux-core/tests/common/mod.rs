//! Fixtures that several integration test binaries of `flux-core` share: a redb store in a
//! temporary directory, the agent's side of a job, played by the test, and the checks the
//! store durability tests make on both backends.
//!
//! Guarantees:
//! - [`open_redb`] gives each caller a store of its own, in a directory removed when the
//!   returned guard is dropped; nothing is shared between tests.
//! - [`play_agent`] goes through the job service's public calls only (schedule, poll, start,
//!   finish), in the order a real agent makes them, and panics on any refusal, so a test that
//!   uses it fails where an agent would have been refused.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use flux_core::jobs::{JobFilter, Jobs};
use flux_core::model::{AttemptResult, Job, JobStatus, Millis, Outcome};
use flux_core::quota::{self, Quota};
use flux_core::store::{self, DynStore, Entry, Epoch, Expect, Key, Store, Version, Versioned};
use flux_core::testing::poll_until;

/// The time the tests start at, in milliseconds since the epoch.
pub const T0: Millis = 1_700_000_000_000;
/// The tenant the tests act in.
pub const TENANT: &str = "acme";

/// A redb store in a new temporary directory (file `file`); the directory lives as long as the
/// returned guard.
pub async fn open_redb(file: &str) -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&format!("redb:{}", dir.path().join(file).display()))
        .await
        .unwrap();
    (dir, store)
}

/// Every job of `tenant`, as the unfiltered listing returns them.
pub async fn listed_jobs(jobs: &Jobs, tenant: &str) -> Vec<Job> {
    jobs.list(tenant, &JobFilter::default()).await.unwrap()
}

/// Every job of `tenant` in `status`.
pub async fn jobs_with_status(jobs: &Jobs, tenant: &str, status: JobStatus) -> Vec<Job> {
    let filter = JobFilter {
        status: Some(status),
        ..Default::default()
    };
    jobs.list(tenant, &filter).await.unwrap()
}

/// Every stored entry of `tenant` under `prefix`.
pub async fn entries(store: &DynStore, tenant: &str, prefix: &str) -> Vec<Entry> {
    store.list(tenant, prefix).await.unwrap()
}

/// Sets the quota of `tenant` to `q`, whatever it was.
pub async fn set_quota(store: &DynStore, tenant: &str, q: &Quota) {
    quota::put(store.as_ref(), tenant, q, Expect::Any)
        .await
        .unwrap();
}

/// The result of an attempt whose command exited with `code`.
pub fn exited(code: i32) -> AttemptResult {
    AttemptResult {
        outcome: Outcome::Exited,
        exit_code: Some(code),
        signal: None,
        message: None,
    }
}

/// The result of an attempt that ended as `outcome` without an exit code, by `signal` if any.
pub fn ended_by(outcome: Outcome, signal: Option<i32>) -> AttemptResult {
    AttemptResult {
        outcome,
        exit_code: None,
        signal,
        message: None,
    }
}

/// Plays agent `node` of `tenant`: one scheduling pass at `now`, then every task in its inbox
/// is started and finished at `now` with the exit code `code_for` picks from its command. Tasks
/// of jobs that are already final are skipped when `skip_final` is set. Returns the commands
/// run, in inbox order.
pub async fn play_agent(
    jobs: &Jobs,
    tenant: &str,
    epoch: Epoch,
    node: &str,
    now: Millis,
    skip_final: bool,
    mut code_for: impl FnMut(&str) -> i32,
) -> Vec<String> {
    jobs.schedule_tenant(tenant, epoch, now, None)
        .await
        .unwrap();
    let mut ran = Vec::new();
    for task in jobs.poll(tenant, node, 0).await.unwrap() {
        if skip_final
            && jobs
                .get(tenant, &task.job_id)
                .await
                .unwrap()
                .status
                .is_terminal()
        {
            continue;
        }
        let cmd = task.command.display();
        jobs.start(tenant, node, &task.attempt_id, now)
            .await
            .unwrap();
        let result = exited(code_for(&cmd));
        jobs.finish(tenant, node, &task.attempt_id, result, now)
            .await
            .unwrap();
        ran.push(cmd);
    }
    ran
}

/// The stored record of acknowledged write `what`, at `path` of tenant `acme`; panics when it
/// was lost.
pub async fn acknowledged<S: Store + ?Sized>(s: &S, path: String, what: &str) -> Versioned {
    let k = Key::new("acme", path).unwrap();
    s.get(&k)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("acknowledged write {what} lost"))
}

/// Writes `value` at the new key `path` of tenant `tenant`; panics when the write is refused.
/// Returns the version written.
pub async fn put_new<S: Store + ?Sized>(s: &S, tenant: &str, path: &str, value: &[u8]) -> Version {
    s.put(
        Key::new(tenant, path).unwrap(),
        value.to_vec(),
        Expect::Absent,
    )
    .await
    .unwrap()
}

/// `n` puts of new keys `path(i)` of tenant `acme` (value `x`) at once, one task each; returns
/// their results in order.
pub async fn concurrent_puts<S: Store>(
    s: &Arc<S>,
    n: u32,
    path: impl Fn(u32) -> String,
) -> Vec<store::Result<Version>> {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (s, p) = (s.clone(), path(i));
            tokio::spawn(async move {
                s.put(Key::new("acme", p).unwrap(), b"x".to_vec(), Expect::Absent)
                    .await
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Waits (up to 10 s, looking every 20 ms) until `s` no longer reports that it cannot commit;
/// fails the test otherwise.
pub async fn wait_writable<S: Store + ?Sized>(s: &S) {
    poll_until(
        Duration::from_millis(20),
        Duration::from_secs(10),
        || async { s.unwritable().is_none().then_some(()) },
    )
    .await
    .expect("the store never recovered");
}
