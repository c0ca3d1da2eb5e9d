//! The node's background tasks, apart from the routes: the leader driver, the node record, the
//! liveness records, the audit integrity checks, scheduled backups and the cluster gauges.
//! `node.rs` spawns them; each runs until the node's cancellation token fires.

pub mod backups;
pub mod gauges;
pub mod integrity;
pub mod leader;
pub mod liveness;
pub mod node_record;
