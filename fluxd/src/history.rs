//! The history log of a chaos run (`--history-log`): one JSON line per fenced (leader) write
//! this node committed and per attempt result it recorded, in the format of
//! [`flux_core::chaos::HistoryEvent`]. `fluxctl chaos run` merges the logs of every node and
//! checks them; nothing reads them in normal operation, and the option is off by default.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use flux_core::chaos::HistoryEvent;
use flux_core::model::now_ms;
use flux_core::store::{Epoch, Version};

#[derive(Debug)]
pub struct History {
    node: String,
    file: Mutex<std::fs::File>,
}

impl History {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path, node: &str) -> std::io::Result<History> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
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

    pub fn result(&self, tenant: &str, attempt_id: &str) {
        self.append(&HistoryEvent::Result {
            node: self.node.clone(),
            tenant: tenant.to_string(),
            attempt_id: attempt_id.to_string(),
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
