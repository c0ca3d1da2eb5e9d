//! Test support (feature `testing`): real `redis-server` processes on free loopback ports.
//!
//! Tests that need Redis call [`RedisServer::start`]. When `redis-server` is not installed the
//! test is skipped, unless `FLUX_REQUIRE_REDIS` is set (CI sets it), in which case it fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Picks a free TCP port on 127.0.0.1 (the OS may hand it to someone else before use; callers
/// that bind later retry on failure).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
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

fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// Whether tests must fail instead of skipping when Redis is missing.
pub fn redis_required() -> bool {
    std::env::var_os("FLUX_REQUIRE_REDIS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A `redis-server` child process with its own data directory, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a durable server (`appendonly yes`, `appendfsync always`), or returns `None` (after
    /// printing why) when redis-server is not installed and Redis is not required.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// Like [`RedisServer::start`] with extra `--name value` arguments (they win over defaults).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let Some(bin) = on_path("redis-server") else {
            if redis_required() {
                panic!("FLUX_REQUIRE_REDIS is set but redis-server is not installed");
            }
            eprintln!(
                "skipping: redis-server is not installed (set FLUX_REQUIRE_REDIS=1 to fail instead)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            bin,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free port after 5 tries");
    }

    fn spawn(&mut self) -> bool {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &self.dir.path().display().to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "redis.log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        let child = Command::new(&self.bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return true; // exited: stop waiting, reported below
            }
            ping(addr)
        });
        let alive = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
        if !(up && alive) {
            self.kill9();
            return false;
        }
        true
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data directory (after [`Self::kill9`]).
    pub fn restart(&mut self) {
        self.kill9();
        assert!(
            wait_until(Duration::from_secs(10), || self.spawn()),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What [`BeforeCommit`] runs: given the transaction about to be committed, a future to await
/// first (or nothing).
pub type CommitHook = Box<
    dyn Fn(&crate::store::Txn) -> Option<futures::future::BoxFuture<'static, ()>> + Send + Sync,
>;

/// A store that runs a hook just before each commit reaches the real store: tests use it to
/// land a concurrent write (a heartbeat, an operator's delete) at the worst moment.
pub struct BeforeCommit {
    inner: crate::store::DynStore,
    hook: CommitHook,
}

impl std::fmt::Debug for BeforeCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeCommit")
            .field("inner", &self.inner)
            .finish()
    }
}

impl BeforeCommit {
    pub fn wrap(inner: crate::store::DynStore, hook: CommitHook) -> crate::store::DynStore {
        std::sync::Arc::new(BeforeCommit { inner, hook })
    }
}

#[async_trait::async_trait]
impl crate::store::Store for BeforeCommit {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn get(
        &self,
        key: &crate::store::Key,
    ) -> crate::store::Result<Option<crate::store::Versioned>> {
        self.inner.get(key).await
    }
    async fn commit(&self, txn: crate::store::Txn) -> crate::store::Result<crate::store::Version> {
        if let Some(f) = (self.hook)(&txn) {
            f.await;
        }
        self.inner.commit(txn).await
    }
    async fn list(
        &self,
        tenant: &str,
        prefix: &str,
    ) -> crate::store::Result<Vec<crate::store::Entry>> {
        self.inner.list(tenant, prefix).await
    }
    async fn tenants(&self) -> crate::store::Result<Vec<String>> {
        self.inner.tenants().await
    }
    async fn next_epoch(&self) -> crate::store::Result<crate::store::Epoch> {
        self.inner.next_epoch().await
    }
    async fn current_epoch(&self) -> crate::store::Result<crate::store::Epoch> {
        self.inner.current_epoch().await
    }
    async fn raise_epoch(
        &self,
        floor: crate::store::Epoch,
    ) -> crate::store::Result<crate::store::Epoch> {
        self.inner.raise_epoch(floor).await
    }
    async fn snapshot(&self) -> crate::store::Result<crate::store::Snapshot> {
        self.inner.snapshot().await
    }
    async fn restore(
        &self,
        entries: Vec<crate::store::Entry>,
        revisions: std::collections::BTreeMap<String, crate::store::Version>,
        force: bool,
        floor: crate::store::Epoch,
    ) -> crate::store::Result<crate::store::Epoch> {
        self.inner.restore(entries, revisions, force, floor).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::store::Change> {
        self.inner.subscribe()
    }
    async fn acquire_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> crate::store::Result<Option<crate::store::Epoch>> {
        self.inner.acquire_lease(holder, ttl).await
    }
    async fn release_lease(&self, holder: &str) -> crate::store::Result<()> {
        self.inner.release_lease(holder).await
    }
    async fn lease_holder(&self) -> crate::store::Result<Option<(String, crate::store::Epoch)>> {
        self.inner.lease_holder().await
    }
}
