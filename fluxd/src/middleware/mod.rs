//! The layers every request passes: RED metrics ([`metrics`]), the token and role check of
//! each route ([`access`], by the table in [`routes`]), load shedding ([`limits`]) and the
//! audit record of mutating calls ([`audit`]). `api::app` stacks them.

pub mod access;
pub mod audit;
pub mod drain;
pub mod limits;
pub mod metrics;
pub mod routes;
