//! What a node knows of agents' inboxes from the change notices it has seen, so that a task
//! poll that can find nothing new is answered without reading the inbox.
//!
//! A poll asks for the entries of its agent's inbox written at a revision above `after` (the
//! revision of the last task the agent was given). After each result the agent polls again
//! with that `after`, and the result's commit has only deleted the entry: the read finds
//! nothing, on every job. The memory records, per agent, the highest revision at which a notice
//! *gave* its inbox an entry (a deletion gives nothing), and per tenant the revision of the
//! first notice it saw. [`InboxMemory::nothing_after`] holds when both are at or below
//! `after`:
//!
//! - every write of the tenant at a revision above the first one seen was committed after it,
//!   so its notice came after it too: it is in the memory, or it has not been taken in yet;
//! - the caller registers its poll for wake-ups (`Inboxes::watch`, enabled) *before* asking,
//!   and the node takes a notice into the memory before it wakes anyone with it. A write the
//!   memory does not show yet therefore wakes the poll, which then reads the inbox.
//!
//! So an answer of `true` can only delay nothing: the poll waits, and the first entry given
//! to the agent wakes it as before. Lost notices (a lagged subscription, a resync, a
//! reconnected Redis listener) forget everything ([`InboxMemory::forget`]), and so does a
//! memory grown past [`MAX_AGENTS`]. Agents are held by a keyed hash of tenant and node id:
//! two that share a hash share the larger revision, which can only make a poll read.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use crate::keys;
use crate::store::{Change, Version};

/// The node whose inbox `path`, one of `change`'s paths, gives an entry to: `None` for a path
/// outside the inboxes and for an entry the change deletes (which gives the agent nothing).
pub fn given_to<'p>(change: &Change, path: &'p str) -> Option<&'p str> {
    let node = path.strip_prefix(keys::INBOX)?.split('/').next()?;
    (!change.deletes(path)).then_some(node)
}

/// Agents remembered before the memory starts again (about 32 MiB at the most).
pub const MAX_AGENTS: usize = 1 << 20;

/// See the module's documentation.
#[derive(Debug, Default)]
pub struct InboxMemory {
    hasher: RandomState,
    /// Per tenant, the revision of the first notice taken in since the memory was emptied.
    first: HashMap<String, Version>,
    /// Per agent (hash of tenant and node id), the highest revision that gave it an entry.
    given: HashMap<u64, Version>,
}

impl InboxMemory {
    fn agent(&self, tenant: &str, node: &str) -> u64 {
        self.hasher.hash_one((tenant, node))
    }

    /// Takes in one change notice, in the order the store published them.
    pub fn note(&mut self, c: &Change) {
        if c.is_resync() {
            return self.forget();
        }
        if self.given.len() >= MAX_AGENTS {
            self.forget();
        }
        if !self.first.contains_key(&c.tenant) {
            self.first.insert(c.tenant.clone(), c.revision);
        }
        for path in &c.paths {
            let Some(node) = given_to(c, path) else {
                continue;
            };
            let agent = self.agent(&c.tenant, node);
            let given = self.given.entry(agent).or_insert(0);
            *given = (*given).max(c.revision);
        }
    }

    /// Forgets everything (notices were lost): every poll reads until notices come again.
    pub fn forget(&mut self) {
        self.first.clear();
        self.given.clear();
    }

    /// Whether `node`'s inbox in `tenant` certainly holds no entry written above `after`, as
    /// far as the notices taken in so far show (see the module's documentation for why a poll
    /// registered before asking misses nothing by skipping its read then).
    pub fn nothing_after(&self, tenant: &str, node: &str, after: Version) -> bool {
        let Some(&first) = self.first.get(tenant) else {
            return false;
        };
        first <= after
            && self
                .given
                .get(&self.agent(tenant, node))
                .is_none_or(|&given| given <= after)
    }

    /// Agents remembered.
    pub fn agents(&self) -> usize {
        self.given.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(tenant: &str, revision: Version, put: &[&str], deleted: &[&str]) -> Change {
        Change {
            tenant: tenant.into(),
            revision,
            paths: put.iter().chain(deleted).map(|p| p.to_string()).collect(),
            deleted: deleted.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn nothing_is_known_before_a_notice_of_the_tenant_is_seen() {
        let mut m = InboxMemory::default();
        assert!(!m.nothing_after("t", "n1", 1_000));
        m.note(&change("other", 5, &["jobs/j1"], &[]));
        assert!(!m.nothing_after("t", "n1", 1_000));
        assert!(m.nothing_after("other", "n1", 5));
    }

    #[test]
    fn an_after_below_the_first_notice_seen_reads() {
        // Entries written before the first notice seen are unknown to the memory.
        let mut m = InboxMemory::default();
        m.note(&change("t", 10, &["jobs/j1"], &[]));
        assert!(!m.nothing_after("t", "n1", 9));
        assert!(!m.nothing_after("t", "n1", 0));
        assert!(m.nothing_after("t", "n1", 10));
    }

    #[test]
    fn an_entry_given_above_after_is_found_and_one_at_or_below_is_not() {
        let mut m = InboxMemory::default();
        m.note(&change("t", 10, &["jobs/j1"], &[]));
        m.note(&change("t", 12, &["inbox/n1/j2.1", "jobs/j2"], &[]));
        assert!(!m.nothing_after("t", "n1", 11));
        assert!(m.nothing_after("t", "n1", 12));
        assert!(m.nothing_after("t", "n1", 13));
        // Only n1 was given something.
        assert!(m.nothing_after("t", "n2", 10));
        // The same node id in another tenant is another agent.
        assert!(!m.nothing_after("u", "n1", 12));
    }

    #[test]
    fn a_deleted_entry_gives_nothing_but_a_later_one_does() {
        let mut m = InboxMemory::default();
        m.note(&change("t", 10, &["inbox/n1/j1.1"], &[]));
        // The result deletes the entry: the agent, which saw revision 10, has nothing new.
        m.note(&change("t", 11, &["attempts/j1/0001"], &["inbox/n1/j1.1"]));
        assert!(m.nothing_after("t", "n1", 10));
        // A cancellation (an entry written) is something new.
        m.note(&change("t", 14, &["inbox/n1/j3.1"], &["inbox/n1/j2.1"]));
        assert!(!m.nothing_after("t", "n1", 10));
        assert!(m.nothing_after("t", "n1", 14));
    }

    #[test]
    fn a_resync_forgets_everything() {
        let mut m = InboxMemory::default();
        m.note(&change("t", 10, &["inbox/n1/j1.1"], &[]));
        assert!(m.nothing_after("t", "n1", 10));
        m.note(&Change::resync());
        assert!(!m.nothing_after("t", "n1", 10));
        assert!(!m.nothing_after("t", "n2", 10));
        assert_eq!(m.agents(), 0);
        m.note(&change("t", 11, &["jobs/j1"], &[]));
        assert!(
            !m.nothing_after("t", "n1", 10),
            "10 is below the new first notice"
        );
        assert!(m.nothing_after("t", "n1", 11));
    }

    #[test]
    fn a_full_memory_starts_again_rather_than_forget_one_agent() {
        let mut m = InboxMemory::default();
        m.note(&change("t", 1, &["inbox/n0/j.1"], &[]));
        for i in 1..MAX_AGENTS {
            let agent = m.agent("t", &format!("n{i}"));
            m.given.insert(agent, 1);
        }
        assert_eq!(m.agents(), MAX_AGENTS);
        assert!(m.nothing_after("t", "n0", 1));
        m.note(&change("t", 2, &["inbox/new/j.1"], &[]));
        assert_eq!(m.agents(), 1);
        // n0's entry at revision 1 is no longer known, and neither is anything before 2.
        assert!(!m.nothing_after("t", "n0", 1));
        assert!(m.nothing_after("t", "n0", 2));
        assert!(!m.nothing_after("t", "new", 1));
    }
}
