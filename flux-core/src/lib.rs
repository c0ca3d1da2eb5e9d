//! `flux-core` holds every rule of FluxForge: the versioned, fenced [`store`] shared by all
//! nodes (embedded redb or Redis), leader leases and fencing epochs, job dispatch and requeue,
//! desired-state reconciliation, agent liveness, authentication and tenant scoping, audit and
//! backup. The binaries (`fluxd`, `flux-agent`, `fluxctl`) only wire these pieces to the network
//! and the command line; nothing in this crate serves HTTP.

pub mod audit;
pub mod auth;
pub mod backup;
#[cfg(feature = "chaos")]
pub mod chaos;
pub mod client;
pub mod enroll;
pub mod error;
pub mod events;
pub mod files;
pub mod history;
pub mod jobs;
pub mod keys;
pub mod leader;
pub mod lease;
pub mod model;
mod named;
pub mod quota;
pub mod reconcile;
pub mod redact;
pub mod replies;
pub mod retention;
pub mod revocations;
pub mod rollout;
pub mod schedule;
pub mod selector;
pub mod state;
pub mod store;
mod stored;
pub mod tenants;
pub mod webhooks;

#[cfg(feature = "testing")]
pub mod testing;
