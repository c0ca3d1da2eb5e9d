//! Job listing from the indexes: a page costs about `limit` reads, cursors return every job
//! once while jobs come and go, every filter (alone and combined) agrees with a full scan, the
//! status index follows every transition, the migration indexes jobs stored before the indexes,
//! and a follower reads each output chunk once.

use std::collections::{BTreeMap, BTreeSet};

use flux_core::jobs::listing::{IndexBackfill, MAX_SCAN};
use flux_core::jobs::{Page, index_keys};
use flux_core::keys;
use flux_core::model::{JobKind, StoredChunk};
use flux_core::store::{Expect, Txn};
use flux_core::testing::{Counting, ReadCounts};

use super::*;

/// The filter on `status` and `kind` (`None`: any).
fn job_filter(status: Option<JobStatus>, kind: Option<JobKind>) -> JobFilter {
    JobFilter {
        status,
        kind,
        ..Default::default()
    }
}

/// An environment whose job service reads through a counting store.
async fn counting_env() -> (Env, std::sync::Arc<ReadCounts>) {
    let e = env().await;
    let (store, counts) = Counting::wrap(e.store.clone());
    let jobs = Jobs::new(store.clone(), cfg());
    (
        Env {
            _dir: e._dir,
            store,
            jobs,
        },
        counts,
    )
}

/// Creates `n` queued jobs (kind chosen per index), committed in batches.
async fn bulk(e: &Env, n: usize, kind: impl Fn(usize) -> JobKind) -> Vec<Job> {
    bulk_of(e, n, &shell("true"), kind).await
}

/// [`bulk`] with every `every`-th job (the first included) a reconciler's, the others users'.
async fn bulk_mixed(e: &Env, n: usize, every: usize) -> Vec<Job> {
    bulk(e, n, |i| {
        if i % every == 0 {
            JobKind::Reconciler
        } else {
            JobKind::User
        }
    })
    .await
}

async fn bulk_of(e: &Env, n: usize, req: &SubmitJob, kind: impl Fn(usize) -> JobKind) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut txns = Vec::new();
    for i in 0..n {
        let (job, txn) = e
            .jobs
            .prepare_submit_as(TENANT, "alice", req, T0 + i as u64, kind(i))
            .unwrap();
        jobs.push(job);
        txns.push(txn);
        if txns.len() == 200 || i + 1 == n {
            for r in e.store.commit_many(std::mem::take(&mut txns)).await {
                r.unwrap();
            }
        }
    }
    jobs
}

/// Every job record of the tenant, newest first, read directly.
async fn all_jobs(e: &Env) -> Vec<Job> {
    let mut v: Vec<Job> = e
        .store
        .list(TENANT, keys::JOBS)
        .await
        .unwrap()
        .into_iter()
        .map(|en| serde_json::from_slice(&en.value).unwrap())
        .collect();
    v.reverse();
    v
}

/// The filter written out independently of the library's.
fn expected(all: &[Job], f: &JobFilter) -> Vec<String> {
    all.iter()
        .filter(|j| f.status.is_none_or(|s| s == j.status))
        .filter(|j| f.kind.is_none_or(|k| k == j.kind))
        .filter(|j| f.group.as_ref().is_none_or(|g| j.group.as_ref() == Some(g)))
        .filter(|j| {
            f.node_id
                .as_ref()
                .is_none_or(|n| j.node_id.as_ref() == Some(n) || j.agent.as_ref() == Some(n))
        })
        .map(|j| j.job_id.clone())
        .collect()
}

/// Follows cursors with pages of `limit`, returning the ids in order.
async fn paged(e: &Env, f: &JobFilter, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let Page { jobs, next_cursor } = e
            .jobs
            .list_page(TENANT, f, cursor.as_deref(), limit)
            .await
            .unwrap();
        assert!(jobs.len() <= limit);
        ids.extend(jobs.into_iter().map(|j| j.job_id));
        match next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
    panic!("pagination did not end");
}

/// The index entries that point at `job_id`, as stored.
async fn stored_index_paths(e: &Env, job_id: &str) -> BTreeSet<String> {
    entries(&e.store, TENANT, keys::JOB_INDEX)
        .await
        .into_iter()
        .map(|en| en.key.path().to_string())
        .filter(|p| keys::job_index_target(p) == Some(job_id))
        .collect()
}

/// The job's stored index entries are exactly those of its record, and a status listing
/// finds it.
async fn assert_indexed(e: &Env, job_id: &str, status: JobStatus) {
    let job = e.jobs.get(TENANT, job_id).await.unwrap();
    assert_eq!(job.status, status, "{job:?}");
    let want: BTreeSet<String> = index_keys(&job).into_iter().collect();
    assert_eq!(stored_index_paths(e, job_id).await, want, "{job:?}");
    let by_status = job_filter(Some(status), None);
    let listed = e.jobs.list(TENANT, &by_status).await.unwrap();
    assert!(listed.iter().any(|j| j.job_id == job_id), "{status:?}");
}

/// Deletes a job as retention will: its record and its index entries, in one transaction.
async fn delete_job(e: &Env, job: &Job) {
    let mut txn = Txn::new().delete(
        Key::new(TENANT, keys::job(&job.job_id)).unwrap(),
        Expect::Any,
    );
    for p in index_keys(job) {
        txn = txn.delete(Key::new(TENANT, p).unwrap(), Expect::Any);
    }
    e.store.commit(txn).await.unwrap();
}

#[tokio::test]
async fn a_page_reads_about_limit_objects_whatever_the_history() {
    let (e, counts) = counting_env().await;
    let jobs = bulk_mixed(&e, 3000, 3).await;
    for j in jobs.iter().step_by(10).take(100) {
        e.jobs.cancel(TENANT, &j.job_id, T0 + 10_000).await.unwrap();
    }
    let limit = 20;
    let filters = [
        JobFilter::default(),
        job_filter(None, Some(JobKind::User)),
        job_filter(None, Some(JobKind::Reconciler)),
        job_filter(Some(JobStatus::Cancelled), None),
        job_filter(Some(JobStatus::Queued), Some(JobKind::User)),
    ];
    for f in &filters {
        let mut cursor = None;
        for page in 0..3 {
            counts.reset();
            let p = e
                .jobs
                .list_page(TENANT, f, cursor.as_deref(), limit)
                .await
                .unwrap();
            assert_eq!(p.jobs.len(), limit, "{f:?} page {page}");
            // limit + 1 entries of each index read (one per kind without a kind), and as many
            // records when indexes serve the filter.
            let bound = (JobKind::ALL.len() as u64 + 1) * (limit as u64 + 1) + 2;
            assert!(
                counts.objects() <= bound,
                "{f:?} page {page}: {} objects read for {limit} jobs of 3000",
                counts.objects()
            );
            cursor = p.next_cursor;
            assert!(cursor.is_some());
        }
    }
    // The users' cancelled jobs are one in 15: their index holds exactly them.
    let rare = job_filter(Some(JobStatus::Cancelled), Some(JobKind::User));
    counts.reset();
    let p = e.jobs.list_page(TENANT, &rare, None, limit).await.unwrap();
    assert_eq!(p.jobs.len(), limit);
    assert!(counts.objects() <= 2 * (limit as u64 + 1) + 2);
    let all = all_jobs(&e).await;
    assert_eq!(paged(&e, &rare, 7).await, expected(&all, &rare));
}

#[tokio::test]
async fn a_combined_filter_that_rarely_holds_reads_a_bounded_page_and_goes_on() {
    let (e, counts) = counting_env().await;
    let pinned = SubmitJob {
        node_id: Some("a1".into()),
        ..shell("true")
    };
    let old = bulk_of(&e, 2, &pinned, |_| JobKind::User).await;
    for j in &old {
        e.jobs.cancel(TENANT, &j.job_id, T0 + 1).await.unwrap();
    }
    bulk_of(&e, MAX_SCAN + 100, &pinned, |_| JobKind::User).await;
    let f = JobFilter {
        node_id: Some("a1".into()),
        status: Some(JobStatus::Cancelled),
        kind: Some(JobKind::User),
        ..Default::default()
    };
    counts.reset();
    let first = e.jobs.list_page(TENANT, &f, None, 10).await.unwrap();
    assert!(first.jobs.is_empty(), "{:?}", first.jobs);
    assert!(
        // MAX_SCAN entries and their records, and the rest of the last index page read.
        counts.objects() <= 2 * MAX_SCAN as u64 + 11,
        "{} objects read",
        counts.objects()
    );
    let cursor = first
        .next_cursor
        .expect("a bounded page says where to go on");
    let second = e
        .jobs
        .list_page(TENANT, &f, Some(&cursor), 10)
        .await
        .unwrap();
    let mut want: Vec<String> = old.iter().map(|j| j.job_id.clone()).collect();
    want.reverse();
    assert_eq!(
        second
            .jobs
            .iter()
            .map(|j| j.job_id.clone())
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(second.next_cursor, None);
}

#[tokio::test]
async fn pages_return_every_job_once_while_jobs_are_created_and_deleted() {
    let e = env().await;
    let start = bulk_mixed(&e, 300, 4).await;
    for f in [JobFilter::default(), job_filter(None, Some(JobKind::User))] {
        let before: Vec<Job> = all_jobs(&e)
            .await
            .into_iter()
            .filter(|j| expected(std::slice::from_ref(j), &f).len() == 1)
            .collect();
        let mut seen: Vec<String> = Vec::new();
        let mut deleted: BTreeSet<String> = BTreeSet::new();
        let mut cursor: Option<String> = None;
        let mut round = 0usize;
        loop {
            let page = e
                .jobs
                .list_page(TENANT, &f, cursor.as_deref(), 9)
                .await
                .unwrap();
            seen.extend(page.jobs.iter().map(|j| j.job_id.clone()));
            // Meanwhile: new jobs arrive, and retention deletes old ones, seen or not.
            bulk(&e, 3, |_| JobKind::User).await;
            for j in before
                .iter()
                .skip(round * 7 % before.len())
                .step_by(53)
                .take(2)
            {
                if deleted.insert(j.job_id.clone()) {
                    delete_job(&e, j).await;
                }
            }
            round += 1;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a job was listed twice");
        for j in &before {
            assert!(
                seen.contains(&j.job_id) || deleted.contains(&j.job_id),
                "job {} was never listed",
                j.job_id
            );
        }
        // Newest first throughout.
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(sorted, seen);
    }
    assert_eq!(start.len(), 300);
}

#[tokio::test]
async fn every_filter_alone_and_combined_agrees_with_a_full_scan() {
    let e = env().await;
    let epoch = e.store.next_epoch().await.unwrap();
    for n in ["a1", "a2"] {
        let req = RegisterAgent {
            slots: Some(2),
            labels: BTreeMap::from([("role".to_string(), "web".to_string())]),
            ..Default::default()
        };
        e.jobs.register(TENANT, n, &req, T0).await.unwrap();
    }
    let pinned = |n: &str| SubmitJob {
        node_id: Some(n.into()),
        ..shell("true")
    };
    let mut ids = Vec::new();
    for i in 0..4 {
        for n in ["a1", "a2"] {
            let (j, _) = e
                .jobs
                .submit(TENANT, "alice", pinned(n), T0 + i)
                .await
                .unwrap();
            ids.push(j.job_id);
        }
        let (j, _) = e
            .jobs
            .submit(TENANT, "alice", shell("true"), T0 + i)
            .await
            .unwrap();
        ids.push(j.job_id);
        let (j, txn) = e
            .jobs
            .prepare_submit_as(
                TENANT,
                "reconciler",
                &pinned("a1"),
                T0 + i,
                JobKind::Reconciler,
            )
            .unwrap();
        e.store.commit(txn).await.unwrap();
        ids.push(j.job_id);
    }
    let fan = SubmitJob {
        selector: flux_core::selector::Selector::labels([("role", "web")]),
        fan_out: true,
        ..shell("true")
    };
    let targets = e.jobs.fan_out_targets(TENANT, &fan.selector).await.unwrap();
    let (group, _) = e
        .jobs
        .submit_fan_out(TENANT, "alice", &fan, targets, T0 + 5)
        .await
        .unwrap();
    // Some assigned (2 slots each), one running, one finished, two cancelled.
    schedule_pass(&e.jobs, epoch, T0 + 6).await;
    let mut assigned = jobs_with_status(&e.jobs, TENANT, JobStatus::Assigned).await;
    assert!(assigned.len() >= 2, "{assigned:?}");
    let a = assigned.pop().unwrap();
    let att = a.current_attempt.clone().unwrap();
    let node = a.agent.clone().unwrap();
    e.jobs.start(TENANT, &node, &att, T0 + 7).await.unwrap();
    let b = assigned.pop().unwrap();
    let (batt, bnode) = (b.current_attempt.clone().unwrap(), b.agent.clone().unwrap());
    e.jobs.start(TENANT, &bnode, &batt, T0 + 7).await.unwrap();
    finish_ok(&e.jobs, &bnode, &batt, exited(0), T0 + 8).await;
    for id in ids.iter().rev().take(2) {
        e.jobs.cancel(TENANT, id, T0 + 9).await.unwrap();
    }

    let all = all_jobs(&e).await;
    let statuses = [
        None,
        Some(JobStatus::Queued),
        Some(JobStatus::Assigned),
        Some(JobStatus::Running),
        Some(JobStatus::Succeeded),
        Some(JobStatus::Cancelled),
    ];
    let mut nonempty = 0;
    for status in statuses {
        for node_id in [None, Some("a1"), Some("a2")] {
            for group in [None, Some(group.as_str())] {
                for kind in [None, Some(JobKind::User), Some(JobKind::Reconciler)] {
                    let f = JobFilter {
                        status,
                        node_id: node_id.map(Into::into),
                        group: group.map(Into::into),
                        kind,
                        limit: None,
                    };
                    let want = expected(&all, &f);
                    nonempty += usize::from(!want.is_empty());
                    assert_eq!(paged(&e, &f, 1000).await, want, "{f:?}");
                    assert_eq!(paged(&e, &f, 2).await, want, "{f:?} in pages of 2");
                }
            }
        }
    }
    assert!(
        nonempty > 40,
        "the data exercises too few filters: {nonempty}"
    );
}

#[tokio::test]
async fn the_status_index_follows_every_transition() {
    let (e, epoch) = env_with_agent("node-a").await;
    let c = cfg();

    // submit, assign, start, finish.
    let (job, _) = e
        .jobs
        .submit(TENANT, "alice", shell("true"), T0)
        .await
        .unwrap();
    assert_indexed(&e, &job.job_id, JobStatus::Queued).await;
    e.jobs.cancel(TENANT, &job.job_id, T0 + 1).await.unwrap();
    assert_indexed(&e, &job.job_id, JobStatus::Cancelled).await;

    let (job, att) = submit_and_assign(&e, epoch, shell("true"), "node-a", T0 + 2).await;
    assert_indexed(&e, &job.job_id, JobStatus::Assigned).await;
    e.jobs.start(TENANT, "node-a", &att, T0 + 3).await.unwrap();
    assert_indexed(&e, &job.job_id, JobStatus::Running).await;
    finish_ok(&e.jobs, "node-a", &att, exited(0), T0 + 4).await;
    assert_indexed(&e, &job.job_id, JobStatus::Succeeded).await;

    // failed, timed out.
    let (job, att) = submit_and_assign(&e, epoch, shell("false"), "node-a", T0 + 5).await;
    finish_ok(&e.jobs, "node-a", &att, exited(1), T0 + 6).await;
    assert_indexed(&e, &job.job_id, JobStatus::Failed).await;
    let (job, att) = submit_and_assign(&e, epoch, shell("sleep 9"), "node-a", T0 + 7).await;
    let timed_out = ended_by(Outcome::TimedOut, Some(9));
    finish_ok(&e.jobs, "node-a", &att, timed_out, T0 + 8).await;
    assert_indexed(&e, &job.job_id, JobStatus::TimedOut).await;

    // cancel while running: still running until the agent reports.
    let (job, att) = submit_and_start(&e, epoch, shell("sleep 9"), "node-a", T0 + 9, T0 + 10).await;
    e.jobs.cancel(TENANT, &job.job_id, T0 + 11).await.unwrap();
    assert_indexed(&e, &job.job_id, JobStatus::Running).await;
    let cancelled = ended_by(Outcome::Cancelled, Some(15));
    finish_ok(&e.jobs, "node-a", &att, cancelled, T0 + 12).await;
    assert_indexed(&e, &job.job_id, JobStatus::Cancelled).await;

    // requeue on a dead agent: back to queued, no longer listed under node-a, then assigned
    // to node-b.
    let (job, _) = submit_and_start(&e, epoch, shell("sleep 9"), "node-a", T0 + 13, T0 + 14).await;
    let t_dead = T0 + 14 + ms(c.dead_after);
    let r = e.jobs.sweep_tenant(TENANT, epoch, t_dead, 0).await.unwrap();
    assert_eq!(r.requeued, 1, "{r:?}");
    assert_indexed(&e, &job.job_id, JobStatus::Queued).await;
    let on_a = JobFilter {
        node_id: Some("node-a".into()),
        ..Default::default()
    };
    assert!(
        !e.jobs
            .list(TENANT, &on_a)
            .await
            .unwrap()
            .iter()
            .any(|j| j.job_id == job.job_id)
    );
    register(&e.jobs, TENANT, "node-b", t_dead).await;
    schedule_pass(&e.jobs, epoch, t_dead + 1).await;
    assert_indexed(&e, &job.job_id, JobStatus::Assigned).await;
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_eq!(j.agent.as_deref(), Some("node-b"));
    // A start deadline missed: requeued again.
    let late = t_dead + 2 + ms(c.start_timeout);
    heartbeat(&e.jobs, TENANT, "node-b", &[], late).await;
    e.jobs.sweep_tenant(TENANT, epoch, late, 0).await.unwrap();
    let j = e.jobs.get(TENANT, &job.job_id).await.unwrap();
    assert_ne!(j.status, JobStatus::Assigned, "{j:?}");
    assert_indexed(&e, &job.job_id, j.status).await;
}

#[tokio::test]
async fn the_migration_indexes_jobs_stored_before_the_indexes() {
    let e = env().await;
    let jobs = bulk_mixed(&e, 60, 5).await;
    for j in jobs.iter().step_by(4) {
        e.jobs.cancel(TENANT, &j.job_id, T0 + 100).await.unwrap();
    }
    // As a store written before the indexes: no entries, and user jobs without a kind.
    let mut txn = Txn::new();
    for en in e.store.list(TENANT, keys::JOB_INDEX).await.unwrap() {
        txn = txn.delete(en.key, Expect::Any);
    }
    e.store.commit(txn).await.unwrap();
    for en in e.store.list(TENANT, keys::JOBS).await.unwrap() {
        let mut v: serde_json::Value = serde_json::from_slice(&en.value).unwrap();
        if v["kind"] == "user" {
            v.as_object_mut().unwrap().remove("kind");
            e.store
                .put(en.key, serde_json::to_vec(&v).unwrap(), Expect::Any)
                .await
                .unwrap();
        }
    }
    let user = job_filter(None, Some(JobKind::User));
    assert!(e.jobs.list(TENANT, &user).await.unwrap().is_empty());
    // The records themselves still list.
    assert_eq!(listed_jobs(&e.jobs, TENANT).await.len(), 60);

    let old = e.store.next_epoch().await.unwrap();
    let epoch = e.store.next_epoch().await.unwrap();
    let err = e
        .jobs
        .backfill_index(&mut IndexBackfill::default(), TENANT, old, 7)
        .await
        .unwrap_err();
    assert!(is_fenced(&err, old, epoch), "{err:?}");
    assert!(entries(&e.store, TENANT, keys::JOB_INDEX).await.is_empty());

    let mut progress = IndexBackfill::default();
    let mut batches = 0;
    while !e
        .jobs
        .backfill_index(&mut progress, TENANT, epoch, 7)
        .await
        .unwrap()
    {
        batches += 1;
        assert!(batches < 20, "the migration does not end");
    }
    assert_eq!(batches, 60 / 7);
    assert!(progress.is_done(TENANT));
    let all = all_jobs(&e).await;
    for f in [
        user.clone(),
        job_filter(None, Some(JobKind::Reconciler)),
        job_filter(Some(JobStatus::Cancelled), None),
        job_filter(Some(JobStatus::Queued), Some(JobKind::User)),
    ] {
        let want = expected(&all, &f);
        assert!(!want.is_empty(), "{f:?}");
        assert_eq!(paged(&e, &f, 5).await, want, "{f:?}");
    }
    assert_eq!(e.jobs.list(TENANT, &user).await.unwrap().len(), 48);
    for j in &all {
        let want: BTreeSet<String> = index_keys(j).into_iter().collect();
        assert_eq!(stored_index_paths(&e, &j.job_id).await, want);
    }
    // Run again over a store that needs nothing (the mark lost, as after restoring an older
    // backup): no object is written but the mark.
    e.store
        .delete(
            Key::new(TENANT, keys::JOB_INDEX_BUILT).unwrap(),
            Expect::Any,
        )
        .await
        .unwrap();
    let unmarked = |s: Vec<(String, Version, Vec<u8>)>| -> Vec<_> {
        s.into_iter()
            .filter(|(p, ..)| p != keys::JOB_INDEX_BUILT)
            .collect()
    };
    let before = unmarked(snapshot(&e.store, TENANT).await);
    let mut again = IndexBackfill::default();
    while !e
        .jobs
        .backfill_index(&mut again, TENANT, epoch, 7)
        .await
        .unwrap()
    {}
    assert_eq!(unmarked(snapshot(&e.store, TENANT).await), before);
    // A later term sees the tenant marked and reads no job.
    let (counted, counts) = Counting::wrap(e.store.clone());
    let later = Jobs::new(counted, cfg());
    assert!(
        later
            .backfill_index(&mut IndexBackfill::default(), TENANT, epoch, 7)
            .await
            .unwrap()
    );
    assert_eq!(counts.listed(), 0);
}

#[tokio::test]
async fn a_follow_reads_each_output_chunk_once() {
    let (e, counts) = counting_env().await;
    let att = "j-0190000000007000800000000000abcd.1";
    let n = 300u64;
    let mut next = 0u64;
    let mut got = Vec::new();
    counts.reset();
    for seq in 0..n {
        let chunk = StoredChunk {
            seq,
            stream: Stream::Stdout,
            data: format!("line {seq}\n"),
        };
        e.store
            .put(
                Key::new(TENANT, keys::output_chunk(att, seq)).unwrap(),
                serde_json::to_vec(&chunk).unwrap(),
                Expect::Any,
            )
            .await
            .unwrap();
        // The follower wakes after each chunk and asks for what it has not seen.
        for c in e.jobs.output(TENANT, att, next).await.unwrap() {
            next = c.seq + 1;
            got.push(c.seq);
        }
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert_eq!(
        counts.listed(),
        n,
        "a follow of {n} chunks read {} chunks",
        counts.listed()
    );
    // Reading from the middle reads only the rest.
    counts.reset();
    let tail = e.jobs.output(TENANT, att, n - 10).await.unwrap();
    assert_eq!(tail.len(), 10);
    assert_eq!(counts.listed(), 10);
}
