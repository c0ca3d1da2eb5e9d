//! Wakes job waits (`GET /v1/jobs/{id}/wait`) and log followers (`logs?follow=true`) when
//! their own job changes.
//!
//! One subscription to the store's change notices serves every wait and follow on this node: a
//! notice wakes only the watchers of the jobs whose paths it touches (all of them on a resync
//! or when the subscription lagged). Were each request to read the notices itself, every commit
//! of every tenant (heartbeats, other jobs' output, audit records) would wake every open wait
//! and follow: with W of them open and C commits a second, W × C wake-ups and job reads a
//! second.
//!
//! A job's paths: its record `jobs/<id>`, its attempts `attempts/<id>/<n>`, its attempts'
//! output `output/<id>.<n>/<seq>` (an attempt id is `<job id>.<number>`) and its entries in the
//! listing indexes, `jobidx/status/<status>/<kind>/<id>` among them. A watcher chooses what
//! wakes it ([`Interest`]): a wait only the job's end, a follow every change of the job.
//!
//! A job ends in the write that puts its entry in a finished status's index: every write of a
//! job record changes its index entries in the same transaction (`flux_core::jobs::put_job`).
//! So a wait is woken once, when there is something to return, instead of by every step of the
//! job (assignment, start) each followed by a read of the record that finds it still running.

use std::sync::Arc;

use flux_core::keys;
use flux_core::model::{JobStatus, parse_attempt_id};
use flux_core::store::Change;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::inboxes::{Registration, WatchTable};

/// What wakes a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The job's end only (its entry in the index of a finished status).
    End,
    /// Every change: the record, the attempts, their output and the end.
    Everything,
}

/// Which of a job's objects a path is, with the job's id.
fn job_of(path: &str) -> Option<(&str, Interest)> {
    if let Some(id) = path.strip_prefix(keys::JOBS) {
        return (!id.is_empty() && !id.contains('/')).then_some((id, Interest::Everything));
    }
    if let Some((status, id)) = keys::job_status_entry(path) {
        let ended = JobStatus::parse(status).is_some_and(JobStatus::is_terminal);
        return ended.then_some((id, Interest::End));
    }
    if let Some(rest) = path.strip_prefix("attempts/") {
        let (id, _) = rest.split_once('/')?;
        return (!id.is_empty()).then_some((id, Interest::Everything));
    }
    if let Some(rest) = path.strip_prefix("output/") {
        let (attempt, _) = rest.split_once('/')?;
        let (id, _) = parse_attempt_id(attempt)?;
        return Some((id, Interest::Everything));
    }
    None
}

#[derive(Default)]
struct Waiting {
    /// Woken by the job's end.
    end: Arc<Notify>,
    /// Woken by a change to anything of the job.
    everything: Arc<Notify>,
}

/// The jobs waited on or followed on this node.
#[derive(Default)]
pub struct JobWaiters {
    waiting: Arc<WatchTable<Waiting>>,
}

/// A wait's or follow's registration; dropping it unregisters it.
pub struct JobWatch {
    _registered: Registration<Waiting>,
    notify: Arc<Notify>,
}

impl JobWatch {
    /// What a change of interest notifies. Create and enable a `notified()` future on it
    /// before reading the job, so that a change committed after the read is not missed.
    pub fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

impl JobWaiters {
    /// Registers a watcher of job `job_id` of `tenant`.
    pub fn watch(self: &Arc<Self>, tenant: &str, job_id: &str, interest: Interest) -> JobWatch {
        let (registered, notify) = self.waiting.watch(tenant, job_id, |w| match interest {
            Interest::End => w.end.clone(),
            Interest::Everything => w.everything.clone(),
        });
        JobWatch {
            _registered: registered,
            notify,
        }
    }

    /// Jobs currently watched.
    #[cfg(test)]
    fn jobs_watched(&self) -> usize {
        self.waiting.watched()
    }

    fn wake_all(&self) {
        self.waiting.for_each(|w| {
            w.end.notify_waiters();
            w.everything.notify_waiters();
        });
    }

    /// Wakes the watchers a change concerns.
    pub fn dispatch(&self, change: &Change) {
        if change.is_resync() {
            return self.wake_all();
        }
        self.waiting.dispatch(change, job_of, |w, what| {
            w.everything.notify_waiters();
            if what == Interest::End {
                w.end.notify_waiters();
            }
        });
    }

    /// Forwards the store's change notices until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        changes: broadcast::Receiver<Arc<Change>>,
        cancel: CancellationToken,
    ) {
        crate::inboxes::forward_changes(self.as_ref(), changes, cancel).await
    }
}

impl crate::inboxes::ChangeHub for JobWaiters {
    fn dispatch(&self, change: &Change) {
        JobWaiters::dispatch(self, change)
    }
    fn wake_all(&self) {
        JobWaiters::wake_all(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inboxes::tests::{change, lag_wakes, woken_by};

    async fn woken(w: &JobWatch, after: impl FnOnce()) -> bool {
        woken_by(w.notify().notified(), after).await
    }

    #[test]
    fn paths_belong_to_their_job() {
        assert_eq!(
            job_of(&keys::job("j-1")),
            Some(("j-1", Interest::Everything))
        );
        // The entry a job's end writes, for every finished status.
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            let ended = keys::job_index_entry(
                &keys::job_index("status", status.as_str(), "reconciler"),
                "j-1",
            );
            assert_eq!(job_of(&ended), Some(("j-1", Interest::End)), "{ended}");
        }
        assert_eq!(
            job_of(&keys::attempt("j-1", 2)),
            Some(("j-1", Interest::Everything))
        );
        assert_eq!(
            job_of(&keys::output_chunk("j-1.2", 7)),
            Some(("j-1", Interest::Everything))
        );
        // A job id may hold dots; the attempt number is what follows the last one.
        assert_eq!(
            job_of(&keys::output_chunk("j.x.12", 0)),
            Some(("j.x", Interest::Everything))
        );
        for other in [
            "pending/j-1",
            "inbox/a/j-1.1",
            "agents/a",
            "jobs/",
            "output/j-1/0000000001",
            "idem/j-1",
            // Index entries other than a finished status's: the job goes on.
            "jobidx/status/running/user/j-1",
            "jobidx/status/queued/user/j-1",
            "jobidx/agent/a/user/j-1",
            "jobidx/kind/user/j-1",
        ] {
            assert_eq!(job_of(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_watcher_of_one_job_is_woken_by_its_job_only() {
        let hub = Arc::new(JobWaiters::default());
        let a = hub.watch("t1", "ja", Interest::Everything);
        let a_wait = hub.watch("t1", "ja", Interest::End);
        let b = hub.watch("t1", "jb", Interest::Everything);
        let other_tenant = hub.watch("t2", "ja", Interest::Everything);

        let job_b = change(
            "t1",
            &["jobs/jb", "attempts/jb/0001", "output/jb.1/0000000000"],
        );
        assert!(!woken(&a, || hub.dispatch(&job_b)).await);
        assert!(!woken(&a_wait, || hub.dispatch(&job_b)).await);
        assert!(woken(&b, || hub.dispatch(&job_b)).await);

        // A step of the job that does not end it (here its assignment) wakes a follower, not
        // a wait.
        let assigned_a = change(
            "t1",
            &[
                "pending/ja",
                "jobs/ja",
                "jobidx/status/queued/user/ja",
                "jobidx/status/assigned/user/ja",
            ],
        );
        assert!(woken(&a, || hub.dispatch(&assigned_a)).await);
        assert!(!woken(&a_wait, || hub.dispatch(&assigned_a)).await);
        assert!(!woken(&b, || hub.dispatch(&assigned_a)).await);
        // Its end wakes both, and nobody else.
        let ended_a = change(
            "t1",
            &[
                "jobs/ja",
                "jobidx/status/running/user/ja",
                "jobidx/status/succeeded/user/ja",
            ],
        );
        assert!(woken(&a, || hub.dispatch(&ended_a)).await);
        assert!(woken(&a_wait, || hub.dispatch(&ended_a)).await);
        assert!(!woken(&b, || hub.dispatch(&ended_a)).await);
        assert!(!woken(&other_tenant, || hub.dispatch(&ended_a)).await);

        // Output wakes a follower, not a wait (the job has not ended).
        let output_a = change("t1", &["output/ja.1/0000000003"]);
        assert!(woken(&a, || hub.dispatch(&output_a)).await);
        assert!(!woken(&a_wait, || hub.dispatch(&output_a)).await);

        // A job id that merely starts like another is not it.
        assert!(!woken(&a, || hub.dispatch(&change("t1", &["jobs/ja2"]))).await);
        // Other objects wake nobody.
        assert!(
            !woken(&a, || hub
                .dispatch(&change("t1", &["agents/x", "audit_head"])))
            .await
        );
        // A resync wakes everyone.
        assert!(woken(&a_wait, || hub.dispatch(&Change::resync())).await);
        assert!(woken(&other_tenant, || hub.dispatch(&Change::resync())).await);
    }

    #[tokio::test]
    async fn registrations_are_counted_and_removed_with_the_last_watcher() {
        let hub = Arc::new(JobWaiters::default());
        let first = hub.watch("t", "j", Interest::End);
        let second = hub.watch("t", "j", Interest::Everything);
        assert_eq!(hub.jobs_watched(), 1);
        drop(first);
        assert_eq!(hub.jobs_watched(), 1);
        assert!(
            woken(&second, || hub
                .dispatch(&change("t", &["output/j.1/0000000000"])))
            .await
        );
        drop(second);
        assert_eq!(hub.jobs_watched(), 0);
    }

    #[tokio::test]
    async fn lagging_behind_the_store_wakes_everyone() {
        let hub = Arc::new(JobWaiters::default());
        let w = hub.watch("t", "j", Interest::End);
        let notify = w.notify();
        // Two notices into a channel of one: the forwarder lags and must wake the watcher even
        // though neither notice touches its job.
        let notices = [change("t", &["jobs/x"]), change("t", &["jobs/y"])];
        lag_wakes(notify.notified(), notices, |rx, cancel| {
            hub.clone().run(rx, cancel)
        })
        .await;
    }
}
