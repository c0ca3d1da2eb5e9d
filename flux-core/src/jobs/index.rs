//! The scheduler's in-memory view of each tenant: its agents (state, labels, free slots), how
//! many inbox entries each agent holds, and its queue by priority. The leader keeps one
//! [`Indexes`] per term and feeds it the store's change notices, so that a scheduling pass
//! reads only the keys that changed since the last one instead of every agent, queue entry and
//! inbox entry of the tenant.
//!
//! The view is a hint, never the authority: every assignment made from it is a CAS on the job,
//! the queue entry and the agent record, fenced by the leader's epoch, so a stale view costs a
//! conflict (the job stays queued) and a re-read of the keys involved, not a wrong assignment.
//!
//! Guarantees:
//! - applying the store's changes one by one ([`TenantIndex::apply`]) gives the same view as
//!   building it from scratch from the store's contents afterwards (unit tested below);
//! - inbox entries are counted by key: their values (the tasks, with secret values) are never
//!   decoded;
//! - a lagged subscription or a resync notice drops every tenant's view; it is rebuilt from the
//!   store on the tenant's next pass. A new term starts from an empty [`Indexes`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::broadcast;

use super::placement::{self, Budget, Fleet, Slot};
use super::sweep_memo::SweepMemo;
use crate::keys;
use crate::model::{Agent, Pending};
use crate::store::{Change, Version};

/// One queued job as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub meta: Pending,
    /// Version of its queue entry.
    pub version: Version,
}

/// What the scheduler knows of one tenant. Plain data: fed with what the store holds at a path
/// ([`TenantIndex::apply`]), it decides nothing and does no I/O.
#[derive(Clone, Debug, Default)]
pub struct TenantIndex {
    fleet: Fleet,
    /// Every inbox entry by path, with its version.
    inbox: HashMap<String, Version>,
    /// The queue in serving order: highest priority first, then oldest (job ids are
    /// time-ordered).
    queue: BTreeMap<(Reverse<i32>, String), Queued>,
    /// Priority of each queued job, to find its place in `queue`.
    priority: HashMap<String, i32>,
    /// Paths this leader deleted itself, with the revision of the delete: the notice of that
    /// revision needs no read.
    deleted: HashMap<String, Version>,
    /// Grows with every agent record the view reads (what the sweep's memo is made on).
    agents_revision: u64,
    /// What the last full judging of the fleet left to the liveness sweeps after it.
    sweep: SweepMemo,
}

/// Whether the scheduler's view holds objects at this path.
pub fn is_indexed(path: &str) -> bool {
    path.starts_with(keys::PENDING)
        || path.starts_with(keys::INBOX)
        || path.starts_with(keys::AGENTS)
}

impl TenantIndex {
    /// The view of a tenant whose objects under `pending/`, `inbox/` and `agents/` are
    /// `entries` (path, version, value).
    pub fn build<'a>(entries: impl IntoIterator<Item = (&'a str, Version, &'a [u8])>) -> Self {
        let mut ix = TenantIndex::default();
        for (path, version, value) in entries {
            ix.apply(path, Some((version, value)));
        }
        ix
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn fleet_mut(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    /// The fleet, its revision (grows with every agent record the view reads) and the liveness
    /// sweep's memo of it.
    pub fn sweep_view(&mut self) -> (&Fleet, u64, &mut SweepMemo) {
        (&self.fleet, self.agents_revision, &mut self.sweep)
    }

    /// The queue in serving order: job id and what its entry says.
    pub fn queue(&self) -> impl Iterator<Item = (&str, &Queued)> {
        self.queue.iter().map(|((_, id), q)| (id.as_str(), q))
    }

    pub fn queued(&self, job_id: &str) -> Option<&Queued> {
        let p = *self.priority.get(job_id)?;
        self.queue.get(&(Reverse(p), job_id.to_string()))
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// The version the view holds for `path`, if it holds an object there.
    pub fn version_of(&self, path: &str) -> Option<Version> {
        if let Some(id) = path.strip_prefix(keys::PENDING) {
            self.queued(id).map(|q| q.version)
        } else if path.starts_with(keys::INBOX) {
            self.inbox.get(path).copied()
        } else if let Some(id) = path.strip_prefix(keys::AGENTS) {
            self.fleet.agent(id).map(|a| a.version)
        } else {
            None
        }
    }

    /// Whether a change at `revision` to `path` needs reading: not when the path is not indexed,
    /// nor when the view already holds that revision or a later one (the leader's own writes).
    pub fn needs_read(&mut self, path: &str, revision: Version) -> bool {
        if !is_indexed(path) {
            return false;
        }
        if self.version_of(path).is_some_and(|v| v >= revision) {
            return false;
        }
        match self.deleted.get(path) {
            Some(&d) if d >= revision => {
                if d == revision {
                    self.deleted.remove(path);
                }
                false
            }
            _ => true,
        }
    }

    /// Records what the store holds at `path` now: `Some((version, value))`, or `None` when
    /// nothing is there. Paths outside the view are ignored; an agent record or queue entry that
    /// does not decode is taken as absent or as a bare entry respectively.
    pub fn apply(&mut self, path: &str, now: Option<(Version, &[u8])>) {
        self.deleted.remove(path);
        if let Some(job_id) = path.strip_prefix(keys::PENDING) {
            if let Some(p) = self.priority.remove(job_id) {
                self.queue.remove(&(Reverse(p), job_id.to_string()));
            }
            if let Some((version, value)) = now {
                // As the queue has always been read: an entry that does not decode is served
                // as priority 0 with no pin and no selector (its job is then described again).
                let meta = serde_json::from_slice::<Pending>(value).unwrap_or_default();
                self.priority.insert(job_id.to_string(), meta.priority);
                self.queue.insert(
                    (Reverse(meta.priority), job_id.to_string()),
                    Queued { meta, version },
                );
            }
        } else if let Some(rest) = path.strip_prefix(keys::INBOX) {
            let Some((agent, _)) = rest.split_once('/') else {
                return;
            };
            let was = self.inbox.remove(path).is_some();
            if let Some((version, _)) = now {
                self.inbox.insert(path.to_string(), version);
            }
            let delta = i64::from(now.is_some()) - i64::from(was);
            if delta != 0 {
                self.fleet.add_load(agent, delta);
            }
        } else if let Some(node_id) = path.strip_prefix(keys::AGENTS) {
            match now.and_then(|(v, value)| Some((v, serde_json::from_slice::<Agent>(value).ok()?)))
            {
                Some((version, agent)) => self.fleet.upsert(node_id, Slot::of(&agent, version)),
                None => self.fleet.remove(node_id),
            }
            self.agents_revision += 1;
        }
    }

    /// Records a delete this leader committed at `revision`.
    pub fn deleted_at(&mut self, path: &str, revision: Version) {
        self.apply(path, None);
        self.deleted.insert(path.to_string(), revision);
    }

    /// Plans a pass over this view (see [`placement::plan`]); the load it counts stays in the
    /// view until [`TenantIndex::unplan`] takes it back.
    pub fn plan(&mut self, budget: Budget, skip: &HashSet<String>) -> Vec<(String, String)> {
        let queue = self.queue.iter().map(|((_, id), q)| (id.as_str(), &q.meta));
        placement::plan(&mut self.fleet, queue, budget, skip)
    }

    /// Takes back the load a plan counted (what was committed is then applied as stored).
    pub fn unplan(&mut self, planned: &[(String, String)]) {
        for (_, agent) in planned {
            self.fleet.add_load(agent, -1);
        }
    }

    /// Whether two views hold the same facts (the record of the leader's own deletes aside).
    pub fn same_view(&self, other: &TenantIndex) -> bool {
        self.fleet == other.fleet
            && self.inbox == other.inbox
            && self.queue == other.queue
            && self.priority == other.priority
    }
}

/// The scheduler's views of every tenant during one term, and the change notices not yet
/// looked at. Notices are taken in at the start of each pass ([`Indexes::take_notices`]); the
/// paths they name are read then.
#[derive(Debug, Default)]
pub struct Indexes {
    changes: Option<broadcast::Receiver<Arc<Change>>>,
    tenants: HashMap<String, TenantIndex>,
    /// Paths to read before the tenant's next pass.
    dirty: HashMap<String, BTreeSet<String>>,
}

impl Indexes {
    /// Views fed by `changes` (subscribe before the first pass reads anything).
    pub fn new(changes: broadcast::Receiver<Arc<Change>>) -> Indexes {
        Indexes {
            changes: Some(changes),
            ..Indexes::default()
        }
    }

    /// Views fed by nothing: each pass builds its tenant's view afresh.
    pub fn detached() -> Indexes {
        Indexes::default()
    }

    /// Takes in one change notice: the indexed paths it writes that the view does not already
    /// hold at that revision are read before the tenant's next pass. A path it deletes needs no
    /// read: the view drops it at once (an agent's result frees its slot that way). A resync
    /// drops every view.
    pub fn note(&mut self, c: &Change) {
        if c.is_resync() {
            self.resync();
            return;
        }
        let Some(ix) = self.tenants.get_mut(&c.tenant) else {
            return;
        };
        for p in &c.paths {
            if !ix.needs_read(p, c.revision) {
                continue;
            }
            if c.deletes(p) {
                // What a read would find, or newer: a later write is read for its own notice,
                // and a read already due for this path still happens.
                ix.apply(p, None);
            } else {
                self.dirty
                    .entry(c.tenant.clone())
                    .or_default()
                    .insert(p.clone());
            }
        }
    }

    /// Drops every view: each is rebuilt from the store on its tenant's next pass.
    pub fn resync(&mut self) {
        self.tenants.clear();
        self.dirty.clear();
    }

    /// Takes in every notice received so far (a lagged subscription drops every view). Without
    /// a subscription, every view is dropped, so that each pass reads afresh.
    pub fn take_notices(&mut self) {
        let Some(rx) = self.changes.as_mut() else {
            self.resync();
            return;
        };
        let mut notes = Vec::new();
        let mut lagged = false;
        loop {
            match rx.try_recv() {
                Ok(c) => notes.push(c),
                Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        if lagged {
            self.resync();
            return;
        }
        for c in &notes {
            self.note(c);
        }
    }

    /// Marks `path` of `tenant` to be read before the next pass, whatever the view holds (an
    /// assignment conflicted on it).
    pub fn mark(&mut self, tenant: &str, path: &str) {
        if self.tenants.contains_key(tenant) {
            self.dirty
                .entry(tenant.to_string())
                .or_default()
                .insert(path.to_string());
        }
    }

    pub fn get_mut(&mut self, tenant: &str) -> Option<&mut TenantIndex> {
        self.tenants.get_mut(tenant)
    }

    pub fn insert(&mut self, tenant: &str, ix: TenantIndex) {
        self.dirty.remove(tenant);
        self.tenants.insert(tenant.to_string(), ix);
    }

    /// The paths of `tenant` to read before its pass (taken out).
    pub fn take_dirty(&mut self, tenant: &str) -> Vec<String> {
        self.dirty
            .remove(tenant)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AgentState;

    fn agent_json(id: &str, state: &str, slots: u32, labels: &[(&str, &str)]) -> Vec<u8> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "node_id": id,
            "tenant": "acme",
            "labels": labels,
            "slots": slots,
            "state": state,
            "registered_at": 0,
            "last_seen": 0,
        }))
        .unwrap()
    }

    /// A store's contents under the indexed prefixes, as a map.
    type Contents = BTreeMap<String, (Version, Vec<u8>)>;

    fn rebuild(c: &Contents) -> TenantIndex {
        TenantIndex::build(c.iter().map(|(p, (v, b))| (p.as_str(), *v, b.as_slice())))
    }

    use crate::testing::Lcg;

    fn random_write(rng: &mut Lcg) -> (String, Option<Vec<u8>>) {
        let agent = format!("a{}", rng.next(6));
        let del = rng.next(4) == 0;
        match rng.next(3) {
            0 => {
                let states = ["online", "unreachable", "dead"];
                let labels: &[(&str, &str)] = match rng.next(3) {
                    0 => &[],
                    1 => &[("role", "web")],
                    _ => &[("role", "db"), ("zone", "b")],
                };
                let body = match rng.next(10) {
                    0 => b"not an agent".to_vec(),
                    _ => agent_json(
                        &agent,
                        states[rng.next(3) as usize],
                        rng.next(4) as u32,
                        labels,
                    ),
                };
                (keys::agent(&agent), (!del).then_some(body))
            }
            1 => {
                let path = keys::inbox_entry(&agent, &format!("j-{}.1", rng.next(8)));
                (
                    path,
                    (!del).then(|| b"{\"secret\":\"never read\"}".to_vec()),
                )
            }
            _ => {
                let path = keys::pending(&format!("j-{:02}", rng.next(12)));
                let body = match rng.next(5) {
                    0 => b"{}".to_vec(),
                    1 => b"garbage".to_vec(),
                    _ => format!(
                        r#"{{"priority":{},"node_id":"{agent}"}}"#,
                        rng.next(5) as i32 - 2
                    )
                    .into_bytes(),
                };
                (path, (!del).then_some(body))
            }
        }
    }

    #[test]
    fn applying_changes_one_by_one_gives_the_view_built_from_scratch() {
        for seed in 0..20 {
            let mut rng = Lcg(seed);
            let mut store = Contents::new();
            let mut ix = TenantIndex::default();
            for revision in 1..=300u64 {
                let (path, value) = random_write(&mut rng);
                match value {
                    Some(v) => {
                        store.insert(path.clone(), (revision, v));
                    }
                    None => {
                        store.remove(&path);
                    }
                }
                // The notice names the path; the leader reads what is there now.
                assert!(ix.needs_read(&path, revision));
                let now = store.get(&path).map(|(v, b)| (*v, b.as_slice()));
                ix.apply(&path, now);
                // Unrelated paths are never read.
                assert!(!ix.needs_read("jobs/j-01", revision));
            }
            let fresh = rebuild(&store);
            assert!(ix.same_view(&fresh), "seed {seed}: {ix:?}\nvs\n{fresh:?}");
            // The load is exactly the inbox entries per agent, whatever order they came in.
            for i in 0..6 {
                let a = format!("a{i}");
                let n = store
                    .keys()
                    .filter(|p| p.starts_with(&keys::inbox(&a)))
                    .count() as u32;
                assert_eq!(ix.fleet().load(&a), n, "seed {seed}, {a}");
            }
        }
    }

    #[test]
    fn notices_read_between_passes_give_the_view_built_from_scratch() {
        // As the leader's passes see the store: notices (a deletion says so) taken in at the
        // start of a pass, then the paths marked dirty read as they are at that moment.
        for seed in 0..20 {
            let mut rng = Lcg(seed);
            let mut store = Contents::new();
            let (tx, rx) = broadcast::channel(64);
            let mut all = Indexes::new(rx);
            all.insert("acme", TenantIndex::default());
            for revision in 1..=300u64 {
                let (path, value) = random_write(&mut rng);
                let deleted = match value {
                    Some(v) => {
                        store.insert(path.clone(), (revision, v));
                        vec![]
                    }
                    None => {
                        store.remove(&path);
                        vec![path.clone()]
                    }
                };
                let notice = Change {
                    tenant: "acme".into(),
                    revision,
                    paths: vec![path],
                    deleted,
                };
                tx.send(notice.into()).unwrap();
                if rng.next(8) == 0 {
                    all.take_notices();
                    for p in all.take_dirty("acme") {
                        let now = store.get(&p).map(|(v, b)| (*v, b.as_slice()));
                        all.get_mut("acme").unwrap().apply(&p, now);
                    }
                }
            }
            all.take_notices();
            for p in all.take_dirty("acme") {
                let now = store.get(&p).map(|(v, b)| (*v, b.as_slice()));
                all.get_mut("acme").unwrap().apply(&p, now);
            }
            let fresh = rebuild(&store);
            let ix = all.get_mut("acme").unwrap();
            assert!(ix.same_view(&fresh), "seed {seed}: {ix:?}\nvs\n{fresh:?}");
        }
    }

    #[test]
    fn the_queue_is_kept_in_serving_order_and_moves_when_a_priority_changes() {
        let mut ix = TenantIndex::default();
        ix.apply("pending/j-3", Some((1, br#"{"priority":0}"#)));
        ix.apply("pending/j-1", Some((2, br#"{"priority":0}"#)));
        ix.apply("pending/j-4", Some((3, br#"{"priority":5}"#)));
        ix.apply("pending/j-2", Some((4, b"not json")));
        let order = |ix: &TenantIndex| ix.queue().map(|(id, _)| id.to_string()).collect::<Vec<_>>();
        assert_eq!(order(&ix), ["j-4", "j-1", "j-2", "j-3"]);
        ix.apply("pending/j-3", Some((5, br#"{"priority":9}"#)));
        assert_eq!(order(&ix), ["j-3", "j-4", "j-1", "j-2"]);
        ix.apply("pending/j-4", None);
        assert_eq!(order(&ix), ["j-3", "j-1", "j-2"]);
        assert_eq!(ix.queue_len(), 3);
        assert_eq!(ix.queued("j-3").map(|q| q.version), Some(5));
    }

    #[test]
    fn an_agents_record_and_its_inbox_give_its_free_slots() {
        let mut ix = TenantIndex::default();
        ix.apply("agents/a1", Some((1, &agent_json("a1", "online", 2, &[]))));
        assert_eq!(ix.fleet().free_slots("a1"), 2);
        ix.apply("inbox/a1/j-1.1", Some((2, b"{}")));
        // The same entry rewritten (a cancel flag, say) is still one entry.
        ix.apply("inbox/a1/j-1.1", Some((3, b"{}")));
        assert_eq!(ix.fleet().free_slots("a1"), 1);
        ix.apply("inbox/a1/j-2.1", Some((4, b"{}")));
        assert_eq!(ix.fleet().free_slots("a1"), 0);
        assert!(!ix.fleet().any_free());
        ix.apply("inbox/a1/j-1.1", None);
        assert_eq!(ix.fleet().free_slots("a1"), 1);
        ix.apply("agents/a1", Some((5, &agent_json("a1", "dead", 2, &[]))));
        assert_eq!(ix.fleet().free_slots("a1"), 0);
        assert_eq!(
            ix.fleet().agent("a1").map(|a| a.state),
            Some(AgentState::Dead)
        );
        ix.apply("agents/a1", None);
        assert!(ix.fleet().agent("a1").is_none());
        // The inbox entry still counts: an agent registering again starts from it.
        assert_eq!(ix.fleet().load("a1"), 1);
    }

    #[test]
    fn the_leaders_own_writes_need_no_read_but_anything_newer_does() {
        let mut ix = TenantIndex::default();
        ix.apply("inbox/a1/j-1.1", Some((7, b"{}")));
        assert!(!ix.needs_read("inbox/a1/j-1.1", 7));
        assert!(!ix.needs_read("inbox/a1/j-1.1", 6));
        assert!(ix.needs_read("inbox/a1/j-1.1", 8));
        ix.apply("pending/j-1", Some((3, b"{}")));
        ix.deleted_at("pending/j-1", 7);
        assert!(ix.queued("j-1").is_none());
        assert!(!ix.needs_read("pending/j-1", 7));
        // Once its notice came, the delete is forgotten: a later write is read.
        assert!(ix.needs_read("pending/j-1", 7));
        assert!(!ix.needs_read("jobs/j-1", 9));
    }

    #[test]
    fn notices_mark_paths_of_known_tenants_and_a_resync_drops_every_view() {
        let (tx, rx) = broadcast::channel(4);
        let mut all = Indexes::new(rx);
        all.insert("acme", TenantIndex::default());
        let change = |tenant: &str, revision, paths: &[&str]| Change {
            tenant: tenant.into(),
            revision,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            deleted: Vec::new(),
        };
        tx.send(change("acme", 2, &["pending/j-1", "jobs/j-1", "output/j-1.1/0"]).into())
            .unwrap();
        tx.send(change("other", 3, &["pending/j-2"]).into())
            .unwrap();
        all.take_notices();
        assert_eq!(all.take_dirty("acme"), ["pending/j-1"]);
        assert!(all.take_dirty("other").is_empty());
        assert!(all.get_mut("acme").is_some());

        all.mark("acme", "agents/a1");
        tx.send(Change::resync().into()).unwrap();
        all.take_notices();
        assert!(all.get_mut("acme").is_none());
        assert!(all.take_dirty("acme").is_empty());

        // More notices than the channel holds: the subscription lagged, every view is dropped.
        all.insert("acme", TenantIndex::default());
        for r in 0..6 {
            tx.send(change("acme", r, &["pending/j-1"]).into()).unwrap();
        }
        all.take_notices();
        assert!(all.get_mut("acme").is_none());

        // A deletion is applied without a read; a write is read.
        all.insert("acme", TenantIndex::default());
        let ix = all.get_mut("acme").unwrap();
        ix.apply("agents/a1", Some((1, &agent_json("a1", "online", 1, &[]))));
        ix.apply("inbox/a1/j-1.1", Some((2, b"{}")));
        assert_eq!(ix.fleet().free_slots("a1"), 0);
        let mut result = change("acme", 3, &["inbox/a1/j-1.1", "attempts/j-1/0001"]);
        result.deleted = vec!["inbox/a1/j-1.1".into()];
        tx.send(result.into()).unwrap();
        tx.send(change("acme", 4, &["inbox/a1/j-2.1"]).into())
            .unwrap();
        all.take_notices();
        assert_eq!(all.take_dirty("acme"), ["inbox/a1/j-2.1"]);
        let ix = all.get_mut("acme").unwrap();
        assert_eq!(
            ix.fleet().free_slots("a1"),
            1,
            "the deleted entry's slot is free"
        );
        assert!(ix.version_of("inbox/a1/j-1.1").is_none());

        let mut detached = Indexes::detached();
        detached.insert("acme", TenantIndex::default());
        detached.take_notices();
        assert!(detached.get_mut("acme").is_none());
    }
}
