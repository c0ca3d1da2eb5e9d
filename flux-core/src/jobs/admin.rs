//! What an operator does to an agent's record: drain it (no new work; what runs finishes),
//! uncordon it, and mark it revoked (its credentials ended by `auth::revoke_node`: it counts as
//! dead, so the leader's sweep requeues its attempts as for a dead agent).
//!
//! These writes are compare-and-swap on the agent record, like a registration; the leader's
//! fenced writes to the same record conflict with them and are judged again on what the store
//! holds. Placement, fan-out and the reconciler read the flags through [`Agent::takes_work`].

use super::{CAS_RETRIES, JobError, Jobs, Result, agent_contended, enc};
use crate::keys;
use crate::model::{Agent, AgentState, Millis, valid_ident};
use crate::store::{Expect, Key};

/// What an operator does to an agent record. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentChange {
    Drain,
    Uncordon,
    Revoke { at: Millis },
}

/// The record after `change`; `None` when it is already so.
pub fn apply_change(mut agent: Agent, change: AgentChange) -> Option<Agent> {
    match change {
        AgentChange::Drain if agent.drained => None,
        AgentChange::Drain => {
            agent.drained = true;
            Some(agent)
        }
        AgentChange::Uncordon if !agent.drained => None,
        AgentChange::Uncordon => {
            agent.drained = false;
            Some(agent)
        }
        AgentChange::Revoke { at } => {
            agent.revoked_at = Some(at);
            agent.state = AgentState::Dead;
            Some(agent)
        }
    }
}

impl Jobs {
    /// Applies `change` to agent `node_id`'s record and returns it as stored.
    pub async fn change_agent(
        &self,
        tenant: &str,
        node_id: &str,
        change: AgentChange,
    ) -> Result<Agent> {
        let (agent, wrote) = self
            .rewrite_agent(tenant, node_id, |a| Ok(apply_change(a.clone(), change)))
            .await?;
        if wrote {
            tracing::info!(tenant, node_id, ?change, "agent record changed");
        }
        Ok(agent)
    }

    /// Rewrites agent `node_id`'s record with `change` as a compare-and-swap, applied again to
    /// the newer record when another write lands meanwhile (a registration, a liveness mark).
    /// `change` gives the new record, or `None` when the record is already so; its error ends
    /// the change. Returns the record as stored and whether this call wrote it. An unknown
    /// agent answers NotFound.
    pub(super) async fn rewrite_agent(
        &self,
        tenant: &str,
        node_id: &str,
        mut change: impl FnMut(&Agent) -> Result<Option<Agent>>,
    ) -> Result<(Agent, bool)> {
        if !valid_ident(node_id) {
            return Err(JobError::NotFound(format!("agent {node_id}")));
        }
        let ak = Key::new(tenant, keys::agent(node_id))?;
        for _ in 0..CAS_RETRIES {
            let (agent, v) = self
                .load_found::<Agent>(&ak, || format!("agent {node_id}"))
                .await?;
            let Some(next) = change(&agent)? else {
                return Ok((agent, false));
            };
            let put = self.store.put(ak.clone(), enc(&next), Expect::Version(v));
            if crate::store::landed(put.await)? {
                return Ok((next, true));
            }
        }
        Err(agent_contended(node_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        crate::enroll::enrolled_agent("t", "n1", &Default::default(), 0)
    }

    #[test]
    fn drain_and_uncordon_flip_the_flag_once() {
        let mut a = agent();
        a.state = AgentState::Online;
        assert!(a.takes_work());
        let d = apply_change(a.clone(), AgentChange::Drain).unwrap();
        assert!(d.drained && !d.takes_work());
        assert_eq!(apply_change(d.clone(), AgentChange::Drain), None);
        let u = apply_change(d, AgentChange::Uncordon).unwrap();
        assert!(u.takes_work());
        assert_eq!(apply_change(u, AgentChange::Uncordon), None);
    }

    #[test]
    fn a_revoked_agent_is_dead_and_takes_no_work() {
        let mut a = agent();
        a.state = AgentState::Online;
        let r = apply_change(a, AgentChange::Revoke { at: 9 }).unwrap();
        assert_eq!(r.state, AgentState::Dead);
        assert_eq!(r.revoked_at, Some(9));
        assert!(!r.takes_work());
    }
}
