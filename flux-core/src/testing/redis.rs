//! Real `redis-server` processes on free loopback ports, each with its own data directory, for
//! the Redis store tests and the end-to-end tests.
//!
//! Tests that need Redis call [`RedisServer::start`]. When `redis-server` is not installed the
//! test is skipped, unless `FLUX_REQUIRE_REDIS` is set (CI sets it), in which case it fails.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::Proc;
use super::{free_port, on_path, redis_required, wait_until};

/// A `redis-server` child process with its own data directory, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Proc>,
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
        let mut cmd = Command::new(&self.bin);
        cmd.args(&args);
        // redis-server logs to redis.log (above); its own output is kept beside it.
        let child = Proc::spawn(
            "redis-server",
            cmd,
            self.dir.path().join("redis-server.out"),
        )
        .expect("spawn redis-server");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(Some(_)) = self.child.as_mut().map(Proc::try_exit) {
                return true; // exited: stop waiting, reported below
            }
            ping(addr)
        });
        let alive = matches!(self.child.as_mut().map(Proc::try_exit), Some(None));
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
        self.child.as_ref().map(|c| c.child.id())
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
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
