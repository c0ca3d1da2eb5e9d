//! The layers every request passes: load shedding ([`limits`]), RED metrics ([`metrics`]) and
//! the audit record of mutating calls ([`audit`]). `api::app` stacks them.

pub mod audit;
pub mod drain;
pub mod limits;
pub mod metrics;
