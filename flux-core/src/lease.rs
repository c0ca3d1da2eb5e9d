//! Leader election: a lease in the store, taken and renewed by every node, with a new fencing
//! epoch on every acquisition.
//!
//! The rules live in one pure function, [`next_step`], which sees only the time and what the node
//! knows; [`run`] is the thin async driver that carries out its decisions against the store and
//! publishes the node's leadership on a watch channel.
//!
//! Safety does not rest on the lease: every leader-only write is fenced by the epoch in the store,
//! so a node that still believes it leads (paused, partitioned, slow clock) cannot write once a
//! successor has taken a newer epoch. The lease only keeps the cluster from churning, and the
//! driver is conservative on top: a leader counts its lease from the moment it *sent* the renewal
//! and stops leader work a margin before that lease could expire in the store.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{DynStore, Epoch};

/// Timing of the lease.
#[derive(Clone, Copy, Debug)]
pub struct LeaseConfig {
    /// How long a lease lasts in the store without renewal.
    pub ttl: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a follower tries to take the lease.
    pub retry_every: Duration,
    /// How long before the lease could expire in the store the leader stops leader work.
    pub safety_margin: Duration,
}

impl Default for LeaseConfig {
    /// TTL 1.5 s, renewal every 400 ms, followers try every 100 ms, leader work stops 250 ms
    /// before the lease could expire (fluxd's defaults). After `kill -9` of a leader a follower
    /// leads within TTL + 100 ms; after a graceful stop (lease released) within 100 ms. A leader
    /// whose renewals all fail for 1.25 s steps down: renewals go over a path of their own in
    /// the store (Redis: a dedicated connection; redb: an in-process lease), so ordinary
    /// traffic does not delay them.
    fn default() -> LeaseConfig {
        LeaseConfig {
            ttl: Duration::from_millis(1500),
            renew_every: Duration::from_millis(400),
            retry_every: Duration::from_millis(100),
            safety_margin: Duration::from_millis(250),
        }
    }
}

impl LeaseConfig {
    /// Checks that the timings can work: renewals well inside the TTL, margin below it.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl.is_zero() || self.renew_every.is_zero() || self.retry_every.is_zero() {
            return Err("lease TTL, renew and retry intervals must be positive".into());
        }
        if self.safety_margin >= self.ttl {
            return Err("the lease safety margin must be shorter than its TTL".into());
        }
        if self.renew_every * 2 > self.ttl - self.safety_margin {
            return Err(format!(
                "renewing every {:?} leaves no room for a failed renewal inside TTL {:?} minus margin {:?}",
                self.renew_every, self.ttl, self.safety_margin
            ));
        }
        Ok(())
    }
}

/// What the node knows about its own leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Follower,
    /// Leading with `epoch` until `valid_until` unless renewed.
    Leader {
        epoch: Epoch,
        valid_until: Instant,
    },
}

/// What the driver should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Try to take the lease.
    Acquire,
    /// Renew the lease, giving up at `deadline` (when the lease could be gone).
    Renew { deadline: Instant },
    /// Stop leader work now: the lease could expire before a renewal lands.
    StepDown,
    /// Nothing to do until then.
    Wait(Instant),
}

/// The election rules. `last_try` is when the last acquisition or renewal was sent (`None`
/// before the first).
pub fn next_step(
    now: Instant,
    phase: Phase,
    last_try: Option<Instant>,
    cfg: &LeaseConfig,
) -> Action {
    match phase {
        Phase::Follower => match last_try {
            Some(t) if now < t + cfg.retry_every => Action::Wait(t + cfg.retry_every),
            _ => Action::Acquire,
        },
        Phase::Leader { valid_until, .. } => {
            if now >= valid_until {
                return Action::StepDown;
            }
            match last_try {
                Some(t) if now < t + cfg.renew_every => {
                    Action::Wait((t + cfg.renew_every).min(valid_until))
                }
                _ => Action::Renew {
                    deadline: valid_until,
                },
            }
        }
    }
}

/// Until when a lease obtained by a request sent at `sent` may be relied on.
pub fn valid_until(sent: Instant, cfg: &LeaseConfig) -> Instant {
    sent + cfg.ttl.saturating_sub(cfg.safety_margin)
}

/// Leadership as published by the driver: `Some(epoch)` while this node leads.
pub type Leadership = watch::Receiver<Option<Epoch>>;

/// Runs the election for `node` until `cancel`, publishing leadership on the returned channel.
/// On cancellation a leader releases its lease so a successor takes over at once. A leader
/// told through `fenced` that its epoch was superseded steps down immediately.
pub fn spawn(
    store: DynStore,
    node: String,
    cfg: LeaseConfig,
    cancel: CancellationToken,
    fenced: watch::Receiver<Epoch>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run(store, node, cfg, cancel, fenced, tx));
    (rx, task)
}

async fn run(
    store: DynStore,
    node: String,
    cfg: LeaseConfig,
    cancel: CancellationToken,
    mut fenced: watch::Receiver<Epoch>,
    tx: watch::Sender<Option<Epoch>>,
) {
    let mut phase = Phase::Follower;
    let mut last_try: Option<Instant> = None;
    // Once the fencing channel's sender is gone it can never report again; stop selecting on it
    // (a closed channel would be ready at once, every time).
    let mut fenced_open = true;
    let set = |phase: Phase| {
        let v = match phase {
            Phase::Leader { epoch, .. } => Some(epoch),
            Phase::Follower => None,
        };
        tx.send_if_modified(|cur| {
            let changed = *cur != v;
            *cur = v;
            changed
        });
    };
    loop {
        if cancel.is_cancelled() {
            break;
        }
        match next_step(Instant::now(), phase, last_try, &cfg) {
            Action::Wait(until) => {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(until) => {}
                    r = fenced.changed(), if fenced_open => {
                        fenced_open = r.is_ok();
                        let seen = *fenced.borrow_and_update();
                        if let Phase::Leader { epoch, .. } = phase
                            && r.is_ok() && seen >= epoch
                        {
                            tracing::warn!(%node, epoch, "a write was fenced: another node leads; stepping down");
                            phase = Phase::Follower;
                            set(phase);
                            // If the lease is still ours (the epoch was raised under it, as a
                            // restore does), give it up so the next term starts with a fresh
                            // epoch; if another node holds it, this changes nothing.
                            let _ = tokio::time::timeout(cfg.retry_every, store.release_lease(&node)).await;
                            last_try = Some(Instant::now());
                        }
                    }
                }
            }
            Action::StepDown => {
                tracing::warn!(%node, "lease not renewed in time; stepping down");
                phase = Phase::Follower;
                set(phase);
            }
            Action::Acquire => {
                let sent = Instant::now();
                last_try = Some(sent);
                let tried = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = tokio::time::timeout(cfg.ttl, store.acquire_lease(&node, cfg.ttl)) => r,
                };
                let Ok(tried) = tried else {
                    tracing::debug!(%node, "lease acquisition timed out");
                    continue;
                };
                match tried {
                    Ok(Some(epoch)) => {
                        tracing::info!(%node, epoch, "lease acquired; leading");
                        phase = Phase::Leader {
                            epoch,
                            valid_until: valid_until(sent, &cfg),
                        };
                        set(phase);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(%node, error = %e, "lease acquisition failed"),
                }
            }
            Action::Renew { deadline } => {
                let sent = Instant::now();
                last_try = Some(sent);
                let Phase::Leader { epoch, .. } = phase else {
                    continue;
                };
                let renewed = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = tokio::time::timeout_at(deadline, store.acquire_lease(&node, cfg.ttl)) => r,
                };
                match renewed {
                    Ok(Ok(Some(e))) if e == epoch => {
                        phase = Phase::Leader {
                            epoch,
                            valid_until: valid_until(sent, &cfg),
                        };
                    }
                    Ok(Ok(Some(e))) => {
                        // The lease lapsed and this node took it afresh: a new term.
                        tracing::warn!(%node, old = epoch, new = e, "lease re-acquired with a new epoch");
                        phase = Phase::Leader {
                            epoch: e,
                            valid_until: valid_until(sent, &cfg),
                        };
                        set(phase);
                    }
                    Ok(Ok(None)) => {
                        tracing::warn!(%node, epoch, "lease lost to another node; stepping down");
                        phase = Phase::Follower;
                        set(phase);
                    }
                    Ok(Err(e)) => tracing::warn!(%node, error = %e, "lease renewal failed"),
                    Err(_) => tracing::warn!(%node, "lease renewal timed out"),
                }
            }
        }
    }
    if matches!(phase, Phase::Leader { .. }) {
        set(Phase::Follower);
        match tokio::time::timeout(Duration::from_secs(1), store.release_lease(&node)).await {
            Ok(Ok(())) => tracing::info!(%node, "lease released"),
            Ok(Err(e)) => tracing::warn!(%node, error = %e, "lease not released"),
            Err(_) => tracing::warn!(%node, "lease release timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LeaseConfig {
        LeaseConfig::default()
    }

    #[tokio::test(start_paused = true)]
    async fn follower_tries_at_once_then_every_retry_interval() {
        let c = cfg();
        let t0 = Instant::now();
        assert_eq!(next_step(t0, Phase::Follower, None, &c), Action::Acquire);
        assert_eq!(
            next_step(t0, Phase::Follower, Some(t0), &c),
            Action::Wait(t0 + c.retry_every)
        );
        tokio::time::advance(c.retry_every).await;
        assert_eq!(
            next_step(Instant::now(), Phase::Follower, Some(t0), &c),
            Action::Acquire
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leader_renews_on_schedule_and_steps_down_before_expiry() {
        let c = cfg();
        let t0 = Instant::now();
        let lead = Phase::Leader {
            epoch: 7,
            valid_until: valid_until(t0, &c),
        };
        assert!(
            valid_until(t0, &c) < t0 + c.ttl,
            "must stop before the store lease can lapse"
        );
        assert_eq!(
            next_step(t0, lead, Some(t0), &c),
            Action::Wait(t0 + c.renew_every)
        );
        tokio::time::advance(c.renew_every).await;
        assert_eq!(
            next_step(Instant::now(), lead, Some(t0), &c),
            Action::Renew {
                deadline: valid_until(t0, &c)
            }
        );
        // Renewals keep failing (sent, no answer): at valid_until the leader stops, even though
        // it never got an error.
        tokio::time::advance(c.ttl - c.safety_margin - c.renew_every).await;
        assert_eq!(
            next_step(Instant::now(), lead, Some(Instant::now()), &c),
            Action::StepDown
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_leader_steps_down_when_it_wakes() {
        let c = cfg();
        let t0 = Instant::now();
        let lead = Phase::Leader {
            epoch: 3,
            valid_until: valid_until(t0, &c),
        };
        // Paused (SIGSTOP) for longer than the TTL: the first decision after waking is StepDown,
        // not a renewal that could race a successor.
        tokio::time::advance(c.ttl * 3).await;
        assert_eq!(
            next_step(Instant::now(), lead, Some(t0), &c),
            Action::StepDown
        );
    }

    #[test]
    fn defaults_are_valid_and_bad_timings_are_refused() {
        cfg().validate().unwrap();
        let mut c = cfg();
        c.renew_every = Duration::from_secs(2);
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.safety_margin = c.ttl;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.retry_every = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
