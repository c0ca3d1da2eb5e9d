//! `fluxctl`, the FluxForge command-line interface: tokens, jobs, desired state, backups, chaos
//! runs and benchmarks, with tables for people and `-o json` for scripts.
fn main() {}
