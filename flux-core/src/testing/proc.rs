//! The one child-process helper of the test harness and of `fluxctl chaos run`: a [`Proc`] is
//! a running child whose stdout and stderr go to a log file, killed (SIGKILL) when dropped so a
//! failed test or run leaves nothing behind.
//!
//! Two ways to start one:
//! - [`Proc::spawn`] runs a [`Command`] the caller built (the end-to-end tests: a fresh log,
//!   `FLUX_LOG=info,flux=debug`);
//! - [`Launch::spawn`] runs a command kept as data, so it can be started again the same way
//!   after a kill (the chaos cluster: the log is appended to, the caller's `FLUX_*` settings
//!   are removed and `FLUX_LOG=info`).
//!
//! When a thread panics while a [`Proc`] is dropped, its log is printed to stderr (a failing
//! test shows what its processes said); [`echo_logs_on_panic`] turns that off.

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a [`Proc`] dropped during a panic prints its log (on by default).
static ECHO_ON_PANIC: AtomicBool = AtomicBool::new(true);

/// Turns the printing of logs by [`Proc`]s dropped during a panic on or off, for the whole
/// process (`fluxctl chaos run` turns it off: it keeps the logs in its work directory).
pub fn echo_logs_on_panic(on: bool) {
    ECHO_ON_PANIC.store(on, Ordering::Relaxed);
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("opening {}", path.display())]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// From [`Proc::spawn`].
    #[error("spawning {name}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// From [`Launch::spawn`].
    #[error("starting {name} ({})", program.display())]
    Start {
        name: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A child process killed (SIGKILL) when dropped, with its log file kept for failure reports.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    /// Runs `cmd` with stdin closed and its output in a new (truncated) `log`, with
    /// `FLUX_LOG=info,flux=debug`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc, ProcError> {
        let f = File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .env("FLUX_LOG", "info,flux=debug");
        let child = cmd.spawn().map_err(|source| ProcError::Spawn {
            name: name.to_string(),
            source,
        })?;
        Ok(Proc {
            child,
            log,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited, with its status.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL also ends a process stopped with SIGSTOP.
        if self.try_exit().is_none() {
            self.kill9();
        }
        if std::thread::panicking() && ECHO_ON_PANIC.load(Ordering::Relaxed) {
            eprintln!("---- {} log ----\n{}", self.name, self.log_text());
        }
    }
}

/// A command kept as data, so that it can be started again the same way after a kill.
#[derive(Clone, Debug)]
pub struct Launch {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub log: PathBuf,
}

impl Launch {
    pub fn new(name: &str, program: impl Into<PathBuf>, args: Vec<OsString>, log: PathBuf) -> Self {
        Launch {
            name: name.to_string(),
            program: program.into(),
            args,
            log,
        }
    }

    /// Starts the command with stdin closed and its output appended to the log (a restart keeps
    /// what the earlier run wrote), with `FLUX_LOG=info`.
    pub fn spawn(&self) -> Result<Proc, ProcError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| ProcError::OpenLog {
                path: self.log.clone(),
                source,
            })?;
        let mut cmd = Command::new(&self.program);
        // The process is configured by its arguments only, not by the caller's settings.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FLUX_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("FLUX_LOG", "info")
            .spawn()
            .map_err(|source| ProcError::Start {
                name: self.name.clone(),
                program: self.program.clone(),
                source,
            })?;
        Ok(Proc {
            child,
            log: self.log.clone(),
            name: self.name.clone(),
        })
    }
}

/// Whether process `pid` is alive: it exists and is not a zombie (one that exited and waits
/// for its parent counts as dead), read from `/proc/<pid>/stat`.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_restarts_into_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch::new(
            "echo",
            "/bin/sh",
            vec!["-c".into(), "echo \"run $FLUX_LOG\"".into()],
            dir.path().join("echo.log"),
        );
        for _ in 0..2 {
            let mut p = launch.spawn().unwrap();
            assert!(crate::testing::wait_until(
                std::time::Duration::from_secs(10),
                || p.try_exit().is_some()
            ));
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("echo.log")).unwrap(),
            "run info\nrun info\n"
        );
    }

    #[test]
    fn a_dropped_proc_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let p = Proc::spawn("sleep", cmd, dir.path().join("sleep.log")).unwrap();
        let pid = p.pid();
        drop(p);
        // Reaped by the drop: the pid no longer names our child.
        assert!(
            !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains("(sleep)"))
        );
    }
}
