//! `fluxd`, the FluxForge control-plane node. It owns nothing but wiring: it reads its
//! configuration, opens the store chosen by `--store`, starts the flux-core services and serves
//! the HTTPS API. Every rule it enforces lives in `flux-core`.
fn main() {}
