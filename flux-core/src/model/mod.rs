//! The objects FluxForge stores: jobs, attempts, agents and the task envelopes agents receive.
//!
//! Every object is stored as JSON under a tenant-scoped key (see [`crate::keys`]). Request types reject
//! unknown fields, so a client can never set a field it does not own (no mass assignment).
//!
//! `job.rs`, `attempt.rs` and `agent.rs` hold the objects; everything is re-exported here, so
//! every path stays `model::<Item>`.

mod agent;
mod attempt;
mod facts;
mod job;

pub use agent::*;
pub use attempt::*;
pub use facts::*;
pub use job::*;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Current wall-clock time in milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks an identifier chosen by a client (node id, idempotency key): 1..=128 characters of
/// `[A-Za-z0-9._-]`.
pub fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_round_trip() {
        let id = attempt_id("j-0192abc", 3);
        assert_eq!(parse_attempt_id(&id), Some(("j-0192abc", 3)));
        assert_eq!(parse_attempt_id("nodot"), None);
        assert_eq!(parse_attempt_id("j.x"), None);
    }

    #[test]
    fn submit_rejects_unknown_fields() {
        let ok: Result<SubmitJob, _> =
            serde_json::from_str(r#"{"command":"echo hi","node_id":"agent-1"}"#);
        assert!(ok.is_ok());
        let bad: Result<SubmitJob, _> =
            serde_json::from_str(r#"{"command":"echo hi","tenant":"other"}"#);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown field `tenant`")
        );
    }

    #[test]
    fn identifiers_are_restricted() {
        assert!(valid_ident("agent-1"));
        assert!(valid_ident("web.eu_1"));
        assert!(!valid_ident(""));
        assert!(!valid_ident("a/b"));
        assert!(!valid_ident("a b"));
        assert!(!valid_ident(&"x".repeat(129)));
    }

    #[test]
    fn terminal_statuses() {
        assert!(JobStatus::Succeeded.is_terminal());
        assert!(JobStatus::TimedOut.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
        assert_eq!(JobStatus::parse("timed_out"), Some(JobStatus::TimedOut));
        assert_eq!(JobStatus::parse("nope"), None);
    }
}

/// Splits a whole number from the unit after it, as in `15s` or `512MiB`: the number and the
/// unit, trimmed (empty when there is none), or `None` when the text does not start with a
/// number that fits a `u64`.
pub fn number_and_unit(s: &str) -> Option<(u64, &str)> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a duration such as `500ms`, `15s`, `2m`, `1h` or `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (n, unit) = number_and_unit(s)
        .ok_or_else(|| format!("{s:?} is not a duration (examples: 500ms, 15s, 2m, 1h)"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m, h or d)"
            ));
        }
    };
    ms.map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }
}
