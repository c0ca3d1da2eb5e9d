//! Cron expressions and time zones: parsing (through the `croner` crate), the pure
//! [`next_fire`] function and the daylight-saving rules.
//!
//! An expression has five fields (`minute hour day-of-month month day-of-week`), or six with
//! seconds first, or is one of the macros `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight`, `@hourly`. Day and month names (`MON`, `JAN`) are accepted. When both
//! day fields are restricted, a day matching either fires (as in Vixie cron).
//!
//! The expression is read in the schedule's IANA time zone (`Europe/Berlin`; default `UTC`).
//! Daylight-saving rules:
//! - a local time that does not exist on a day (skipped when clocks go forward) fires at the
//!   transition, the first instant after the gap; several slots in one gap fire once, then;
//! - a local time that occurs twice (clocks go back) fires once, at its first occurrence.
//!
//! A slot is identified by the instant (Unix milliseconds) it fires at.
//!
//! Guarantees:
//! - [`next_fire`] is pure and returns an instant strictly after the one it was given, so a
//!   driver iterating it never fires one instant twice;
//! - a refused expression names the field that is wrong (`minute`, `hour`, ...);
//! - nothing here reads the clock.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::model::Millis;

/// Names of the fields of a six-field expression, seconds first.
const FIELDS6: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// Longest expression accepted.
pub const MAX_CRON_BYTES: usize = 256;

/// Why an expression or a time zone was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// One field of the expression is wrong (`field` names it: `minute`, `hour`, ...).
    #[error("cron: the {field} field {value:?} is invalid: {reason}")]
    Field {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The expression as a whole is wrong (field count, unknown macro, never fires).
    #[error("cron: {0}")]
    Expression(String),
    #[error("tz: unknown time zone {0:?} (use an IANA name such as Europe/Berlin or UTC)")]
    UnknownZone(String),
}

/// A parsed expression with its time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses a time zone name (IANA).
pub fn parse_tz(tz: &str) -> Result<Tz, CronError> {
    let shown: String = tz.chars().take(64).collect();
    tz.parse::<Tz>().map_err(|_| CronError::UnknownZone(shown))
}

/// Parses an expression, naming the wrong field when it is refused.
pub fn parse_cron(expr: &str) -> Result<Cron, CronError> {
    if expr.len() > MAX_CRON_BYTES {
        return Err(CronError::Expression(format!(
            "at most {MAX_CRON_BYTES} bytes"
        )));
    }
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(CronError::Expression("must not be empty".into()));
    }
    let parts: Vec<&str> = trimmed.split_whitespace().collect();
    if trimmed.starts_with('@') {
        let known = [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        if parts.len() != 1 || !known.contains(&trimmed.to_ascii_lowercase().as_str()) {
            return Err(CronError::Expression(format!(
                "unknown macro {:?}; known: {}",
                trimmed.chars().take(32).collect::<String>(),
                known.join(", ")
            )));
        }
    } else if !(5..=6).contains(&parts.len()) {
        return Err(CronError::Expression(format!(
            "has {} fields; give five (minute hour day-of-month month day-of-week) or six \
             (seconds first)",
            parts.len()
        )));
    }
    match parser().parse(trimmed) {
        Ok(c) => Ok(c),
        Err(e) => Err(field_error(&parts).unwrap_or(CronError::Expression(e.to_string()))),
    }
}

/// Which field of a refused expression is wrong: each field alone, the others `*`.
fn field_error(parts: &[&str]) -> Option<CronError> {
    let offset = 6 - parts.len();
    for (i, value) in parts.iter().enumerate() {
        let mut probe = ["*"; 6];
        probe[0] = "0";
        probe[i + offset] = value;
        if let Err(e) = parser().parse(&probe.join(" ")) {
            return Some(CronError::Field {
                field: FIELDS6[i + offset],
                value: value.chars().take(64).collect(),
                reason: e.to_string(),
            });
        }
    }
    None
}

impl CronSchedule {
    /// Parses an expression and a time zone name.
    pub fn parse(expr: &str, tz: &str) -> Result<CronSchedule, CronError> {
        let tz = parse_tz(tz)?;
        let cron = parse_cron(expr)?;
        let s = CronSchedule { cron, tz };
        // An expression that never fires (`0 0 31 2 *`) is refused.
        if s.next_fire(0).is_none() {
            return Err(CronError::Expression(
                "never fires (no date matches every field)".into(),
            ));
        }
        Ok(s)
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first slot strictly after `after` (Unix ms), by the daylight-saving rules of the
    /// module documentation; `None` if the expression fires no more.
    pub fn next_fire(&self, after: Millis) -> Option<Millis> {
        next_fire(&self.cron, self.tz, after)
    }

    /// The next `n` slots after `after`.
    pub fn next_n(&self, after: Millis, n: usize) -> Vec<Millis> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_fire(t) {
                Some(s) => {
                    out.push(s);
                    t = s;
                }
                None => break,
            }
        }
        out
    }

    /// The shortest time between two consecutive slots over the next `samples` slots after
    /// `from` (in ms), read in UTC wall time so that a daylight-saving change does not make an
    /// hourly schedule look more frequent. `None` when it fires fewer than twice.
    pub fn min_interval(&self, from: Millis, samples: usize) -> Option<Millis> {
        let mut prev = next_fire(&self.cron, Tz::UTC, from)?;
        let mut best: Option<Millis> = None;
        for _ in 0..samples {
            let Some(n) = next_fire(&self.cron, Tz::UTC, prev) else {
                break;
            };
            best = Some(best.map_or(n - prev, |b: Millis| b.min(n - prev)));
            prev = n;
        }
        best
    }
}

fn to_utc(ms: Millis) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?)
}

fn to_ms(t: DateTime<Utc>) -> Option<Millis> {
    u64::try_from(t.timestamp_millis()).ok()
}

/// The local wall time at instant `t` in `tz`.
fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// The instant a local wall time `n` fires at in `tz`: itself when it exists once, its first
/// occurrence when it exists twice, the transition (the first instant whose local time is after
/// `n`) when it falls in a gap.
fn resolve(tz: Tz, n: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&n) {
        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        chrono::LocalResult::None => {
            // Offsets stay within ±18h: below `lo` local time is before `n`, at `hi` after it.
            let base = n.and_utc().timestamp();
            let (mut lo, mut hi) = (base - 18 * 3600, base + 18 * 3600);
            let after =
                |s: i64| DateTime::<Utc>::from_timestamp(s, 0).is_some_and(|t| local(tz, t) > n);
            if after(lo) || !after(hi) {
                return None;
            }
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if after(mid) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            DateTime::<Utc>::from_timestamp(hi, 0)
        }
    }
}

/// Most local times looked at per call (each gap or repeated hour costs a few).
const MAX_STEPS: usize = 10_000;

/// The first slot of `cron` in `tz` strictly after the instant `after` (Unix ms). Pure.
///
/// Local wall times matching the expression are walked in order from the local time of
/// `after`; each resolves to an instant by [`resolve`]; the first instant after `after` wins.
/// A repeated local time therefore fires once (its second occurrence resolves to the first,
/// already past), and the times of a gap all resolve to the transition, which fires once.
pub fn next_fire(cron: &Cron, tz: Tz, after: Millis) -> Option<Millis> {
    let after_t = to_utc(after)?;
    let mut cursor = local(tz, after_t);
    for _ in 0..MAX_STEPS {
        let n = cron.find_next_occurrence(&cursor, false).ok()?;
        let t = resolve(tz, n)?;
        if t > after_t {
            return to_ms(t);
        }
        cursor = n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC wall time.
    fn utc(s: &str) -> Millis {
        to_ms(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc(),
        )
        .unwrap()
    }

    fn show(ms: Millis) -> String {
        to_utc(ms).unwrap().format("%Y-%m-%d %H:%M:%S").to_string()
    }

    fn next(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        CronSchedule::parse(expr, tz)
            .unwrap()
            .next_n(utc(after), n)
            .into_iter()
            .map(show)
            .collect()
    }

    #[test]
    fn five_six_fields_and_macros_fire_when_they_say() {
        assert_eq!(
            next("*/5 * * * *", "UTC", "2026-01-01 10:02:00", 3),
            [
                "2026-01-01 10:05:00",
                "2026-01-01 10:10:00",
                "2026-01-01 10:15:00"
            ]
        );
        assert_eq!(
            next("*/20 * * * * *", "UTC", "2026-01-01 10:00:00", 2),
            ["2026-01-01 10:00:20", "2026-01-01 10:00:40"]
        );
        assert_eq!(
            next("@hourly", "UTC", "2026-01-01 10:00:00", 2),
            ["2026-01-01 11:00:00", "2026-01-01 12:00:00"]
        );
        assert_eq!(
            next("0 9 * * MON", "UTC", "2026-01-01 00:00:00", 1),
            ["2026-01-05 09:00:00"]
        );
        // The next slot is strictly after the instant given, even when it is a slot.
        assert_eq!(
            next("0 * * * *", "UTC", "2026-01-01 10:00:00", 1),
            ["2026-01-01 11:00:00"]
        );
    }

    #[test]
    fn a_time_zone_moves_the_slots() {
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            next("0 9 * * *", "Europe/Berlin", "2026-01-10 00:00:00", 1),
            ["2026-01-10 08:00:00"]
        );
        assert_eq!(
            next("0 9 * * *", "Europe/Berlin", "2026-07-10 00:00:00", 1),
            ["2026-07-10 07:00:00"]
        );
    }

    #[test]
    fn a_skipped_local_time_fires_at_the_transition_berlin() {
        // 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST (01:00 UTC).
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-03-28 12:00:00", 3),
            [
                "2026-03-29 01:00:00", // 02:30 does not exist: fires at the transition
                "2026-03-30 00:30:00", // 02:30 CEST
                "2026-03-31 00:30:00",
            ]
        );
        // Every slot of the gap fires once, together, at the transition.
        assert_eq!(
            next("*/20 * * * *", "Europe/Berlin", "2026-03-29 00:30:00", 4),
            [
                "2026-03-29 00:40:00", // 01:40 CET
                "2026-03-29 01:00:00", // 02:00, 02:20, 02:40 and 03:00 local: one firing
                "2026-03-29 01:20:00", // 03:20 CEST
                "2026-03-29 01:40:00",
            ]
        );
    }

    #[test]
    fn a_skipped_local_time_fires_at_the_transition_new_york() {
        // 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT (07:00 UTC).
        assert_eq!(
            next("30 2 * * *", "America/New_York", "2026-03-07 12:00:00", 2),
            ["2026-03-08 07:00:00", "2026-03-09 06:30:00"]
        );
    }

    #[test]
    fn a_repeated_local_time_fires_once_berlin() {
        // 2026-10-25: Berlin goes back from 03:00 CEST to 02:00 CET (01:00 UTC); 02:30 local
        // happens at 00:30 UTC and again at 01:30 UTC.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-10-24 12:00:00", 2),
            ["2026-10-25 00:30:00", "2026-10-26 01:30:00"]
        );
        // Half-hourly: the repeated hour's slots fire once, at their first occurrence.
        assert_eq!(
            next("0,30 * * * *", "Europe/Berlin", "2026-10-24 23:45:00", 5),
            [
                "2026-10-25 00:00:00", // 02:00 CEST
                "2026-10-25 00:30:00", // 02:30 CEST
                // 02:00 and 02:30 CET (01:00, 01:30 UTC) are repeats: not fired again
                "2026-10-25 02:00:00", // 03:00 CET
                "2026-10-25 02:30:00",
                "2026-10-25 03:00:00",
            ]
        );
        // Asked from inside the repeated hour, the repeat is still not fired.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-10-25 01:10:00", 1),
            ["2026-10-26 01:30:00"]
        );
    }

    #[test]
    fn a_repeated_local_time_fires_once_new_york() {
        // 2026-11-01: New York goes back from 02:00 EDT to 01:00 EST (06:00 UTC).
        assert_eq!(
            next("30 1 * * *", "America/New_York", "2026-10-31 12:00:00", 2),
            ["2026-11-01 05:30:00", "2026-11-02 06:30:00"]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |e: &str| match parse_cron(e) {
            Err(CronError::Field { field, .. }) => field,
            other => panic!("{e}: {other:?}"),
        };
        assert_eq!(field("61 * * * *"), "minute");
        assert_eq!(field("* 24 * * *"), "hour");
        assert_eq!(field("* * 32 * *"), "day-of-month");
        assert_eq!(field("* * * 13 *"), "month");
        assert_eq!(field("* * * * 9"), "day-of-week");
        assert_eq!(field("61 * * * * *"), "second");
        assert_eq!(field("0 x * * * *"), "minute");
        let e = parse_cron("* * * *").unwrap_err().to_string();
        assert!(e.contains("4 fields"), "{e}");
        assert!(parse_cron("@sometimes").is_err());
        assert!(parse_cron("* * * * * * 2030").is_err());
        let e = CronSchedule::parse("0 0 31 2 *", "UTC").unwrap_err();
        assert!(e.to_string().contains("never fires"), "{e}");
        let e = CronSchedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(matches!(e, CronError::UnknownZone(_)), "{e}");
        assert!(e.to_string().starts_with("tz:"));
    }

    #[test]
    fn the_minimum_interval_is_the_shortest_gap() {
        let s = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(s.min_interval(0, 100), Some(1000));
        let s = CronSchedule::parse("0,1 0 * * *", "UTC").unwrap();
        assert_eq!(s.min_interval(0, 100), Some(60_000));
        let s = CronSchedule::parse("@daily", "Europe/Berlin").unwrap();
        assert_eq!(s.min_interval(0, 100), Some(86_400_000));
    }
}
