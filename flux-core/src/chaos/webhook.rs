//! The webhook invariant of a chaos run: what a receiver recorded against what the event log
//! holds. The run's webhook takes some event types; after healing, every event of the log that
//! matches it (after its start) must have reached the receiver.
//!
//! Guarantees (of [`check_webhook`], pure):
//! - every expected event was received at least once;
//! - per object, the *first* receipts come in log order (a re-delivery may come late, say from
//!   a paused leader's request, but nothing is first delivered before an earlier event of the
//!   same object);
//! - each event was received under one delivery id, and no delivery id names two events;
//! - every receipt's signature verified.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::events::Position;

/// One request the receiver got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub delivery_id: String,
    /// The event's id (`REV.INDEX`).
    pub event_id: String,
    pub object: String,
    /// Whether `X-Flux-Signature` verified under the webhook's secret.
    pub signed: bool,
}

/// The run's webhook, seen after healing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSeen {
    /// Events of the log the webhook takes, after its start: `(event id, object)`, in log order.
    pub expected: Vec<(String, String)>,
    /// What the receiver recorded, in arrival order.
    pub received: Vec<Receipt>,
}

fn pos(id: &str) -> Position {
    Position::parse(id).unwrap_or_default()
}

/// Adds `line(key, count, its values joined)` to `out` for each key with more than one value.
fn more_than_one(
    out: &mut Vec<String>,
    map: &BTreeMap<&str, BTreeSet<&str>>,
    line: impl Fn(&str, usize, String) -> String,
) {
    for (&key, values) in map {
        if values.len() > 1 {
            let joined = values.iter().copied().collect::<Vec<_>>().join(", ");
            out.push(line(key, values.len(), joined));
        }
    }
}

/// Judges a webhook's deliveries; each string is one violation.
pub fn check_webhook(w: &WebhookSeen) -> Vec<String> {
    let mut out = Vec::new();
    let mut ids_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut events_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut first: Vec<&Receipt> = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &w.received {
        if !r.signed {
            out.push(format!(
                "delivery {} (event {}) carried a signature that does not verify",
                r.delivery_id, r.event_id
            ));
        }
        ids_of
            .entry(&r.event_id)
            .or_default()
            .insert(&r.delivery_id);
        events_of
            .entry(&r.delivery_id)
            .or_default()
            .insert(&r.event_id);
        if seen.insert(r.event_id.as_str()) {
            first.push(r);
        }
    }
    more_than_one(&mut out, &ids_of, |event, n, ids| {
        format!("event {event} was delivered under {n} delivery ids: {ids}")
    });
    more_than_one(&mut out, &events_of, |id, n, events| {
        format!("delivery id {id} named {n} events: {events}")
    });
    let missing: Vec<&str> = w
        .expected
        .iter()
        .filter(|(id, _)| !seen.contains(id.as_str()))
        .map(|(id, _)| id.as_str())
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "{} of {} events the webhook takes never reached the receiver (first: {})",
            missing.len(),
            w.expected.len(),
            missing
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for r in first {
        if let Some(prev) = last.insert(&r.object, &r.event_id)
            && pos(prev) > pos(&r.event_id)
        {
            out.push(format!(
                "object {}: event {} was first delivered after event {}, which comes later in the log",
                r.object, r.event_id, prev
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(d: &str, e: &str, o: &str) -> Receipt {
        Receipt {
            delivery_id: d.into(),
            event_id: e.into(),
            object: o.into(),
            signed: true,
        }
    }

    fn seen(received: Vec<Receipt>) -> WebhookSeen {
        WebhookSeen {
            expected: vec![
                ("1.0".into(), "a".into()),
                ("2.0".into(), "b".into()),
                ("3.0".into(), "a".into()),
            ],
            received,
        }
    }

    #[test]
    fn redeliveries_under_the_same_id_pass_and_each_breach_is_named() {
        // Every event, one re-delivered late under its id: clean.
        let ok = seen(vec![
            r("h-1.0", "1.0", "a"),
            r("h-2.0", "2.0", "b"),
            r("h-3.0", "3.0", "a"),
            r("h-1.0", "1.0", "a"),
        ]);
        assert_eq!(check_webhook(&ok), Vec::<String>::new());
        // One lost.
        let v = check_webhook(&seen(vec![r("h-1.0", "1.0", "a"), r("h-3.0", "3.0", "a")]));
        assert!(
            v.len() == 1 && v[0].contains("never reached") && v[0].contains("2.0"),
            "{v:?}"
        );
        // Out of order per object (b's order does not matter against a's).
        let v = check_webhook(&seen(vec![
            r("h-3.0", "3.0", "a"),
            r("h-2.0", "2.0", "b"),
            r("h-1.0", "1.0", "a"),
        ]));
        assert!(v.len() == 1 && v[0].contains("object a"), "{v:?}");
        // A re-delivery under another id, and one id for two events.
        let v = check_webhook(&seen(vec![
            r("h-1.0", "1.0", "a"),
            r("x-1.0", "1.0", "a"),
            r("h-2.0", "2.0", "b"),
            r("h-2.0", "3.0", "a"),
        ]));
        assert_eq!(v.len(), 2, "{v:?}");
        // A bad signature.
        let mut bad = r("h-1.0", "1.0", "a");
        bad.signed = false;
        let v = check_webhook(&seen(vec![
            bad,
            r("h-2.0", "2.0", "b"),
            r("h-3.0", "3.0", "a"),
        ]));
        assert!(v.len() == 1 && v[0].contains("signature"), "{v:?}");
    }
}
