//! The history log of a chaos run (`--history-log`): one JSON line per fenced (leader) write
//! this node committed or saw refused, and per attempt result it recorded, in the format of
//! [`flux_core::history::HistoryEvent`]. `fluxctl chaos run` merges the logs of every node and
//! checks them; nothing reads them in normal operation, and the option is off by default.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use flux_core::history::HistoryEvent;
use flux_core::model::now_ms;
use flux_core::store::{Epoch, Version};

#[derive(Debug)]
pub struct History {
    node: String,
    file: Mutex<std::fs::File>,
}

impl History {
    /// Opens `path` for appending (created if missing). A line left torn by a killed process
    /// is ended first, so it cannot swallow the next event.
    pub fn open(path: &Path, node: &str) -> std::io::Result<History> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(History {
            node: node.to_string(),
            file: Mutex::new(file),
        })
    }

    pub fn write(&self, epoch: Epoch, tenant: &str, revision: Version) {
        self.append(&HistoryEvent::Write {
            node: self.node.clone(),
            epoch,
            tenant: tenant.to_string(),
            revision,
            at: now_ms(),
        });
    }

    pub fn fenced(&self, epoch: Epoch, tenant: &str) {
        self.append(&HistoryEvent::Fenced {
            node: self.node.clone(),
            epoch,
            tenant: tenant.to_string(),
            at: now_ms(),
        });
    }

    pub fn result(&self, tenant: &str, attempt_id: &str) {
        self.append(&HistoryEvent::Result {
            node: self.node.clone(),
            tenant: tenant.to_string(),
            attempt_id: attempt_id.to_string(),
            at: now_ms(),
        });
    }

    /// A job the collector deleted, with the status it had when read.
    pub fn collected(&self, tenant: &str, job: &flux_core::model::Job) {
        self.append(&HistoryEvent::Collected {
            node: self.node.clone(),
            tenant: tenant.to_string(),
            job_id: job.job_id.clone(),
            status: job.status,
            at: now_ms(),
        });
    }

    /// One `write` per event, so a killed node leaves at most its last line torn.
    fn append(&self, ev: &HistoryEvent) {
        let mut line = serde_json::to_vec(ev).expect("history events serialise");
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(error = %e, "history log not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let h = History::open(&path, "n1").unwrap();
        h.write(3, "default", 17);
        drop(h);
        // A process killed in the middle of its next line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"type\":\"wri").unwrap();
        drop(f);
        let h = History::open(&path, "n1").unwrap();
        h.fenced(3, "default");
        h.result("default", "j.1");
        let (events, torn) =
            flux_core::history::parse_history(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(torn, 1);
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(
            &events[0],
            HistoryEvent::Write {
                epoch: 3,
                revision: 17,
                ..
            }
        ));
        assert!(matches!(&events[1], HistoryEvent::Fenced { epoch: 3, .. }));
        assert!(
            matches!(&events[2], HistoryEvent::Result { attempt_id, .. } if attempt_id == "j.1")
        );
    }
}
