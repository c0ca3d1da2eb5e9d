//! Test support (feature `testing`, which also turns on `chaos`), shared by flux-core's own
//! tests, the end-to-end tests in `tests/` and `fluxctl chaos run`, so that each helper exists
//! once:
//! - here: [`free_port`], [`wait_until`] and [`poll_until`] (poll with a deadline), [`on_path`]
//!   and [`tool`] (program look-up), the `FLUX_REQUIRE_*` flags ([`redis_required`]), and
//!   [`temp_redb`] (a redb store in a temporary directory), [`Lcg`] (seeded test cases);
//! - [`proc`]: the kill-on-drop child process with its log ([`Proc`], [`Launch`]);
//! - [`redis`]: real `redis-server` processes ([`RedisServer`]);
//! - [`hooks`]: a store wrapper that runs a hook before each commit ([`BeforeCommit`]);
//! - [`counting`]: a store wrapper that counts reads ([`Counting`]);
//! - [`fast_args`]: `fluxd` arguments for fast leases and liveness;
//! - [`receiver`]: a recording HTTP server for webhook receivers ([`receiver::serve`]).

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod counting;
pub mod fast_args;
pub mod hooks;
pub mod proc;
pub mod receiver;
pub mod redis;

pub use counting::{Counting, ReadCounts};
pub use fast_args::{FAST_LEASE_ARGS, FAST_LIVENESS_ARGS};
pub use hooks::{BeforeCommit, CommitHook};
pub use proc::{Launch, Proc, ProcError, pid_alive};
pub use redis::RedisServer;

/// Picks a free TCP port on 127.0.0.1 (the OS may hand it to someone else before use; callers
/// that bind later retry on failure).
pub fn free_port() -> u16 {
    try_free_port().expect("bind an ephemeral port on loopback")
}

/// [`free_port`] for product code (the chaos cluster), which reports a failure instead of
/// panicking.
pub fn try_free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `f` every `every` until it gives `Some`, or gives `None` once `limit` has passed (`f`
/// is always tried at least once, and once more at the deadline's edge).
pub async fn poll_until<T, F, Fut>(every: Duration, limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The first file called `bin` in a directory of `PATH`.
pub fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// A redb store in a fresh temporary directory; the directory (and so the store's file) lives
/// as long as the returned guard.
pub async fn temp_redb() -> (tempfile::TempDir, crate::store::DynStore) {
    let dir = tempfile::tempdir().expect("temp dir for a redb store");
    let store = crate::store::open(&format!("redb:{}", dir.path().join("s.redb").display()))
        .await
        .expect("open a redb store in a temp dir");
    (dir, store)
}

/// A tiny deterministic generator for randomized unit tests, so that a seed gives the same
/// sequence (and so the same cases) on every run.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number, below `n` (which must not be 0).
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Whether the environment variable `var` is set to something other than empty or `0`.
pub fn env_flag(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether tests must fail instead of skipping when Redis is missing.
pub fn redis_required() -> bool {
    env_flag("FLUX_REQUIRE_REDIS")
}

/// Finds a program on PATH for a test that needs it. When it is missing the test should skip
/// (`None`), unless the environment variable `require` is set (CI sets it): then it fails.
pub fn tool(name: &str, require: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but {name} is not installed"
        );
        eprintln!("skipping: {name} is not installed");
    }
    found
}
