//! End-to-end test harness for FluxForge: starts real `fluxd`, `flux-agent` and `redis-server`
//! processes on loopback and drives them through their public interfaces.
