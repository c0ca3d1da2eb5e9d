//! The history a `fluxd` node records for a chaos run (`fluxd --history-log`): one JSON line
//! per fenced (leader) write it committed or saw refused, and per attempt result it recorded.
//!
//! This module is always compiled, unlike [`crate::chaos`] that judges the history: `fluxd`
//! writes these lines and must build without the `chaos` feature.

use serde::{Deserialize, Serialize};

use crate::model::{JobStatus, Millis};
use crate::store::{Epoch, Version};

/// One line of a node's history log (`fluxd --history-log`), JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// A fenced (leader) transaction committed: `epoch` is the epoch the writer wrote under,
    /// `revision` the tenant revision the commit produced (its place in the commit order).
    Write {
        node: String,
        epoch: Epoch,
        tenant: String,
        revision: Version,
        at: Millis,
    },
    /// A fenced write was refused because a newer epoch exists: fencing stopped a superseded
    /// leader.
    Fenced {
        node: String,
        epoch: Epoch,
        tenant: String,
        at: Millis,
    },
    /// An attempt's result was recorded (a repeat of an already recorded result is not logged;
    /// an interrupted attempt sent back to the queue counts as recorded).
    Result {
        node: String,
        tenant: String,
        attempt_id: String,
        at: Millis,
    },
    /// The garbage collector deleted a job, whose record (as read) had `status`.
    Collected {
        node: String,
        tenant: String,
        job_id: String,
        status: JobStatus,
        at: Millis,
    },
}

/// Reads history lines; a torn last line (the node was killed mid-write) is skipped, and so is
/// any other line that does not parse, counted in the second value.
pub fn parse_history(text: &str) -> (Vec<HistoryEvent>, usize) {
    let mut bad = 0;
    let events = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(e) => Some(e),
            Err(_) => {
                bad += 1;
                None
            }
        })
        .collect();
    (events, bad)
}

/// A leader write by `node` in the default tenant, for the tests of this file and the checker.
#[cfg(test)]
pub(crate) fn write(node: &str, epoch: Epoch, revision: Version) -> HistoryEvent {
    HistoryEvent::Write {
        node: node.into(),
        epoch,
        tenant: "default".into(),
        revision,
        at: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_history_lines_are_skipped_and_counted() {
        let line = serde_json::to_string(&write("a", 1, 2)).unwrap();
        let text = format!("{line}\n{line}\n{{\"type\":\"wri");
        let (events, bad) = parse_history(&text);
        assert_eq!((events.len(), bad), (2, 1));
    }
}
