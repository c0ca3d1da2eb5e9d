//! The leader's delivery loop: one delivery loop per webhook of every tenant, all polled side
//! by side in the leader's task, each sending one request at a time ([`super::deliver_next`]).
//!
//! Guarantees:
//! - A webhook whose receiver is slow or down holds up only itself: the others' loops go on
//!   (each request is bounded by the delivery timeout, each retry by the backoff's cap).
//! - [`work`] returns only when a delivery write was fenced, with the epoch in force.
//! - A webhook created on any node is picked up within [`DISCOVER_EVERY`]; a deleted one's loop
//!   ends at its next step.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{DeliveryConfig, Step, WebhookError, deliver_next, names};
use crate::leader::Leader;
use crate::store::{Epoch, StoreError};

/// How often the leader looks for new webhooks.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// Delivers every tenant's webhooks until a write is fenced; returns the epoch in force.
pub async fn work(l: &Leader<'_>, cfg: &DeliveryConfig, epoch: Epoch) -> Epoch {
    let mut running: HashSet<(String, String)> = HashSet::new();
    let mut loops = FuturesUnordered::new();
    let mut tick = tokio::time::interval(DISCOVER_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let tenants = match l.jobs.tenants().await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhooks: tenants unreadable");
                        continue;
                    }
                };
                for t in tenants {
                    match names(l.store, &t).await {
                        Ok(ns) => {
                            for n in ns {
                                if running.insert((t.clone(), n.clone())) {
                                    loops.push(one(l, cfg, t.clone(), n, epoch));
                                }
                            }
                        }
                        Err(e) => tracing::warn!(tenant = %t, error = %e, "webhooks unreadable"),
                    }
                }
            }
            Some((key, fenced)) = loops.next(), if !loops.is_empty() => {
                running.remove(&key);
                if let Some(e) = fenced {
                    return e;
                }
            }
        }
    }
}

/// The delivery loop of one webhook: ends when it is deleted (`None`) or a write is fenced.
async fn one(
    l: &Leader<'_>,
    cfg: &DeliveryConfig,
    tenant: String,
    name: String,
    epoch: Epoch,
) -> ((String, String), Option<Epoch>) {
    let mut rx = l.store.subscribe();
    let mut client = None;
    let count = |result: &str| l.host.webhook_delivery(&tenant, result);
    loop {
        let step = deliver_next(l.store, &tenant, &name, epoch, cfg, &mut client, &count).await;
        match step {
            Ok(Step::Gone) => return ((tenant, name), None),
            Ok(Step::Idle) => {
                let deadline = tokio::time::Instant::now() + DISCOVER_EVERY;
                crate::store::wait_for_change(&mut rx, &tenant, crate::events::EVENTS, deadline)
                    .await;
            }
            Ok(Step::Moved | Step::GaveUp) => tokio::task::yield_now().await,
            Ok(Step::Retry(d)) => {
                tracing::info!(%tenant, webhook = %name, delay_ms = d.as_millis() as u64, "webhook delivery failed; retrying");
                tokio::time::sleep(d).await;
            }
            Err(WebhookError::Store(StoreError::Fenced { current, .. })) => {
                return ((tenant, name), Some(current));
            }
            Err(e) => {
                tracing::warn!(%tenant, webhook = %name, error = %e, "webhook delivery step failed");
                tokio::time::sleep(DISCOVER_EVERY).await;
            }
        }
    }
}
