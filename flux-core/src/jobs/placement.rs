//! Placement: the pure policy deciding where queued jobs go, over plain data (queue entries,
//! agent records and how many attempts each agent holds). No I/O: the scheduling driver in
//! `schedule.rs` reads the store, asks these functions, and commits what they chose.
//!
//! The rules:
//! - the queue is served highest priority first, then oldest (job ids are time-ordered);
//! - an agent can take one more attempt while it is online and holds fewer than `slots`;
//! - a job pinned to an agent goes to that agent only; any other job goes to the least loaded
//!   agent with a free slot that the job's selector matches (ties: smallest node id); see
//!   [`crate::selector`] (labels are an agent's declared labels overlaid by its admin labels).
//!
//! The free functions below state these rules over a plain map of agents. [`Fleet`] keeps the
//! same facts indexed (agents with room ordered by load, agents by label) so that the leader's
//! [`plan`] of a whole pass costs map lookups per job, not a walk over every agent; a unit test
//! checks that both give the same answers. A selector's label equalities (and one-value `in`
//! lists) are answered from the label index; a selector without any (`!canary`,
//! `fact.cpus>=4`) is matched against the agents with room, least loaded first, and the first
//! match is taken.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::{Agent, AgentState, FactValue, Facts, Job, Millis, Pending};
use crate::selector::{Selector, Subject, effective_labels};
use crate::store::{Entry, Version};

/// Attempts each agent holds now (assigned or running), by node id.
pub type Load = HashMap<String, u32>;

/// Where a job may go: pinned to one agent, or any agent whose labels carry the selector.
#[derive(Clone, Copy, Debug)]
pub struct Wants<'a> {
    pub node_id: Option<&'a String>,
    pub selector: &'a Selector,
}

impl<'a> Wants<'a> {
    pub fn job(job: &'a Job) -> Wants<'a> {
        Wants {
            node_id: job.node_id.as_ref(),
            selector: &job.selector,
        }
    }

    /// What a queue entry says of its job, so that it can be judged without loading the job.
    pub fn pending(p: &'a Pending) -> Wants<'a> {
        Wants {
            node_id: p.node_id.as_ref(),
            selector: &p.selector,
        }
    }
}

/// Decodes a tenant's queue entries and puts them in the order they are served: highest
/// priority first, then oldest. An entry that does not decode is served as priority 0 with no
/// pin and no selector (the driver then loads its job and describes it again).
pub fn order_pending(entries: Vec<Entry>) -> Vec<(Pending, Entry)> {
    let mut pending: Vec<(Pending, Entry)> = entries
        .into_iter()
        .map(|e| {
            (
                serde_json::from_slice::<Pending>(&e.value).unwrap_or_default(),
                e,
            )
        })
        .collect();
    // Job ids are time-ordered, so within one priority the path order is the age order.
    pending.sort_by(|(a, ea), (b, eb)| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| ea.key.path().cmp(eb.key.path()))
    });
    pending
}

/// The load of each agent, from the paths of a tenant's inbox entries
/// (`inbox/<agent>/<attempt>`, see [`crate::keys::inbox_entry`]).
pub fn load_of<'a>(inbox_paths: impl IntoIterator<Item = &'a str>) -> Load {
    let mut load = Load::new();
    for path in inbox_paths {
        if let Some(agent) = path.split('/').nth(1) {
            *load.entry(agent.to_string()).or_default() += 1;
        }
    }
    load
}

/// How many more attempts an agent can take now: none unless it is online, not drained and
/// not revoked.
pub fn free_slots(agent: &Agent, load: &Load) -> u32 {
    if !agent.takes_work() {
        return 0;
    }
    agent
        .slots
        .saturating_sub(load.get(&agent.node_id).copied().unwrap_or(0))
}

/// Can take one more attempt now.
fn has_room(agent: &Agent, load: &Load) -> bool {
    free_slots(agent, load) > 0
}

/// Whether any agent can take one more attempt now (if none can, the pass is over).
pub fn any_free(agents: &BTreeMap<String, Agent>, load: &Load) -> bool {
    agents.values().any(|a| has_room(a, load))
}

/// Whether some agent could take a job that wants this now. The same answer as
/// `choose_agent(..).is_some()`, but it stops at the first candidate: the driver asks it of
/// every queue entry it passes over.
pub fn can_place(wants: Wants<'_>, agents: &BTreeMap<String, Agent>, load: &Load) -> bool {
    match wants.node_id {
        Some(n) => agents.get(n).is_some_and(|a| has_room(a, load)),
        None => agents
            .values()
            .any(|a| has_room(a, load) && wants.selector.matches(a)),
    }
}

/// The agent a job goes to now: its pinned agent if that one has a free slot; otherwise the
/// least loaded agent with a free slot whose labels carry the selector (ties: smallest node id).
/// `None` when no agent can take it now.
pub fn choose_agent<'a>(
    wants: Wants<'_>,
    agents: &'a BTreeMap<String, Agent>,
    load: &Load,
) -> Option<&'a Agent> {
    match wants.node_id {
        Some(n) => agents.get(n).filter(|a| has_room(a, load)),
        None => agents
            .values()
            .filter(|a| has_room(a, load) && wants.selector.matches(*a))
            .min_by_key(|a| {
                (
                    load.get(&a.node_id).copied().unwrap_or(0),
                    a.node_id.clone(),
                )
            }),
    }
}

/// What placement needs to know of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub state: AgentState,
    pub slots: u32,
    /// The agent's labels as selectors see them (declared, overlaid by admin labels).
    pub labels: Labels,
    /// Its facts; `None` when it reports none (most of a record's size when kept inline).
    pub facts: Option<Box<Facts>>,
    /// The registration attempts given to the agent are bound to.
    pub registration: Option<String>,
    /// Version of the agent record this was read from: an assignment checks it, so a record
    /// that moved since (marked dead, slots or labels changed) fails the assignment alone.
    pub version: Version,
    /// Drained or revoked: it takes no new work whatever its state.
    pub closed: bool,
    /// Revoked (its token): the liveness sweep takes it as dead.
    pub revoked: bool,
    /// When it was last heard of, as its record says (the liveness sweep judges silence on it
    /// and on the nodes' last-seen records).
    pub last_seen: Millis,
}

impl Slot {
    pub fn of(agent: &Agent, version: Version) -> Slot {
        Slot {
            state: agent.state,
            slots: agent.slots,
            labels: effective_labels(&agent.labels, &agent.admin_labels).into(),
            facts: (!agent.facts.is_empty()).then(|| Box::new(agent.facts.clone())),
            registration: agent.registration.as_ref().map(|r| r.id.clone()),
            version,
            closed: agent.drained || agent.revoked_at.is_some(),
            revoked: agent.revoked_at.is_some(),
            last_seen: agent.last_seen,
        }
    }
}

impl Subject for Slot {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
    fn fact(&self, name: &str) -> Option<FactValue<'_>> {
        // An agent that reports no facts has none to match ([`Facts::get`] of the default).
        self.facts.as_deref()?.get(name)
    }
}

/// An agent's labels, sorted by key. A slice: the leader holds one per agent, and a map spent
/// a whole node (544 bytes) on an agent's one label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Box<[(String, String)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        Some(self.0[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(labels: BTreeMap<String, String>) -> Labels {
        Labels(labels.into_iter().collect())
    }
}

/// How many of `states` are online, unreachable and dead (in that order).
pub fn count_by_state(states: impl IntoIterator<Item = AgentState>) -> [u64; 3] {
    let mut n = [0u64; 3];
    for s in states {
        n[state_index(s)] += 1;
    }
    n
}

/// Where `count_by_state` counts an agent in `state`.
fn state_index(state: AgentState) -> usize {
    match state {
        AgentState::Online => 0,
        AgentState::Unreachable => 1,
        AgentState::Dead => 2,
    }
}

/// A tenant's agents and their load, indexed for placement: the agents with a free slot ordered
/// by (load, node id), and every agent by each of its labels. Plain data; every change goes
/// through [`Fleet::upsert`], [`Fleet::remove`] and [`Fleet::add_load`], which keep the indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    agents: BTreeMap<String, Slot>,
    load: Load,
    /// The sum of `load`.
    held: u64,
    /// Agents with room, by (load, node id): the first one is the least loaded.
    free: BTreeSet<(u32, String)>,
    /// Node ids by `(label, value)`, whatever their state.
    by_label: HashMap<(String, String), BTreeSet<String>>,
    /// `agents` counted by state, as `by_state` gives them.
    states: [u64; 3],
}

impl Fleet {
    pub fn agent(&self, node_id: &str) -> Option<&Slot> {
        self.agents.get(node_id)
    }

    pub fn agents(&self) -> impl Iterator<Item = (&String, &Slot)> {
        self.agents.iter()
    }

    /// How many agents are online, unreachable and dead (in that order), by their records.
    pub fn by_state(&self) -> [u64; 3] {
        self.states
    }

    /// Attempts the agent holds now.
    pub fn load(&self, node_id: &str) -> u32 {
        self.load.get(node_id).copied().unwrap_or(0)
    }

    /// Attempts held over every agent of the tenant (registered or not).
    pub fn in_flight(&self) -> u64 {
        self.held
    }

    /// How many more attempts the agent can take now: none unless it is online and neither
    /// drained nor revoked.
    pub fn free_slots(&self, node_id: &str) -> u32 {
        match self.agents.get(node_id) {
            Some(a) if a.state == AgentState::Online && !a.closed => {
                a.slots.saturating_sub(self.load(node_id))
            }
            _ => 0,
        }
    }

    /// Whether any agent can take one more attempt now.
    pub fn any_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Records (or replaces) an agent.
    pub fn upsert(&mut self, node_id: &str, slot: Slot) {
        self.unindex(node_id);
        self.states[state_index(slot.state)] += 1;
        if let Some(old) = self.agents.insert(node_id.to_string(), slot) {
            self.states[state_index(old.state)] -= 1;
        }
        self.reindex(node_id);
    }

    /// Forgets an agent (its load, held by inbox entries, stays).
    pub fn remove(&mut self, node_id: &str) {
        self.unindex(node_id);
        if let Some(old) = self.agents.remove(node_id) {
            self.states[state_index(old.state)] -= 1;
        }
    }

    /// Moves the agent's load by `delta` (never below zero).
    pub fn add_load(&mut self, node_id: &str, delta: i64) {
        let old = self.load(node_id);
        self.free.remove(&(old, node_id.to_string()));
        let new = (i64::from(old) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        self.held = self.held - u64::from(old) + u64::from(new);
        if new == 0 {
            self.load.remove(node_id);
        } else {
            self.load.insert(node_id.to_string(), new);
        }
        if self.free_slots(node_id) > 0 {
            self.free.insert((new, node_id.to_string()));
        }
    }

    fn unindex(&mut self, node_id: &str) {
        let Some(old) = self.agents.get(node_id) else {
            return;
        };
        for (k, v) in old.labels.iter() {
            let pair = (k.clone(), v.clone());
            if let Some(ids) = self.by_label.get_mut(&pair) {
                ids.remove(node_id);
                if ids.is_empty() {
                    self.by_label.remove(&pair);
                }
            }
        }
        self.free.remove(&(self.load(node_id), node_id.to_string()));
    }

    fn reindex(&mut self, node_id: &str) {
        let Some(slot) = self.agents.get(node_id) else {
            return;
        };
        for (k, v) in slot.labels.iter() {
            self.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(node_id.to_string());
        }
        if self.free_slots(node_id) > 0 {
            self.free.insert((self.load(node_id), node_id.to_string()));
        }
    }

    /// The agent a job that wants this goes to now: the same answer as [`choose_agent`] over
    /// the same agents and load, found by lookups: a pinned job looks at its agent only, a job
    /// without selector takes the first agent with room, a job whose selector requires labels
    /// walks the shorter of the agents carrying its rarest required label and the agents with
    /// room, and any other selector walks the agents with room (least loaded first).
    pub fn choose(&self, wants: Wants<'_>) -> Option<String> {
        if let Some(n) = wants.node_id {
            return (self.free_slots(n) > 0).then(|| n.clone());
        }
        if wants.selector.is_empty() {
            return self.free.first().map(|(_, id)| id.clone());
        }
        let mut rarest: Option<&BTreeSet<String>> = None;
        for (k, v) in wants.selector.required_labels() {
            let ids = self.by_label.get(&(k.to_string(), v.to_string()))?;
            if rarest.is_none_or(|r| ids.len() < r.len()) {
                rarest = Some(ids);
            }
        }
        let fits = |id: &String| {
            self.agents
                .get(id)
                .is_some_and(|a| wants.selector.matches(a))
        };
        if let Some(rarest) = rarest
            && rarest.len() < self.free.len()
        {
            rarest
                .iter()
                .filter(|id| self.free_slots(id) > 0 && fits(id))
                .min_by_key(|id| (self.load(id), *id))
                .cloned()
        } else {
            self.free
                .iter()
                .find(|(_, id)| fits(id))
                .map(|(_, id)| id.clone())
        }
    }
}

/// The bounds of one scheduling pass over a tenant.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Attempts of the tenant assigned or running now.
    pub in_flight: u64,
    /// At most this many at once (the tenant's quota), if set.
    pub max_running: Option<u64>,
    /// At most this many assignments in the pass.
    pub max_assign: usize,
}

/// Plans a pass: walks `queue` (in serving order: job id and queue entry) and gives each job
/// that an agent can take now its agent, counting every choice into `fleet`'s load as it goes,
/// so that one pass never gives an agent more than its free slots. Jobs in `skip` are passed
/// over. A job no agent can take now is passed over without counting towards the budget, so
/// none can block the queue. The caller takes the counted load back with
/// `fleet.add_load(agent, -1)` per planned job once it knows what was committed.
pub fn plan<'a>(
    fleet: &mut Fleet,
    queue: impl IntoIterator<Item = (&'a str, &'a Pending)>,
    budget: Budget,
    skip: &HashSet<String>,
) -> Vec<(String, String)> {
    let mut planned = Vec::new();
    let mut in_flight = budget.in_flight;
    for (job_id, meta) in queue {
        if budget.max_running.is_some_and(|m| in_flight >= m)
            || planned.len() >= budget.max_assign
            || !fleet.any_free()
        {
            break;
        }
        if skip.contains(job_id) {
            continue;
        }
        let Some(agent) = fleet.choose(Wants::pending(meta)) else {
            continue;
        };
        fleet.add_load(&agent, 1);
        in_flight += 1;
        planned.push((job_id.to_string(), agent));
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::store::Key;

    fn agent(id: &str, slots: u32, state: AgentState, labels: &[(&str, &str)]) -> Agent {
        Agent {
            node_id: id.into(),
            tenant: "acme".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            slots,
            state,
            registered_at: 0,
            last_seen: 0,
            hostname: None,
            version: None,
            registration: None,
            admin_labels: BTreeMap::new(),
            facts: Facts {
                cpus: Some(u64::from(slots) + 1),
                ..Facts::default()
            },
            drained: false,
            revoked_at: None,
        }
    }

    fn fleet(agents: Vec<Agent>) -> BTreeMap<String, Agent> {
        agents.into_iter().map(|a| (a.node_id.clone(), a)).collect()
    }

    fn load(of: &[(&str, u32)]) -> Load {
        of.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    fn selector(of: &[(&str, &str)]) -> Selector {
        Selector::labels(of.iter().copied())
    }

    fn any(selector: &Selector) -> Wants<'_> {
        Wants {
            node_id: None,
            selector,
        }
    }

    fn entry(job_id: &str, value: &[u8]) -> Entry {
        Entry {
            key: Key::new("acme", keys::pending(job_id)).unwrap(),
            version: 1,
            value: value.to_vec(),
        }
    }

    fn order(entries: Vec<Entry>) -> Vec<String> {
        order_pending(entries)
            .into_iter()
            .map(|(_, e)| e.key.path().to_string())
            .collect()
    }

    #[test]
    fn the_queue_is_served_by_priority_then_age() {
        let served = order(vec![
            entry("j-3", br#"{"priority":0}"#),
            entry("j-1", br#"{"priority":0}"#),
            entry("j-4", br#"{"priority":5}"#),
            entry("j-2", br#"{"priority":-5}"#),
            entry("j-5", br#"{"priority":5}"#),
        ]);
        assert_eq!(
            served,
            [
                "pending/j-4",
                "pending/j-5",
                "pending/j-1",
                "pending/j-3",
                "pending/j-2"
            ]
        );
    }

    #[test]
    fn an_entry_that_does_not_decode_is_served_as_priority_zero() {
        let decoded = order_pending(vec![
            entry("j-1", br#"{"priority":-1}"#),
            entry("j-2", b"not json"),
            entry("j-3", b""),
        ]);
        let paths: Vec<&str> = decoded.iter().map(|(_, e)| e.key.path()).collect();
        assert_eq!(paths, ["pending/j-2", "pending/j-3", "pending/j-1"]);
        assert_eq!(decoded[0].0, Pending::default());
        assert_eq!(
            order_pending(vec![entry("j-9", br#"{"priority":3,"node_id":"a1"}"#)])[0].0,
            Pending {
                priority: 3,
                node_id: Some("a1".into()),
                selector: Selector::default(),
            }
        );
    }

    #[test]
    fn load_counts_inbox_entries_per_agent() {
        let l = load_of([
            keys::inbox_entry("a1", "j-1.1").as_str(),
            keys::inbox_entry("a1", "j-2.1").as_str(),
            keys::inbox_entry("a2", "j-3.1").as_str(),
        ]);
        assert_eq!(l, load(&[("a1", 2), ("a2", 1)]));
        assert!(load_of([]).is_empty());
    }

    #[test]
    fn only_online_agents_below_their_slots_have_room() {
        let l = load(&[("a1", 2), ("a3", 5)]);
        assert_eq!(free_slots(&agent("a1", 4, AgentState::Online, &[]), &l), 2);
        assert_eq!(free_slots(&agent("a2", 4, AgentState::Online, &[]), &l), 4);
        assert_eq!(free_slots(&agent("a3", 4, AgentState::Online, &[]), &l), 0);
        assert_eq!(
            free_slots(&agent("a2", 4, AgentState::Unreachable, &[]), &l),
            0
        );
        assert_eq!(free_slots(&agent("a2", 4, AgentState::Dead, &[]), &l), 0);
        let agents = fleet(vec![
            agent("a1", 2, AgentState::Online, &[]),
            agent("a2", 4, AgentState::Dead, &[]),
        ]);
        assert!(!any_free(&agents, &l));
        assert!(any_free(&agents, &load(&[("a1", 1)])));
        assert!(!any_free(&BTreeMap::new(), &l));
    }

    #[test]
    fn the_least_loaded_matching_agent_is_chosen_ties_by_node_id() {
        let agents = fleet(vec![
            agent("a1", 4, AgentState::Online, &[("role", "web")]),
            agent("a2", 4, AgentState::Online, &[("role", "web")]),
            agent("a3", 4, AgentState::Online, &[("role", "db")]),
        ]);
        let none = selector(&[]);
        let web = selector(&[("role", "web")]);
        let pick = |w, l: &Load| choose_agent(w, &agents, l).map(|a| a.node_id.clone());
        assert_eq!(pick(any(&none), &load(&[])), Some("a1".into()));
        assert_eq!(
            pick(any(&none), &load(&[("a1", 1), ("a2", 1)])),
            Some("a3".into())
        );
        assert_eq!(pick(any(&web), &load(&[("a1", 1)])), Some("a2".into()));
        assert_eq!(
            pick(any(&web), &load(&[("a1", 1), ("a2", 1)])),
            Some("a1".into())
        );
    }

    #[test]
    fn selectors_need_every_label() {
        let agents = fleet(vec![
            agent("a1", 4, AgentState::Online, &[("role", "web")]),
            agent(
                "a2",
                4,
                AgentState::Online,
                &[("role", "web"), ("zone", "b")],
            ),
        ]);
        let zone_b = selector(&[("role", "web"), ("zone", "b")]);
        let zone_c = selector(&[("zone", "c")]);
        let chosen = choose_agent(any(&zone_b), &agents, &load(&[]));
        assert_eq!(chosen.map(|a| a.node_id.as_str()), Some("a2"));
        assert!(choose_agent(any(&zone_c), &agents, &load(&[])).is_none());
        assert!(!can_place(any(&zone_c), &agents, &load(&[])));
    }

    #[test]
    fn a_pinned_job_waits_for_its_agent() {
        let agents = fleet(vec![
            agent("a1", 1, AgentState::Online, &[]),
            agent("a2", 4, AgentState::Online, &[]),
            agent("a3", 4, AgentState::Unreachable, &[]),
        ]);
        let none = selector(&[]);
        let (a1, a3, gone) = ("a1".to_string(), "a3".to_string(), "a9".to_string());
        let pin = |n: &String, l: &Load| {
            let w = Wants {
                node_id: Some(n),
                selector: &none,
            };
            (
                choose_agent(w, &agents, l).map(|a| a.node_id.clone()),
                can_place(w, &agents, l),
            )
        };
        // Free: it goes there, even though another agent is less loaded.
        assert_eq!(pin(&a1, &load(&[])), (Some("a1".into()), true));
        // Full, not online, or not registered: it waits; no other agent takes it.
        assert_eq!(pin(&a1, &load(&[("a1", 1)])), (None, false));
        assert_eq!(pin(&a3, &load(&[])), (None, false));
        assert_eq!(pin(&gone, &load(&[])), (None, false));
    }

    #[test]
    fn full_and_offline_agents_are_no_candidates() {
        let agents = fleet(vec![
            agent("a1", 2, AgentState::Online, &[]),
            agent("a2", 4, AgentState::Dead, &[]),
            agent("a3", 4, AgentState::Unreachable, &[]),
        ]);
        let none = selector(&[]);
        let full = load(&[("a1", 2)]);
        assert!(choose_agent(any(&none), &agents, &full).is_none());
        assert!(!can_place(any(&none), &agents, &full));
        let one_left = load(&[("a1", 1)]);
        let chosen = choose_agent(any(&none), &agents, &one_left);
        assert_eq!(chosen.map(|a| a.node_id.as_str()), Some("a1"));
        assert!(can_place(any(&none), &agents, &one_left));
    }

    #[test]
    fn no_agents_no_candidate() {
        let none = selector(&[]);
        assert!(choose_agent(any(&none), &BTreeMap::new(), &load(&[])).is_none());
        assert!(!can_place(any(&none), &BTreeMap::new(), &load(&[])));
    }
    fn fleet_of(agents: &BTreeMap<String, Agent>, l: &Load) -> Fleet {
        let mut f = Fleet::default();
        for (id, a) in agents {
            f.upsert(id, Slot::of(a, 1));
        }
        for (id, n) in l {
            f.add_load(id, i64::from(*n));
        }
        f
    }

    use crate::testing::Lcg;

    #[test]
    fn the_indexed_fleet_chooses_exactly_as_the_rules_say() {
        let label_sets: [&[(&str, &str)]; 4] = [
            &[],
            &[("role", "web")],
            &[("role", "web"), ("zone", "b")],
            &[("role", "db"), ("zone", "b")],
        ];
        let selectors = [
            selector(&[]),
            selector(&[("role", "web")]),
            selector(&[("zone", "b")]),
            selector(&[("role", "db"), ("zone", "b")]),
            selector(&[("role", "web"), ("zone", "b")]),
            selector(&[("gpu", "yes")]),
            Selector::parse("role in (web,db)").unwrap(),
            Selector::parse("role in (db)").unwrap(),
            Selector::parse("!zone").unwrap(),
            Selector::parse("zone!=b").unwrap(),
            Selector::parse("zone=c,role=web").unwrap(),
            Selector::parse("fact.cpus>=3").unwrap(),
            Selector::parse("role=web,fact.cpus<3").unwrap(),
            Selector::parse("fact.ips!=10.0.0.1").unwrap(),
        ];
        let states = [
            AgentState::Online,
            AgentState::Unreachable,
            AgentState::Dead,
        ];
        for seed in 0..200 {
            let mut rng = Lcg(seed);
            let n = 1 + rng.next(40) as usize;
            let agents = fleet(
                (0..n)
                    .map(|i| {
                        let mut a = agent(
                            &format!("a{i:02}"),
                            rng.next(4) as u32,
                            states[rng.next(3) as usize],
                            label_sets[rng.next(4) as usize],
                        );
                        // Admin labels override declared ones in both answers.
                        if rng.next(3) == 0 {
                            a.admin_labels.insert("zone".into(), "c".into());
                        }
                        // An agent that reports no facts (the view keeps none for it).
                        if rng.next(4) == 0 {
                            a.facts = Facts::default();
                        }
                        if rng.next(5) == 0 {
                            a.facts.ips = vec!["10.0.0.1".into()];
                        }
                        a
                    })
                    .collect(),
            );
            let mut l = Load::new();
            for i in 0..n {
                let k = rng.next(4) as u32;
                if k > 0 && rng.next(2) == 0 {
                    l.insert(format!("a{i:02}"), k);
                }
            }
            let mut f = fleet_of(&agents, &l);
            // Assign one job after another, as a pass does, and compare at every step.
            for _ in 0..30 {
                let sel = &selectors[rng.next(selectors.len() as u64) as usize];
                let pin = (rng.next(4) == 0).then(|| format!("a{:02}", rng.next(n as u64 + 2)));
                let w = Wants {
                    node_id: pin.as_ref(),
                    selector: sel,
                };
                let want = choose_agent(w, &agents, &l).map(|a| a.node_id.clone());
                assert_eq!(f.choose(w), want, "seed {seed}, {w:?}");
                assert_eq!(f.any_free(), any_free(&agents, &l), "seed {seed}");
                let Some(id) = want else { continue };
                f.add_load(&id, 1);
                *l.entry(id).or_default() += 1;
            }
            for a in agents.values() {
                assert_eq!(f.free_slots(&a.node_id), free_slots(a, &l));
            }
            assert_eq!(
                f.by_state(),
                count_by_state(agents.values().map(|a| a.state))
            );
            assert_eq!(
                f.in_flight(),
                l.values().map(|n| u64::from(*n)).sum::<u64>()
            );
        }
    }

    #[test]
    fn labels_are_found_by_key() {
        let labels = Labels::from(BTreeMap::from(
            [("zone", "b"), ("role", "web"), ("a", "1"), ("tier", "")]
                .map(|(k, v)| (k.to_string(), v.to_string())),
        ));
        for (k, v) in [("zone", "b"), ("role", "web"), ("a", "1"), ("tier", "")] {
            assert_eq!(labels.get(k), Some(v));
        }
        for k in ["", "b", "rol", "zones", "zz"] {
            assert_eq!(labels.get(k), None, "{k}");
        }
        assert_eq!(Labels::default().get("zone"), None);
    }

    #[test]
    fn agents_that_change_are_reindexed() {
        let mut f = Fleet::default();
        let web = selector(&[("role", "web")]);
        f.upsert(
            "a1",
            Slot::of(&agent("a1", 1, AgentState::Online, &[("role", "web")]), 1),
        );
        assert_eq!(f.choose(any(&web)), Some("a1".into()));
        // Its labels change: it no longer carries the selector.
        f.upsert(
            "a1",
            Slot::of(&agent("a1", 1, AgentState::Online, &[("role", "db")]), 2),
        );
        assert_eq!(f.choose(any(&web)), None);
        assert_eq!(f.choose(any(&selector(&[]))), Some("a1".into()));
        // Unreachable: no room.
        f.upsert(
            "a1",
            Slot::of(&agent("a1", 1, AgentState::Unreachable, &[]), 3),
        );
        assert!(!f.any_free());
        f.upsert("a1", Slot::of(&agent("a1", 1, AgentState::Online, &[]), 4));
        f.add_load("a1", 1);
        assert!(!f.any_free());
        f.add_load("a1", -1);
        assert!(f.any_free());
        f.remove("a1");
        assert!(!f.any_free());
        assert_eq!(f, Fleet::default());
    }

    #[test]
    fn the_fleet_counts_its_agents_by_state_as_they_change() {
        let mut f = Fleet::default();
        assert_eq!(f.by_state(), [0, 0, 0]);
        for (i, (id, state)) in [
            ("a1", AgentState::Online),
            ("a2", AgentState::Online),
            ("a3", AgentState::Unreachable),
            ("a4", AgentState::Dead),
        ]
        .into_iter()
        .enumerate()
        {
            f.upsert(id, Slot::of(&agent(id, 1, state, &[]), i as u64));
        }
        assert_eq!(f.by_state(), [2, 1, 1]);
        f.upsert("a1", Slot::of(&agent("a1", 1, AgentState::Dead, &[]), 9));
        f.remove("a3");
        assert_eq!(f.by_state(), [1, 0, 2]);
    }

    fn pending(priority: i32, node_id: Option<&str>, sel: &[(&str, &str)]) -> Pending {
        Pending {
            priority,
            node_id: node_id.map(str::to_string),
            selector: selector(sel),
        }
    }

    #[test]
    fn a_plan_spreads_a_pass_over_free_slots_and_respects_its_bounds() {
        let agents = fleet(vec![
            agent("a1", 2, AgentState::Online, &[("role", "web")]),
            agent("a2", 2, AgentState::Online, &[]),
            agent("a3", 4, AgentState::Dead, &[("role", "web")]),
        ]);
        let mut f = fleet_of(&agents, &load(&[]));
        let queue = [
            ("j1", pending(0, None, &[])),
            ("j2", pending(0, Some("away"), &[])),
            ("j3", pending(0, None, &[("role", "web")])),
            ("j4", pending(0, None, &[])),
            ("j5", pending(0, None, &[("role", "web")])),
            ("j6", pending(0, None, &[])),
            ("j7", pending(0, None, &[])),
        ];
        let q = || queue.iter().map(|(id, p)| (*id, p));
        let budget = Budget {
            in_flight: 0,
            max_running: None,
            max_assign: 100,
        };
        let planned = plan(&mut f, q(), budget, &HashSet::new());
        // Least loaded first (ties by node id); a pinned job for an absent agent, and a web job
        // once the only web agent is full, are passed over; four free slots, four jobs.
        let got: Vec<(&str, &str)> = planned
            .iter()
            .map(|(j, a)| (j.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            got,
            [("j1", "a1"), ("j3", "a1"), ("j4", "a2"), ("j6", "a2")]
        );
        assert_eq!(planned.len(), 4);
        assert!(!f.any_free());
        assert_eq!((f.load("a1"), f.load("a2")), (2, 2));

        // max_running counts what is in flight already; skipped jobs are passed over.
        let mut f = fleet_of(&agents, &load(&[]));
        let capped = Budget {
            in_flight: 1,
            max_running: Some(3),
            ..budget
        };
        let skip: HashSet<String> = ["j1".to_string()].into();
        let planned = plan(&mut f, q(), capped, &skip);
        let ids: Vec<&str> = planned.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(ids, ["j3", "j4"]);
        // max_assign bounds the pass.
        let mut f = fleet_of(&agents, &load(&[]));
        let one = Budget {
            max_assign: 1,
            ..budget
        };
        assert_eq!(plan(&mut f, q(), one, &HashSet::new()).len(), 1);
    }
}
