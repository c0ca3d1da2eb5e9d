//! The tenant's event log: one record per change worth telling (a job submitted, started or
//! finished; an agent registered, online, unreachable or dead; a desired state compliant,
//! drifted, repaired or failed; a token revoked; a rollout created, paused, resumed, halted or
//! finished, one of its targets started or finished; a schedule's slot fired, skipped or
//! missed), written in the same store transaction as the
//! change it reports.
//!
//! A writer adds an event to its transaction with [`record`]; the store places it with an
//! [`Op::Append`](crate::store::Op::Append) at `events/{revision:020}/{index:04}`, the revision
//! that transaction commits at. An event's [`Position`] is that revision and index: readers page
//! the log in path order, which is commit order, and resume strictly after a position.
//!
//! The log is bounded: [`collect`] (run by the leader's retention, fenced) deletes the oldest
//! events past a count or an age and raises the log's *floor* in the same transaction. A reader
//! asking for events after a position below the floor gets [`EventError::Gone`]: some of what it
//! missed is no longer kept, and it must list again.
//!
//! Guarantees:
//! - An event exists if and only if the change it reports committed (same transaction), so the
//!   log never misses nor invents a change written through [`record`]. A token revocation is
//!   kept in the cluster's own tenant, which one transaction cannot join with the tenant's log:
//!   its event is staged in the revocation's transaction and moved into the log exactly once
//!   afterwards ([`outbox`]), by the revoking call or the leader's next sweep.
//! - Events are read in commit order; [`read`] after a position returns each later event once.
//! - A read after a position below the floor fails with [`EventError::Gone`]; it never silently
//!   skips collected events.
//! - Filters ([`Filter`]) are checked on plain data; unknown types are refused by name.

pub mod kinds;
pub mod outbox;
pub mod sse;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Agent, FactValue, Job, JobStatus, Millis};
use crate::selector::{Selector, Subject, effective_labels};
use crate::store::{Expect, Key, Range, Store, StoreError, Txn, Version};

/// Prefix of the tenant's event log.
pub const EVENTS: &str = "events/";
/// The log's floor: every event at or below this revision may have been collected.
pub const EVENTS_FLOOR: &str = "events_floor";

/// Every event type.
pub const TYPES: &[&str] = &[
    "job.submitted",
    "job.started",
    "job.finished",
    "agent.registered",
    "agent.online",
    "agent.unreachable",
    "agent.dead",
    "state.compliant",
    "state.drifted",
    "state.repaired",
    "state.failed",
    "state.halted",
    "token.revoked",
    "rollout.created",
    "rollout.target_started",
    "rollout.target_finished",
    "rollout.paused",
    "rollout.resumed",
    "rollout.halted",
    "rollout.finished",
    "schedule.fired",
    "schedule.skipped",
    "schedule.missed",
];

/// Default most events kept per tenant.
pub const DEFAULT_MAX_EVENTS: u64 = 100_000;
/// Default longest an event is kept.
pub const DEFAULT_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "events after {requested} are no longer kept (the log starts after revision {floor}); list again and resume from a newer revision"
    )]
    Gone { requested: Version, floor: Version },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt event at {0}")]
    Corrupt(String),
}

pub type Result<T, E = EventError> = std::result::Result<T, E>;

/// One event as stored and as sent.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    /// The object it concerns: a job id, a node id, `state/node`, a token id.
    pub object: String,
    /// The agent concerned, if any.
    pub node_id: Option<String>,
    /// The agent's labels (declared, overlaid by admin labels) when the event is about an agent;
    /// what a selector filter matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub at: Millis,
    /// Type-specific details (status, exit code, ...).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(kind: &'static str, object: impl Into<String>, at: Millis) -> Event {
        debug_assert!(TYPES.contains(&kind), "unknown event type {kind}");
        Event {
            kind: kind.to_string(),
            object: object.into(),
            node_id: None,
            labels: BTreeMap::new(),
            at,
            data: serde_json::Value::Null,
        }
    }

    pub fn data(mut self, data: serde_json::Value) -> Event {
        self.data = data;
        self
    }

    /// The event of a job write from `old` (`None`: the job is new) to `new`, if it is one:
    /// submitted, started (now running), finished (now terminal).
    pub fn of_job(old: Option<&Job>, new: &Job) -> Option<Event> {
        let kind = match (old.map(|o| o.status), new.status) {
            (None, _) => "job.submitted",
            (Some(o), n) if n.is_terminal() && !o.is_terminal() => "job.finished",
            (Some(o), JobStatus::Running) if o != JobStatus::Running => "job.started",
            _ => return None,
        };
        let mut e = Event::new(kind, new.job_id.clone(), new.updated_at);
        e.node_id = new.agent.clone().or_else(|| new.node_id.clone());
        e.data = serde_json::json!({
            "status": new.status.as_str(),
            "kind": new.kind,
            "exit_code": new.exit_code,
            "signal": new.signal,
            "error": new.error,
            "attempt": new.attempts,
            "group": new.group,
        });
        Some(e)
    }

    /// An event about an agent.
    pub fn of_agent(kind: &'static str, agent: &Agent, at: Millis) -> Event {
        let mut e = Event::new(kind, agent.node_id.clone(), at);
        e.node_id = Some(agent.node_id.clone());
        e.labels = effective_labels(&agent.labels, &agent.admin_labels);
        e.data = serde_json::json!({ "state": agent.state.as_str(), "hostname": agent.hostname });
        e
    }
}

impl Subject for Event {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
    fn fact(&self, _name: &str) -> Option<FactValue<'_>> {
        None
    }
}

/// Adds `event` to `txn`: it commits with the transaction, at its revision, or not at all.
pub fn record(txn: &mut Txn, tenant: &str, event: &Event) -> Result<(), StoreError> {
    let key = Key::new(tenant, EVENTS)?;
    let body = serde_json::to_vec(event).expect("events serialize");
    txn.ops.push(crate::store::Op::Append { key, value: body });
    Ok(())
}

/// Where an event sits in the log: the revision of its transaction and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub revision: Version,
    /// `None`: after every event of `revision`.
    pub index: Option<u32>,
}

impl Position {
    /// Parses `REV` (after every event of that revision) or `REV.INDEX` (after that event).
    pub fn parse(s: &str) -> Result<Position> {
        let bad = || {
            EventError::Invalid(format!(
                "since: {:?} is not an event id (REVISION or REVISION.INDEX)",
                clip(s)
            ))
        };
        let (r, i) = match s.split_once('.') {
            Some((r, i)) => (r, Some(i)),
            None => (s, None),
        };
        let revision = r.parse::<u64>().map_err(|_| bad())?;
        let index = match i {
            Some(i) => Some(i.parse::<u32>().map_err(|_| bad()).and_then(|i| {
                if i < crate::store::MAX_APPENDS as u32 {
                    Ok(i)
                } else {
                    Err(bad())
                }
            })?),
            None => None,
        };
        Ok(Position { revision, index })
    }

    /// The id an SSE event carries: `REV.INDEX`.
    pub fn id(&self) -> String {
        format!("{}.{}", self.revision, self.index.unwrap_or_default())
    }

    /// The log path a read after this position starts after.
    fn cursor(&self) -> String {
        match self.index {
            Some(i) => crate::store::append_path(EVENTS, self.revision, i as usize),
            // Above every index of the revision.
            None => format!("{EVENTS}{:020}/~", self.revision),
        }
    }

    /// The position of a log path.
    pub fn of_path(path: &str) -> Option<Position> {
        let rest = path.strip_prefix(EVENTS)?;
        let (r, i) = rest.split_once('/')?;
        Some(Position {
            revision: r.parse().ok()?,
            index: Some(i.parse().ok()?),
        })
    }
}

/// An event read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub position: Position,
    pub event: Event,
}

/// The wire form of an event: the event and where it sits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventView {
    pub id: String,
    pub revision: Version,
    #[serde(flatten)]
    pub event: Event,
}

impl Logged {
    pub fn view(&self) -> EventView {
        EventView {
            id: self.position.id(),
            revision: self.position.revision,
            event: self.event.clone(),
        }
    }
}

/// The log's bookkeeping, kept by the collector: the floor, and how many events it has counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    /// Every event at or below this revision may have been collected.
    pub floor: Version,
    /// The last event path counted into `count`.
    #[serde(default)]
    pub counted_to: Option<String>,
    /// Events in the log up to `counted_to`.
    #[serde(default)]
    pub count: u64,
}

/// The log state of `tenant` and its version.
pub async fn log_state(store: &dyn Store, tenant: &str) -> Result<(LogState, Option<Version>)> {
    let k = Key::new(tenant, EVENTS_FLOOR)?;
    Ok(match store.get(&k).await? {
        None => (LogState::default(), None),
        Some(v) => (
            serde_json::from_slice(&v.value).map_err(|_| EventError::Corrupt(k.to_string()))?,
            Some(v.version),
        ),
    })
}

/// The floor of `tenant`'s log (0 when nothing was ever collected).
pub async fn floor(store: &dyn Store, tenant: &str) -> Result<(Version, Option<Version>)> {
    let (st, v) = log_state(store, tenant).await?;
    Ok((st.floor, v))
}

/// Up to `limit` events of `tenant` strictly after `after`, in commit order. Fails with
/// [`EventError::Gone`] when `after` is below the floor. The floor is read after the page, so a
/// page read while a collection commits is never taken as complete.
pub async fn read(
    store: &dyn Store,
    tenant: &str,
    after: Position,
    limit: usize,
) -> Result<Vec<Logged>> {
    let page = store
        .list_range(tenant, &Range::first(EVENTS, limit).after(after.cursor()))
        .await?;
    let (floor, _) = floor(store, tenant).await?;
    if after.revision < floor {
        return Err(EventError::Gone {
            requested: after.revision,
            floor,
        });
    }
    page.into_iter()
        .map(|e| {
            let position = Position::of_path(e.key.path())
                .ok_or_else(|| EventError::Corrupt(e.key.to_string()))?;
            let event = serde_json::from_slice(&e.value)
                .map_err(|_| EventError::Corrupt(e.key.to_string()))?;
            Ok(Logged { position, event })
        })
        .collect()
}

/// The newest position of `tenant`'s log (the default start of a live stream), or the floor's
/// when the log is empty.
pub async fn head(store: &dyn Store, tenant: &str) -> Result<Position> {
    let last = store
        .list_range(tenant, &Range::last(EVENTS, 1))
        .await?
        .into_iter()
        .next();
    Ok(match last.and_then(|e| Position::of_path(e.key.path())) {
        Some(p) => p,
        None => Position {
            revision: floor(store, tenant).await?.0,
            index: None,
        },
    })
}

/// At most 40 characters of a caller's input, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// One pattern of a type filter: an exact type or `prefix.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TypePattern {
    Exact(String),
    Prefix(String),
}

/// What a reader wants: types (empty: all), one object, agents matching a selector.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    types: Vec<TypePattern>,
    pub object: Option<String>,
    pub selector: Option<Selector>,
}

/// The known types to name in a refusal of `t`: those of its family (`job.exploded` names the
/// `job.*` types), or else one wildcard per family, so that the message stays short however
/// many types there are.
fn known_like(t: &str) -> String {
    let family = t.split('.').next().unwrap_or_default();
    let same: Vec<&str> = TYPES
        .iter()
        .copied()
        .filter(|k| k.split('.').next() == Some(family))
        .collect();
    if !same.is_empty() && !t.ends_with(".*") {
        return same.join(", ");
    }
    let mut families: Vec<String> = Vec::new();
    for k in TYPES {
        let f = format!("{}.*", k.split('.').next().unwrap_or_default());
        if !families.contains(&f) {
            families.push(f);
        }
    }
    families.join(", ")
}

impl Filter {
    /// Parses a comma-separated type list (`job.finished,state.*`); an unknown type or a
    /// wildcard matching none is refused by name.
    pub fn with_types(mut self, list: &str) -> Result<Filter> {
        for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let p = match t.strip_suffix(".*") {
                Some(pre) => {
                    let dotted = format!("{pre}.");
                    if !TYPES.iter().any(|k| k.starts_with(&dotted)) {
                        return Err(EventError::Invalid(format!(
                            "type: {:?} matches no event type (known: {})",
                            clip(t),
                            known_like(t)
                        )));
                    }
                    TypePattern::Prefix(dotted)
                }
                None if t == "*" => continue,
                None if TYPES.contains(&t) => TypePattern::Exact(t.to_string()),
                None => {
                    return Err(EventError::Invalid(format!(
                        "type: unknown event type {:?} (known: {})",
                        clip(t),
                        known_like(t)
                    )));
                }
            };
            self.types.push(p);
        }
        Ok(self)
    }

    pub fn matches(&self, e: &Event) -> bool {
        let typed = self.types.is_empty()
            || self.types.iter().any(|p| match p {
                TypePattern::Exact(t) => *t == e.kind,
                TypePattern::Prefix(pre) => e.kind.starts_with(pre.as_str()),
            });
        let object = self.object.as_ref().is_none_or(|o| *o == e.object);
        let selected = self
            .selector
            .as_ref()
            .is_none_or(|s| e.node_id.is_some() && s.matches(e));
        typed && object && selected
    }
}

/// How far past its bounds the log may grow to keep events a webhook has not yet delivered.
pub const PENDING_HOLD: u64 = 2;

/// How much of the log is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_events: u64,
    pub max_age_ms: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_events: DEFAULT_MAX_EVENTS,
            max_age_ms: DEFAULT_MAX_AGE_MS,
        }
    }
}

/// Pure: of the oldest events (`oldest`, in log order, with their time), how many to collect,
/// given how many the log holds in all (`total`, at least `oldest.len()`).
pub fn to_collect(oldest: &[Millis], total: u64, bounds: Bounds, now: Millis) -> usize {
    let over = total.saturating_sub(bounds.max_events) as usize;
    let aged = oldest
        .iter()
        .take_while(|at| now.saturating_sub(**at) > bounds.max_age_ms)
        .count();
    over.max(aged).min(oldest.len())
}

/// One collection pass over `tenant`'s log under `epoch`: counts up to `batch` events written
/// since the last pass, deletes up to `batch` of the oldest events past the bounds (whole
/// revisions only, so the floor says exactly what is gone) and raises the floor to the newest
/// revision deleted, in one fenced transaction with the log state. Returns how many it deleted.
pub async fn collect(
    store: &dyn Store,
    tenant: &str,
    epoch: crate::store::Epoch,
    bounds: Bounds,
    batch: usize,
    now: Millis,
) -> Result<usize> {
    // A revision can hold more events than a batch (a rollout step that starts many targets):
    // when the oldest one should go and does not fit, the pass reads again with a larger
    // batch, so that collection never stops behind it.
    let mut b = batch.max(1);
    loop {
        match collect_batch(store, tenant, epoch, bounds, b, now).await? {
            Some(n) => return Ok(n),
            None if b < MAX_REVISION_BATCH => b = (b * 2).min(MAX_REVISION_BATCH),
            None => return Ok(0),
        }
    }
}

/// The largest batch a collection pass grows to for one revision's events.
const MAX_REVISION_BATCH: usize = 1 << 16;

/// One collection batch; `None` when the oldest revision should go but is larger than `batch`.
async fn collect_batch(
    store: &dyn Store,
    tenant: &str,
    epoch: crate::store::Epoch,
    bounds: Bounds,
    batch: usize,
    now: Millis,
) -> Result<Option<usize>> {
    let (mut st, sv) = log_state(store, tenant).await?;
    let mut range = Range::first(EVENTS, batch);
    if let Some(c) = &st.counted_to {
        range = range.after(c.clone());
    }
    let fresh = store.list_range(tenant, &range).await?;
    let counted_more = !fresh.is_empty();
    if let Some(last) = fresh.last() {
        st.count += fresh.len() as u64;
        st.counted_to = Some(last.key.path().to_string());
    }
    // One past the batch: whether the last revision read goes on beyond it.
    let full = store
        .list_range(tenant, &Range::first(EVENTS, batch + 1))
        .await?;
    let page = &full[..full.len().min(batch)];
    // Only counted events may go, so that the count stays exact; and none that a webhook has
    // still to deliver (each gives up on an event after its attempts, so this is bounded).
    let pending = crate::webhooks::oldest_pending(store, tenant)
        .await
        .map_err(|e| match e {
            crate::webhooks::WebhookError::Store(s) => EventError::Store(s),
            other => EventError::Corrupt(other.to_string()),
        })?;
    let counted = page
        .iter()
        .take_while(|e| st.counted_to.as_deref().is_some_and(|c| e.key.path() <= c))
        .count();
    let page = &page[..counted];
    let guarded = page
        .iter()
        .take_while(|e| {
            pending.is_none_or(|p| Position::of_path(e.key.path()).is_some_and(|q| q <= p))
        })
        .count();
    let times: Vec<Millis> = page
        .iter()
        .map(|e| {
            serde_json::from_slice::<Event>(&e.value)
                .map(|ev| ev.at)
                .unwrap_or(0)
        })
        .collect();
    // The webhooks' guard holds up to a bound: past PENDING_HOLD times the count or the age,
    // events go even undelivered (the webhook resumes at the floor), so that one dead
    // receiver cannot make the log grow without end.
    let hard = Bounds {
        max_events: bounds.max_events.saturating_mul(PENDING_HOLD),
        max_age_ms: bounds.max_age_ms.saturating_mul(PENDING_HOLD),
    };
    let mut n = to_collect(&times, st.count, bounds, now)
        .min(guarded)
        .max(to_collect(&times, st.count, hard, now));
    // Whole revisions only: back off while the next event (read or not) shares the
    // revision of the last one to go, so the floor never leaves part of a revision behind.
    let rev = |i: usize| Position::of_path(full[i].key.path()).map(|p| p.revision);
    let wanted = n;
    while n > 0 && n < full.len() && rev(n) == rev(n - 1) {
        n -= 1;
    }
    if n == 0 && wanted > 0 && wanted == page.len() && full.len() > page.len() {
        // The whole batch is one revision that goes on past it.
        return Ok(None);
    }
    if n == 0 && !counted_more {
        return Ok(Some(0));
    }
    let mut txn = Txn::new().fenced(epoch);
    if n > 0 {
        let top = rev(n - 1).ok_or_else(|| EventError::Corrupt(page[n - 1].key.to_string()))?;
        st.floor = st.floor.max(top);
        st.count = st.count.saturating_sub(n as u64);
        for e in &page[..n] {
            txn = txn.delete(e.key.clone(), Expect::Version(e.version));
        }
        if n > guarded {
            // Past the webhooks' guard: each webhook behind gets a durable `dropped` record
            // and its cursor moved past what went, in this same transaction.
            let deleted: Vec<Logged> = page[..n]
                .iter()
                .filter_map(|e| {
                    Some(Logged {
                        position: Position::of_path(e.key.path())?,
                        event: serde_json::from_slice(&e.value).ok()?,
                    })
                })
                .collect();
            crate::webhooks::record_dropped(store, tenant, &deleted, &mut txn, now)
                .await
                .map_err(|e| match e {
                    crate::webhooks::WebhookError::Store(s) => EventError::Store(s),
                    other => EventError::Corrupt(other.to_string()),
                })?;
        }
    }
    txn = txn.put(
        Key::new(tenant, EVENTS_FLOOR)?,
        serde_json::to_vec(&st).expect("log state serializes"),
        sv.map_or(Expect::Absent, Expect::Version),
    );
    store.commit(txn).await?;
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The positions of the events tenant `t` still has.
    async fn positions_left(store: &dyn Store) -> Vec<Position> {
        store
            .list("t", EVENTS)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| Position::of_path(e.key.path()))
            .collect()
    }

    /// One transaction on tenant `t`: job `j{r}` and `n` events, all at one revision.
    async fn commit_revision(store: &dyn Store, r: usize, n: usize) {
        let mut txn = Txn::new().put(
            Key::new("t", format!("jobs/j{r}")).unwrap(),
            b"{}".to_vec(),
            Expect::Absent,
        );
        for i in 0..n {
            record(
                &mut txn,
                "t",
                &Event::new("job.submitted", format!("j{r}.{i}"), 1),
            )
            .unwrap();
        }
        store.commit(txn).await.unwrap();
    }

    #[test]
    fn a_refused_type_names_its_family_or_the_families_briefly() {
        let msg = |t: &str| match Filter::default().with_types(t) {
            Err(EventError::Invalid(m)) => m,
            other => panic!("{t}: {other:?}"),
        };
        let m = msg("job.exploded");
        assert!(
            m.contains("job.finished") && !m.contains("agent.dead"),
            "{m}"
        );
        let m = msg("nothing.*");
        assert!(m.contains("job.*") && m.contains("schedule.*"), "{m}");
        assert!(!m.contains("job.finished"), "{m}");
        let m = msg("nothing");
        assert!(m.contains("rollout.*"), "{m}");
    }

    /// A webhook that never delivers holds back collection only up to PENDING_HOLD times the
    /// bound: the log stops growing there instead of without end.
    #[tokio::test]
    async fn an_undelivering_webhook_holds_the_log_only_up_to_its_hard_bound() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let epoch = store.next_epoch().await.unwrap();
        // A webhook whose cursor sits before every event.
        store
            .put(
                Key::new("t", format!("{}ci", crate::webhooks::CURSORS)).unwrap(),
                serde_json::to_vec(&crate::webhooks::Cursor::default()).unwrap(),
                Expect::Absent,
            )
            .await
            .unwrap();
        for i in 0..20 {
            commit_revision(store.as_ref(), i, 1).await;
        }
        let bounds = Bounds {
            max_events: 5,
            max_age_ms: u64::MAX / 4,
        };
        let mut deleted = 0;
        for _ in 0..10 {
            deleted += collect(store.as_ref(), "t", epoch, bounds, 100, 2)
                .await
                .unwrap();
        }
        assert_eq!(
            deleted, 10,
            "collected down to twice the bound, not to the bound"
        );
        assert_eq!(store.list("t", EVENTS).await.unwrap().len(), 10);
    }

    /// A batch that ends inside a revision collects only the whole revisions before it: no
    /// event is left at or below the floor (where a reader starting at the floor would never
    /// see it).
    #[tokio::test]
    async fn collection_takes_whole_revisions_even_when_the_batch_ends_inside_one() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let epoch = store.next_epoch().await.unwrap();
        for r in 0..3 {
            commit_revision(store.as_ref(), r, 3).await;
        }
        let bounds = Bounds {
            max_events: 0,
            max_age_ms: u64::MAX / 4,
        };
        for _ in 0..4 {
            collect(store.as_ref(), "t", epoch, bounds, 4, 2)
                .await
                .unwrap();
            let (floor, _) = floor(store.as_ref(), "t").await.unwrap();
            let left = positions_left(store.as_ref()).await;
            assert!(
                left.iter().all(|p| p.revision > floor),
                "events at or below the floor {floor}: {left:?}"
            );
            assert_eq!(left.len() % 3, 0, "whole revisions: {left:?}");
        }
    }

    /// A revision with more events than a batch (a rollout step starting many targets) is
    /// collected whole once it is past the bounds, instead of stopping collection behind it.
    #[tokio::test]
    async fn a_revision_larger_than_the_batch_does_not_stop_collection() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let epoch = store.next_epoch().await.unwrap();
        let batch = 4;
        for (r, n) in [(0, batch + 5), (1, 2)] {
            commit_revision(store.as_ref(), r, n).await;
        }
        let bounds = Bounds {
            max_events: 2,
            max_age_ms: u64::MAX / 4,
        };
        let mut gone = 0;
        for _ in 0..4 {
            gone += collect(store.as_ref(), "t", epoch, bounds, batch, 2)
                .await
                .unwrap();
        }
        assert_eq!(gone, batch + 5, "the large revision went whole");
        let left = positions_left(store.as_ref()).await;
        let (floor, _) = floor(store.as_ref(), "t").await.unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().all(|p| p.revision > floor), "{floor} {left:?}");
    }

    fn ev(kind: &'static str, object: &str) -> Event {
        Event::new(kind, object, 1)
    }

    #[test]
    fn positions_parse_and_order() {
        assert_eq!(
            Position::parse("12").unwrap(),
            Position {
                revision: 12,
                index: None
            }
        );
        let p = Position::parse("12.3").unwrap();
        assert_eq!(p.id(), "12.3");
        assert!(Position::parse("x").is_err());
        assert!(Position::parse("-1").is_err());
        assert!(Position::parse("1.99999").is_err());
        assert!(Position::parse("").is_err());
        // After a whole revision sorts after each of its events.
        let whole = Position::parse("12").unwrap().cursor();
        assert!(whole > crate::store::append_path(EVENTS, 12, 9999));
        assert!(whole < crate::store::append_path(EVENTS, 13, 0));
        assert_eq!(
            Position::of_path(&crate::store::append_path(EVENTS, 12, 3)),
            Some(p)
        );
    }

    #[test]
    fn type_filters_take_wildcards_and_refuse_unknown_types() {
        let f = Filter::default().with_types("job.*,agent.dead").unwrap();
        assert!(f.matches(&ev("job.finished", "j")));
        assert!(f.matches(&ev("agent.dead", "a")));
        assert!(!f.matches(&ev("agent.online", "a")));
        assert!(Filter::default().with_types("job.exploded").is_err());
        assert!(Filter::default().with_types("nothing.*").is_err());
        assert!(Filter::default().matches(&ev("state.failed", "s")));
        let f = Filter {
            object: Some("j1".into()),
            ..Filter::default()
        };
        assert!(f.matches(&ev("job.started", "j1")) && !f.matches(&ev("job.started", "j2")));
    }

    #[test]
    fn selectors_match_agent_labels_only() {
        let f = Filter {
            selector: Some(Selector::parse("role=web").unwrap()),
            ..Filter::default()
        };
        let mut e = ev("agent.online", "a1");
        e.node_id = Some("a1".into());
        e.labels.insert("role".into(), "web".into());
        assert!(f.matches(&e));
        e.labels.insert("role".into(), "db".into());
        assert!(!f.matches(&e));
        assert!(!f.matches(&ev("token.revoked", "t")));
    }

    #[test]
    fn collection_follows_count_and_age() {
        let b = Bounds {
            max_events: 3,
            max_age_ms: 100,
        };
        // Five events, all fresh: two over the count.
        assert_eq!(to_collect(&[900, 910, 920, 930, 940], 5, b, 950), 2);
        // Within the count, the aged ones go.
        assert_eq!(to_collect(&[100, 200, 900], 3, b, 950), 2);
        // Never more than what was read.
        assert_eq!(to_collect(&[900], 10, b, 950), 1);
        assert_eq!(to_collect(&[], 10, b, 950), 0);
    }

    #[test]
    fn job_writes_map_to_their_events() {
        let mut j: Job = serde_json::from_value(serde_json::json!({
            "job_id": "j1", "tenant": "acme", "command": {"shell": "true"},
            "env": {}, "secret_env": [], "timeout_secs": 60, "max_attempts": 1,
            "priority": 0, "selector": "", "kind": "user", "status": "queued",
            "created_at": 1, "updated_at": 1, "attempts": 0, "cancel_requested": false,
            "submitted_by": "admin"
        }))
        .expect("a job");
        assert_eq!(Event::of_job(None, &j).unwrap().kind, "job.submitted");
        let old = j.clone();
        j.status = JobStatus::Assigned;
        assert!(Event::of_job(Some(&old), &j).is_none());
        let old = j.clone();
        j.status = JobStatus::Running;
        assert_eq!(Event::of_job(Some(&old), &j).unwrap().kind, "job.started");
        let old = j.clone();
        j.status = JobStatus::Failed;
        j.exit_code = Some(3);
        let e = Event::of_job(Some(&old), &j).unwrap();
        assert_eq!(e.kind, "job.finished");
        assert_eq!(e.data["exit_code"], 3);
        assert_eq!(e.data["status"], "failed");
        assert!(Event::of_job(Some(&j.clone()), &j).is_none());
    }
}
