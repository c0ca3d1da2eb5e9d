//! Wakes agents' task long-polls when their inbox changes.
//!
//! One subscription to the store's change notices serves every agent polling this node: a
//! notice wakes only the polls of the agents whose inbox it touches (all of them on a resync or
//! when the subscription lagged). Were each poll to watch the notices itself, every write —
//! agents' own heartbeats included — would wake every waiting poll: with N agents heartbeating,
//! N × N/interval wake-ups a second, which at 10,000 agents saturates the node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flux_core::store::Change;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

type AgentKey = (String, String);

/// Where agents' inboxes live (`inbox/<node>/<attempt>`).
const INBOXES: &str = flux_core::keys::INBOX;

/// The agents with a task poll waiting on this node.
#[derive(Default)]
pub struct Inboxes {
    /// Per agent (tenant, node id): what its polls wait on and how many polls there are.
    waiting: Mutex<HashMap<AgentKey, (Arc<Notify>, usize)>>,
}

/// A poll's registration; dropping it unregisters the poll.
pub struct InboxWatch {
    inboxes: Arc<Inboxes>,
    key: AgentKey,
    notify: Arc<Notify>,
}

impl InboxWatch {
    /// Notified when the agent's inbox may have changed. Enable the future (or poll it) before
    /// reading the inbox, so that a change committed after the read is not missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for InboxWatch {
    fn drop(&mut self) {
        // Never panic in a drop (a poisoned lock holds consistent counts: only `+= 1`, `-= 1`).
        let mut waiting = self
            .inboxes
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, n)) = waiting.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.key);
            }
        }
    }
}

impl Inboxes {
    /// Registers a poll of `node`'s inbox in `tenant`.
    pub fn watch(self: &Arc<Self>, tenant: &str, node: &str) -> InboxWatch {
        let key = (tenant.to_string(), node.to_string());
        let mut waiting = self.waiting.lock().expect("inbox waiters");
        let entry = waiting.entry(key.clone()).or_default();
        entry.1 += 1;
        InboxWatch {
            inboxes: self.clone(),
            key,
            notify: entry.0.clone(),
        }
    }

    /// Polls currently registered.
    #[cfg(test)]
    fn agents_waiting(&self) -> usize {
        self.waiting.lock().expect("inbox waiters").len()
    }

    fn wake_all(&self) {
        for (notify, _) in self.waiting.lock().expect("inbox waiters").values() {
            notify.notify_waiters();
        }
    }

    /// Wakes the polls a change concerns.
    pub fn dispatch(&self, change: &Change) {
        if change.is_resync() {
            return self.wake_all();
        }
        let waiting = self.waiting.lock().expect("inbox waiters");
        if waiting.is_empty() {
            return;
        }
        let mut key = (change.tenant.clone(), String::new());
        for path in &change.paths {
            let Some(node) = path
                .strip_prefix(INBOXES)
                .and_then(|rest| rest.split('/').next())
            else {
                continue;
            };
            node.clone_into(&mut key.1);
            if let Some((notify, _)) = waiting.get(&key) {
                notify.notify_waiters();
            }
        }
    }

    /// Forwards the store's change notices until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        changes: broadcast::Receiver<Change>,
        cancel: CancellationToken,
    ) {
        forward_changes(self.as_ref(), changes, cancel).await
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
    mut changes: broadcast::Receiver<Change>,
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn change(tenant: &str, paths: &[&str]) -> Change {
        Change {
            tenant: tenant.into(),
            revision: 1,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    async fn woken(w: &InboxWatch, after: impl FnOnce()) -> bool {
        let changed = w.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        after();
        tokio::time::timeout(Duration::from_millis(50), changed)
            .await
            .is_ok()
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
    async fn lagging_behind_the_store_wakes_everyone() {
        let hub = Arc::new(Inboxes::default());
        let (tx, rx) = broadcast::channel(1);
        let w = hub.watch("t", "a");
        let changed = w.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // Two notices into a channel of one: the forwarder lags and must wake the poll even
        // though neither notice touches its inbox.
        tx.send(change("t", &["agents/x"])).unwrap();
        tx.send(change("t", &["agents/y"])).unwrap();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(hub.clone().run(rx, cancel.clone()));
        tokio::time::timeout(Duration::from_secs(5), changed)
            .await
            .expect("woken after a lag");
        cancel.cancel();
        run.await.unwrap();
    }
}
