//! Wakes agents' task long-polls when their inbox changes.
//!
//! One subscription to the store's change notices serves every agent polling this node: a
//! notice wakes only the polls of the agents whose inbox it touches (all of them on a resync or
//! when the subscription lagged). Were each poll to watch the notices itself, every write —
//! agents' own heartbeats included — would wake every waiting poll: with N agents heartbeating,
//! N × N/interval wake-ups a second, which at 10,000 agents saturates the node.
//!
//! The table of watchers itself ([`WatchTable`]: by tenant and id, counted, unregistered on
//! drop) and the forwarding of the notices ([`forward_changes`]) also serve the job waits of
//! `waiters`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flux_core::jobs::{InboxMemory, inbox_memory};
use flux_core::store::Change;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// The agents with a task poll waiting on this node, and what the notices showed of every
/// agent's inbox.
#[derive(Default)]
pub struct Inboxes {
    /// Per agent (tenant, node id): what its polls wait on.
    waiting: Arc<WatchTable<Arc<Notify>>>,
    /// Taken in before a notice wakes anyone (see [`Inboxes::nothing_after`]).
    memory: Mutex<InboxMemory>,
}

/// A poll's registration; dropping it unregisters the poll.
pub struct InboxWatch {
    _registered: Registration<Arc<Notify>>,
    notify: Arc<Notify>,
}

impl InboxWatch {
    /// Notified when the agent's inbox may have changed. Enable the future (or poll it) before
    /// reading the inbox, so that a change committed after the read is not missed.
    /// The future owns what it waits on, so a poll can hand it on (to its reply's body).
    pub fn changed(&self) -> tokio::sync::futures::OwnedNotified {
        self.notify.clone().notified_owned()
    }
}

impl Inboxes {
    /// Registers a poll of `node`'s inbox in `tenant`.
    pub fn watch(self: &Arc<Self>, tenant: &str, node: &str) -> InboxWatch {
        let (registered, notify) = self.waiting.watch(tenant, node, Arc::clone);
        InboxWatch {
            _registered: registered,
            notify,
        }
    }

    /// Polls currently registered.
    #[cfg(test)]
    fn agents_waiting(&self) -> usize {
        self.waiting.watched()
    }

    fn memory(&self) -> MutexGuard<'_, InboxMemory> {
        self.memory.lock().unwrap_or_else(|p| {
            // A panic while it was held may have left half a notice in it: it starts again.
            let mut m = p.into_inner();
            m.forget();
            self.memory.clear_poison();
            m
        })
    }

    /// Whether `node`'s inbox in `tenant` certainly holds nothing written above `after`, so
    /// that a poll registered already ([`Inboxes::watch`], its future enabled) may skip its
    /// read: an entry the notices taken in so far do not show will wake it
    /// ([`flux_core::jobs::inbox_memory`]).
    pub fn nothing_after(&self, tenant: &str, node: &str, after: u64) -> bool {
        self.memory().nothing_after(tenant, node, after)
    }

    fn wake_all(&self) {
        self.memory().forget();
        self.waiting.for_each(|notify| notify.notify_waiters());
    }

    /// Wakes the polls a change concerns: those of the agents it gives an inbox entry to. An
    /// entry it deletes (the attempt's result recorded, the attempt taken back) gives the agent
    /// nothing to fetch, so it wakes nobody: every job's result would otherwise wake its
    /// agent's poll for a read that finds nothing.
    pub fn dispatch(&self, change: &Change) {
        if change.is_resync() {
            return self.wake_all();
        }
        // Into the memory first: a poll that finds the memory without this change was
        // registered before it, and is woken below.
        self.memory().note(change);
        self.waiting.dispatch(
            change,
            |path| inbox_memory::given_to(change, path).map(|node| (node, ())),
            |notify, ()| notify.notify_waiters(),
        );
    }

    /// Forwards the store's change notices until `cancel`. Once it stops (or fails), the
    /// memory is forgotten: with no more notices it would go stale, and polls read again.
    pub async fn run(
        self: Arc<Self>,
        changes: broadcast::Receiver<Arc<Change>>,
        cancel: CancellationToken,
    ) {
        struct Unfed<'a>(&'a Inboxes);
        impl Drop for Unfed<'_> {
            fn drop(&mut self) {
                self.0.memory().forget();
            }
        }
        let _unfed = Unfed(&self);
        forward_changes(self.as_ref(), changes, cancel).await
    }
}

/// Watchers by (tenant, id) with what they wait on (`W`) and how many are registered: the table
/// of [`Inboxes`] (by agent) and of `waiters::JobWaiters` (by job). A key's entry lives while
/// one of its registrations does.
pub struct WatchTable<W> {
    waiting: Mutex<HashMap<(String, String), (W, usize)>>,
}

impl<W> Default for WatchTable<W> {
    fn default() -> Self {
        WatchTable {
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

/// A watcher's registration in a [`WatchTable`]; dropping it unregisters the watcher.
pub struct Registration<W> {
    table: Arc<WatchTable<W>>,
    key: (String, String),
}

impl<W> Drop for Registration<W> {
    fn drop(&mut self) {
        let mut waiting = self.table.lock();
        if let Some((_, n)) = waiting.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.key);
            }
        }
    }
}

impl<W> WatchTable<W> {
    /// Never panics (a poisoned lock holds consistent counts: only `+= 1`, `-= 1`).
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), (W, usize)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a watcher of `id` in `tenant`, and takes what it waits on from the key's
    /// entry (`pick`).
    pub fn watch<T>(
        self: &Arc<Self>,
        tenant: &str,
        id: &str,
        pick: impl FnOnce(&W) -> T,
    ) -> (Registration<W>, T)
    where
        W: Default,
    {
        let key = (tenant.to_string(), id.to_string());
        let mut waiting = self.lock();
        let entry = waiting.entry(key.clone()).or_default();
        entry.1 += 1;
        let picked = pick(&entry.0);
        let registered = Registration {
            table: self.clone(),
            key,
        };
        (registered, picked)
    }

    /// Keys with a watcher registered.
    #[cfg(test)]
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    /// Calls `f` on what every key's watchers wait on.
    pub fn for_each(&self, mut f: impl FnMut(&W)) {
        for (w, _) in self.lock().values() {
            f(w);
        }
    }

    /// Calls `wake` on what the watchers of each id of `change`'s tenant wait on, for every
    /// path of the change that `id_of` names an id in (with what kind of path it is).
    pub fn dispatch<'c, K>(
        &self,
        change: &'c Change,
        id_of: impl Fn(&'c str) -> Option<(&'c str, K)>,
        wake: impl Fn(&W, K),
    ) {
        let waiting = self.lock();
        if waiting.is_empty() {
            return;
        }
        let mut key = (change.tenant.clone(), String::new());
        for path in &change.paths {
            let Some((id, kind)) = id_of(path) else {
                continue;
            };
            id.clone_into(&mut key.1);
            if let Some((w, _)) = waiting.get(&key) {
                wake(w, kind);
            }
        }
    }
}

impl ChangeHub for Inboxes {
    fn dispatch(&self, change: &Change) {
        Inboxes::dispatch(self, change)
    }
    fn wake_all(&self) {
        Inboxes::wake_all(self)
    }
}

/// A table of watchers woken by the store's change notices (agent inboxes, job waits).
pub trait ChangeHub {
    /// Wakes the watchers a change concerns.
    fn dispatch(&self, change: &Change);
    /// Wakes every watcher (notices were lost, or no more will come).
    fn wake_all(&self);
}

/// Forwards the store's change notices to `hub` until `cancel`. Lost notices wake everyone;
/// once the stream ends everyone is woken one last time, and watchers fall back to their
/// deadlines.
pub async fn forward_changes(
    hub: &impl ChangeHub,
    mut changes: broadcast::Receiver<Arc<Change>>,
    cancel: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            c = changes.recv() => c,
        };
        match change {
            Ok(c) => hub.dispatch(&c),
            Err(broadcast::error::RecvError::Lagged(_)) => hub.wake_all(),
            Err(broadcast::error::RecvError::Closed) => {
                hub.wake_all();
                return;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;
    use tokio::sync::futures::Notified;

    /// A change notice of `tenant` touching `paths`.
    pub(crate) fn change(tenant: &str, paths: &[&str]) -> Change {
        Change {
            tenant: tenant.into(),
            revision: 1,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            deleted: Vec::new(),
        }
    }

    /// Whether `changed` fires (within 50 ms) once `after` has run.
    pub(crate) async fn woken_by(changed: Notified<'_>, after: impl FnOnce()) -> bool {
        tokio::pin!(changed);
        changed.as_mut().enable();
        after();
        tokio::time::timeout(Duration::from_millis(50), changed)
            .await
            .is_ok()
    }

    /// Sends `notices` into a channel of one, so that the forwarder `run` starts (on the
    /// receiving end, until its token is cancelled) lags, and waits until `changed` fires.
    pub(crate) async fn lag_wakes<F: Future<Output = ()> + Send + 'static>(
        changed: Notified<'_>,
        notices: [Change; 2],
        run: impl FnOnce(broadcast::Receiver<Arc<Change>>, CancellationToken) -> F,
    ) {
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (tx, rx) = broadcast::channel(1);
        for n in notices {
            tx.send(Arc::new(n)).unwrap();
        }
        let cancel = CancellationToken::new();
        let run = tokio::spawn(run(rx, cancel.clone()));
        tokio::time::timeout(Duration::from_secs(5), changed)
            .await
            .expect("woken after a lag");
        cancel.cancel();
        run.await.unwrap();
    }

    async fn woken(w: &InboxWatch, after: impl FnOnce()) -> bool {
        woken_by(w.notify.notified(), after).await
    }

    #[tokio::test]
    async fn only_the_agent_whose_inbox_changed_is_woken() {
        let hub = Arc::new(Inboxes::default());
        let a = hub.watch("t1", "a");
        let b = hub.watch("t1", "b");
        let other_tenant = hub.watch("t2", "a");
        let inbox_a = change("t1", &["jobs/j1", "inbox/a/j1.1"]);
        assert!(woken(&a, || hub.dispatch(&inbox_a)).await);
        assert!(!woken(&b, || hub.dispatch(&inbox_a)).await);
        assert!(!woken(&other_tenant, || hub.dispatch(&inbox_a)).await);
        // Writes outside inboxes (heartbeats: agents/a) wake nobody.
        assert!(!woken(&a, || hub.dispatch(&change("t1", &["agents/a"]))).await);
        // An entry deleted (a result recorded) gives nothing to fetch; one written does, in
        // the same change or not.
        let mut result = change("t1", &["attempts/j1/0001", "inbox/a/j1.1"]);
        result.deleted = vec!["inbox/a/j1.1".into()];
        assert!(!woken(&a, || hub.dispatch(&result)).await);
        result.paths.push("inbox/a/j2.1".into());
        assert!(woken(&a, || hub.dispatch(&result)).await);
        // A node id that merely starts like another is not it.
        assert!(!woken(&a, || hub.dispatch(&change("t1", &["inbox/ab/j2.1"]))).await);
        // A resync wakes everyone.
        assert!(woken(&b, || hub.dispatch(&Change::resync())).await);
        assert!(woken(&other_tenant, || hub.dispatch(&Change::resync())).await);
    }

    #[tokio::test]
    async fn registrations_are_counted_and_removed_with_the_last_poll() {
        let hub = Arc::new(Inboxes::default());
        let first = hub.watch("t", "a");
        let second = hub.watch("t", "a");
        assert_eq!(hub.agents_waiting(), 1);
        drop(first);
        assert_eq!(hub.agents_waiting(), 1);
        assert!(woken(&second, || hub.dispatch(&change("t", &["inbox/a/x.1"]))).await);
        drop(second);
        assert_eq!(hub.agents_waiting(), 0);
    }

    #[tokio::test]
    async fn the_hub_remembers_what_it_gave_and_forgets_when_notices_are_lost() {
        let hub = Arc::new(Inboxes::default());
        let mut given = change("t", &["jobs/j1", "inbox/a/j1.1"]);
        given.revision = 5;
        hub.dispatch(&given);
        assert!(
            !hub.nothing_after("t", "a", 4),
            "the entry at 5 is new to a poll after 4"
        );
        assert!(hub.nothing_after("t", "a", 5));
        // The result deletes the entry: still nothing new after 5.
        let mut result = change("t", &["attempts/j1/0001", "inbox/a/j1.1"]);
        result.revision = 6;
        result.deleted = vec!["inbox/a/j1.1".into()];
        hub.dispatch(&result);
        assert!(hub.nothing_after("t", "a", 5));
        // A poll registered before the next entry is given is woken by it, and the memory
        // shows the entry once it is woken.
        let w = hub.watch("t", "a");
        let mut next = change("t", &["inbox/a/j2.1"]);
        next.revision = 7;
        assert!(woken(&w, || hub.dispatch(&next)).await);
        assert!(!hub.nothing_after("t", "a", 5));
        // Lost notices: nothing is known any more, so every poll reads. (What comes after a
        // lag is newer than what was lost: the memory starts again from it.)
        let mut notices = [change("t", &["agents/x"]), change("t", &["agents/y"])];
        notices[0].revision = 8;
        notices[1].revision = 9;
        lag_wakes(w.notify.notified(), notices, |rx, cancel| {
            hub.clone().run(rx, cancel)
        })
        .await;
        assert!(!hub.nothing_after("t", "a", 7));
        assert!(!hub.nothing_after("t", "b", 7));
        // A forwarder that stops leaves nothing behind that would go stale.
        next.revision = 10;
        hub.dispatch(&next);
        assert!(hub.nothing_after("t", "a", 10));
        let (tx, rx) = broadcast::channel(1);
        let cancel = CancellationToken::new();
        cancel.cancel();
        hub.clone().run(rx, cancel).await;
        drop(tx);
        assert!(!hub.nothing_after("t", "a", 10));
    }

    #[tokio::test]
    async fn lagging_behind_the_store_wakes_everyone() {
        let hub = Arc::new(Inboxes::default());
        let w = hub.watch("t", "a");
        // Two notices into a channel of one: the forwarder lags and must wake the poll even
        // though neither notice touches its inbox.
        let notices = [change("t", &["agents/x"]), change("t", &["agents/y"])];
        lag_wakes(w.notify.notified(), notices, |rx, cancel| {
            hub.clone().run(rx, cancel)
        })
        .await;
    }
}
