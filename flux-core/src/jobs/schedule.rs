//! The leader's scheduling driver: brings the tenant's in-memory view ([`super::index`]) up to
//! date by reading only the keys that changed, asks [`super::placement::plan`] where every job
//! of the pass goes, loads the planned jobs (and their secret values) side by side, and commits
//! all the assignments at once with [`crate::store::Store::commit_many`].
//!
//! Each assignment is its own fenced transaction with CAS on every object it touches (the job,
//! its queue entry, the agent record; the attempt and inbox entry must be absent), so one that
//! conflicts fails alone: its job stays queued for the next pass, and the keys it touched are
//! read again before that pass.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;

use super::index::{Indexes, TenantIndex};
use super::placement::{Budget, Slot};
use super::{Jobs, MAX_SCAN_PER_PASS, Result, enc, put_job};
use crate::keys;
use crate::model::{Attempt, AttemptState, Job, JobStatus, Millis, Pending, Task, attempt_id};
use crate::store::{Epoch, Expect, Key, StoreError, Txn, Version};

/// Reads of one pass in flight at once (keys that changed, planned jobs).
const READS_AT_ONCE: usize = 64;

/// What one scheduling pass over a tenant did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    pub assigned: usize,
    /// Assignments that lost a race (their jobs stay queued): the caller runs another pass soon.
    pub conflicts: usize,
}

/// A planned job as loaded for its assignment.
struct Loaded {
    key: Key,
    job: Job,
    version: Version,
    secret_env: BTreeMap<String, String>,
}

/// What became of a planned job when it was loaded.
enum Load {
    Ready(Box<Loaded>),
    /// Nothing to assign: its queue entry is removed (`None`: the job is gone or no longer
    /// queued) or rewritten to describe its job (`Some`: the new entry), best effort.
    Stale(Option<Vec<u8>>),
}

/// One write of the pass's batch, and what to record in the view when it lands.
enum Planned {
    Assign {
        job_id: String,
        agent: String,
        attempt_id: String,
    },
    Cleanup {
        job_id: String,
        rewrite: Option<Vec<u8>>,
    },
}

/// The jobs one pass assigns, as planned and loaded, and the queue entries it cleans up.
struct PassPlan {
    /// (job, agent) of every planned assignment, in plan order.
    planned: Vec<(String, String)>,
    loaded: HashMap<String, Loaded>,
    stale: Vec<(String, Option<Vec<u8>>)>,
}

/// What a pass's committed batch did, and the paths to read again before the next pass.
struct Landed {
    report: ScheduleReport,
    reread: Vec<String>,
    /// The first failure other than a conflict or a fence, if any.
    failure: Option<StoreError>,
}

/// Records in the view what each of the pass's writes did once committed (a fence ends the pass).
fn record_results(
    ix: &mut TenantIndex,
    writes: Vec<Planned>,
    results: Vec<crate::store::Result<Version>>,
) -> Result<Landed> {
    let mut report = ScheduleReport::default();
    let mut reread: Vec<String> = Vec::new();
    let mut failure: Option<StoreError> = None;
    for (w, r) in writes.into_iter().zip(results) {
        match (w, r) {
            (
                Planned::Assign {
                    job_id,
                    agent,
                    attempt_id,
                },
                r,
            ) => match r {
                Ok(rev) => {
                    report.assigned += 1;
                    ix.deleted_at(&keys::pending(&job_id), rev);
                    ix.apply(&keys::inbox_entry(&agent, &attempt_id), Some((rev, &[])));
                }
                Err(StoreError::Conflict { .. }) => {
                    report.conflicts += 1;
                    reread.push(keys::pending(&job_id));
                    reread.push(keys::agent(&agent));
                    reread.push(keys::inbox_entry(&agent, &attempt_id));
                }
                Err(e @ StoreError::Fenced { .. }) => return Err(e.into()),
                Err(e) => {
                    reread.push(keys::pending(&job_id));
                    failure.get_or_insert(e);
                }
            },
            // Cleanups are best effort: a failure leaves the entry for the next pass.
            (Planned::Cleanup { job_id, rewrite }, Ok(rev)) => {
                let path = keys::pending(&job_id);
                match rewrite {
                    None => ix.deleted_at(&path, rev),
                    Some(bytes) => ix.apply(&path, Some((rev, &bytes))),
                }
            }
            (Planned::Cleanup { job_id, .. }, Err(_)) => reread.push(keys::pending(&job_id)),
        }
    }
    Ok(Landed {
        report,
        reread,
        failure,
    })
}

impl Jobs {
    /// Views for the scheduler's passes during one term, fed by this store's change notices.
    pub fn scheduler_indexes(&self) -> Indexes {
        Indexes::new(self.store.subscribe())
    }

    /// Assigns a tenant's queued jobs to online agents with free slots: highest priority
    /// first, then oldest. At most [`MAX_SCAN_PER_PASS`] jobs are assigned per pass, so a tenant
    /// with a huge queue costs the leader a bounded amount of work per pass and every other
    /// tenant still gets its turn; with `max_running`, no more than that many of the tenant's
    /// attempts are assigned or running at once. Returns how many were assigned. Reads the
    /// tenant's agents, queue and inboxes afresh; the leader's loop keeps its views and uses
    /// [`Jobs::schedule_indexed`].
    pub async fn schedule_tenant(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        max_running: Option<u64>,
    ) -> Result<usize> {
        let mut fresh = Indexes::detached();
        Ok(self
            .schedule_indexed(&mut fresh, tenant, epoch, now, max_running)
            .await?
            .assigned)
    }

    /// One scheduling pass over `tenant` from the leader's views (see [`Jobs::schedule_tenant`]
    /// for what it assigns). The tenant's view is built on its first pass and after a resync;
    /// otherwise only the keys named by change notices since the last pass are read.
    pub async fn schedule_indexed(
        &self,
        indexes: &mut Indexes,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        max_running: Option<u64>,
    ) -> Result<ScheduleReport> {
        let ix = self.fresh_index(indexes, tenant).await?;
        if ix.queue_len() == 0 || !ix.fleet().any_free() {
            return Ok(ScheduleReport::default());
        }
        let budget = Budget {
            in_flight: ix.fleet().in_flight(),
            max_running,
            max_assign: MAX_SCAN_PER_PASS,
        };
        let plan = self.plan_loaded(ix, tenant, budget).await?;
        let (txns, writes) = self.pass_writes(ix, tenant, epoch, now, plan)?;
        if txns.is_empty() {
            return Ok(ScheduleReport::default());
        }

        let results = self.store.commit_many(txns).await;
        let landed = record_results(ix, writes, results)?;
        for path in landed.reread {
            indexes.mark(tenant, &path);
        }
        match landed.failure {
            Some(e) => Err(e.into()),
            None => Ok(landed.report),
        }
    }

    /// Plans the pass and loads its jobs, replanning without the stale ones until all are ready.
    async fn plan_loaded(
        &self,
        ix: &mut TenantIndex,
        tenant: &str,
        budget: Budget,
    ) -> Result<PassPlan> {
        // Plan, load what was planned, and plan again without the jobs that turned out to have
        // nothing to assign, until every planned job is ready.
        let mut loaded: HashMap<String, Loaded> = HashMap::new();
        let mut stale: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let mut skip: HashSet<String> = HashSet::new();
        let planned = loop {
            let planned = ix.plan(budget, &skip);
            let new: Vec<(String, Pending)> = planned
                .iter()
                .filter(|(j, _)| !loaded.contains_key(j))
                .filter_map(|(j, _)| Some((j.clone(), ix.queued(j)?.meta.clone())))
                .collect();
            if new.is_empty() {
                break planned;
            }
            ix.unplan(&planned);
            // (The futures are made by a plain iterator, so that the pass's future stays
            // `Send`.)
            let reads: Vec<_> = new
                .into_iter()
                .map(|(j, meta)| async move {
                    let r = self.load_planned(tenant, &j, &meta).await;
                    (j, r)
                })
                .collect();
            let results: Vec<(String, Result<Load>)> = futures::stream::iter(reads)
                .buffer_unordered(READS_AT_ONCE)
                .collect()
                .await;
            for (j, r) in results {
                match r? {
                    Load::Ready(l) => {
                        loaded.insert(j, *l);
                    }
                    Load::Stale(rewrite) => {
                        skip.insert(j.clone());
                        stale.push((j, rewrite));
                    }
                }
            }
        };
        ix.unplan(&planned);
        Ok(PassPlan {
            planned,
            loaded,
            stale,
        })
    }

    /// The pass's batch: a fenced assignment per planned job and a fenced cleanup per stale entry.
    fn pass_writes(
        &self,
        ix: &TenantIndex,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        plan: PassPlan,
    ) -> Result<(Vec<Txn>, Vec<Planned>)> {
        let PassPlan {
            planned,
            mut loaded,
            stale,
        } = plan;
        let mut txns = Vec::with_capacity(planned.len() + stale.len());
        let mut writes = Vec::with_capacity(planned.len() + stale.len());
        for (job_id, agent) in planned {
            let (Some(l), Some(slot), Some(q)) = (
                loaded.remove(&job_id),
                ix.fleet().agent(&agent).cloned(),
                ix.queued(&job_id),
            ) else {
                continue;
            };
            let (txn, attempt_id) =
                self.assignment(tenant, epoch, now, l, &agent, &slot, q.version)?;
            txns.push(txn);
            writes.push(Planned::Assign {
                job_id,
                agent,
                attempt_id,
            });
        }
        for (job_id, rewrite) in stale {
            let Some(q) = ix.queued(&job_id) else {
                continue;
            };
            let pk = Key::new(tenant, keys::pending(&job_id))?;
            let txn = match &rewrite {
                None => Txn::new().delete(pk, Expect::Version(q.version)),
                Some(bytes) => Txn::new().put(pk, bytes.clone(), Expect::Version(q.version)),
            };
            txns.push(txn.fenced(epoch));
            writes.push(Planned::Cleanup { job_id, rewrite });
        }
        Ok((txns, writes))
    }

    /// The tenant's view with every change noticed so far read into it (built from the store
    /// when the term has none yet, or after a resync).
    pub async fn fresh_index<'a>(
        &self,
        indexes: &'a mut Indexes,
        tenant: &str,
    ) -> Result<&'a mut TenantIndex> {
        indexes.take_notices();
        let dirty = indexes.take_dirty(tenant);
        match indexes.get_mut(tenant) {
            Some(ix) => self.refresh(tenant, ix, dirty).await?,
            None => {
                let ix = self.build_index(tenant).await?;
                indexes.insert(tenant, ix);
            }
        }
        Ok(indexes.get_mut(tenant).expect("the view was just built"))
    }

    async fn build_index(&self, tenant: &str) -> Result<TenantIndex> {
        let (agents, pending, inbox) = futures::try_join!(
            self.store.list(tenant, keys::AGENTS),
            self.store.list(tenant, keys::PENDING),
            self.store.list(tenant, keys::INBOX),
        )?;
        let all = agents.iter().chain(&pending).chain(&inbox);
        Ok(TenantIndex::build(
            all.map(|e| (e.key.path(), e.version, e.value.as_slice())),
        ))
    }

    /// Reads the keys that changed (`paths`) into the tenant's view.
    async fn refresh(&self, tenant: &str, ix: &mut TenantIndex, paths: Vec<String>) -> Result<()> {
        let keys = paths
            .into_iter()
            .map(|p| Key::new(tenant, p))
            .collect::<Result<Vec<Key>, crate::store::StoreError>>()?;
        let reads: Vec<_> = keys
            .into_iter()
            .map(|k| async move {
                let v = self.store.get(&k).await;
                (k, v)
            })
            .collect();
        let read: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(READS_AT_ONCE)
            .collect()
            .await;
        for (k, v) in read {
            let v = v?;
            ix.apply(
                k.path(),
                v.as_ref().map(|v| (v.version, v.value.as_slice())),
            );
        }
        Ok(())
    }

    /// The queued job planned under queue entry `meta`, with its secret values, or what to do
    /// with the entry when there is nothing to assign (its job is gone or no longer queued, or
    /// the entry does not describe its job).
    async fn load_planned(&self, tenant: &str, job_id: &str, meta: &Pending) -> Result<Load> {
        let jk = Key::new(tenant, keys::job(job_id))?;
        let Some((job, version)) = self.load::<Job>(&jk).await? else {
            return Ok(Load::Stale(None));
        };
        if job.status != JobStatus::Queued {
            return Ok(Load::Stale(None));
        }
        if Pending::of(&job) != *meta {
            // An entry from before entries described their job: describe it now, so the next
            // pass can pass it over unread.
            return Ok(Load::Stale(Some(enc(&Pending::of(&job)))));
        }
        let secret_env = if job.secret_env.is_empty() {
            BTreeMap::new()
        } else {
            self.load::<BTreeMap<String, String>>(&Key::new(tenant, keys::secrets(job_id))?)
                .await?
                .map(|(s, _)| s)
                .unwrap_or_default()
        };
        Ok(Load::Ready(Box::new(Loaded {
            key: jk,
            job,
            version,
            secret_env,
        })))
    }

    /// The fenced transaction that assigns a loaded job to `agent`: the job (CAS on its
    /// version), a new attempt, the agent's inbox entry (the task, with the secret values), the
    /// queue entry removed (CAS on its version) and the agent record checked at the version the
    /// choice was made on. Returns it with the new attempt's id.
    #[allow(clippy::too_many_arguments)]
    fn assignment(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        l: Loaded,
        agent: &str,
        slot: &Slot,
        queued_version: Version,
    ) -> Result<(Txn, String)> {
        let Loaded {
            key: jk,
            mut job,
            version: jv,
            secret_env,
        } = l;
        let number = job.attempts + 1;
        let att_id = attempt_id(&job.job_id, number);
        let attempt = Attempt {
            attempt_id: att_id.clone(),
            job_id: job.job_id.clone(),
            number,
            agent: agent.to_string(),
            state: AttemptState::Assigned,
            assigned_at: now,
            start_deadline: now + self.cfg.start_timeout.as_millis() as u64,
            started_at: None,
            finished_at: None,
            result: None,
            abandoned_reason: None,
            output_bytes: 0,
            output_dropped: 0,
            output_seq: 0,
            output_stored_bytes: 0,
            registration: slot.registration.clone(),
        };
        let task = Task {
            attempt_id: att_id.clone(),
            job_id: job.job_id.clone(),
            command: job.command.clone(),
            env: job.env.clone(),
            secret_env,
            workdir: job.workdir.clone(),
            timeout_secs: job.timeout_secs,
            cancel: false,
            revision: 0,
            registration: slot.registration.clone(),
        };
        let old = job.clone();
        job.status = JobStatus::Assigned;
        job.attempts = number;
        job.current_attempt = Some(att_id.clone());
        job.agent = Some(agent.to_string());
        job.updated_at = now;
        debug_assert_eq!(jk.path(), keys::job(&job.job_id));
        let txn = put_job(
            Txn::new().fenced(epoch),
            tenant,
            Some(&old),
            &job,
            Expect::Version(jv),
        )?
        .put(
            Key::new(tenant, keys::attempt(&job.job_id, number))?,
            enc(&attempt),
            Expect::Absent,
        )
        .put(
            Key::new(tenant, keys::inbox_entry(agent, &att_id))?,
            enc(&task),
            Expect::Absent,
        )
        .delete(
            Key::new(tenant, keys::pending(&job.job_id))?,
            Expect::Version(queued_version),
        )
        .check(
            Key::new(tenant, keys::agent(agent))?,
            Expect::Version(slot.version),
        );
        Ok((txn, att_id))
    }
}
