//! The node's background tasks, apart from the routes: the leader driver, the node record, the
//! liveness records, the audit integrity checks, scheduled backups and the cluster gauges.
//! `node.rs` spawns them; each runs until the node's cancellation token fires.

pub mod backups;
pub mod gauges;
pub mod integrity;
pub mod leader;
pub mod liveness;
pub mod node_record;

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

/// The clock of a periodic task: ticks every `every`, its first tick at once; a late tick
/// delays the next ones rather than bunching them up.
pub(crate) fn ticker(every: Duration) -> Interval {
    let mut tick = interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Waits for `tick`'s next tick: `true` then, `false` once `cancel` fires instead.
pub(crate) async fn ticked(tick: &mut Interval, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tick.tick() => true,
    }
}
