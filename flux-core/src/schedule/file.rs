//! The `[[schedule]]` tables of a state file: one schedule each, with exactly the fields of the
//! API's schedule spec ([`ScheduleSpec`]), checked by every rule of [`super::validate_spec`].
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-backup"
//! cron = "30 2 * * *"
//! tz = "Europe/Berlin"
//! overlap = "skip"
//! missed = { catch_up = 3 }
//! what = { job = { command = "/usr/local/bin/backup", selector = "role=db", all = true } }
//! ```
//!
//! Guarantees:
//! - a file with one bad table is refused whole: the error names the file, line, column and
//!   the table's field (`schedule[1].cron`), and nothing of the file is applied;
//! - unknown fields are refused; names are unique within the file;
//! - the other tables of the file (`[[state]]`) are left to the state file parser.

use serde::Deserialize;
use toml::Spanned;

use super::{
    DEFAULT_GRACE_SECS, MAX_SCHEDULES, Missed, Overlap, ScheduleSpec, What, validate_spec,
};
use crate::model::Millis;
use crate::state::{Source, StateFileError};

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    schedule: Vec<Spanned<RawSchedule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: Spanned<String>,
    cron: Spanned<String>,
    #[serde(default)]
    tz: Option<Spanned<String>>,
    what: Spanned<What>,
    #[serde(default)]
    overlap: Option<Spanned<Overlap>>,
    #[serde(default)]
    missed: Option<Spanned<Missed>>,
    #[serde(default)]
    grace_secs: Option<Spanned<u64>>,
    #[serde(default)]
    jitter_secs: Option<Spanned<u64>>,
    #[serde(default)]
    paused: Option<Spanned<bool>>,
}

/// Parses the `[[schedule]]` tables of a state file. `file` names it in errors;
/// `min_interval_ms` is the node's `--min-schedule-interval`.
pub fn parse_schedule_tables(
    file: &str,
    text: &str,
    min_interval_ms: Millis,
) -> Result<Vec<ScheduleSpec>, StateFileError> {
    let src = Source { file, text };
    let raw: RawFile = src.parse()?;
    src.tables(
        "schedule",
        MAX_SCHEDULES,
        raw.schedule,
        |rs| &rs.name,
        |i, table, rs| {
            let field = |f: &str| Some(format!("schedule[{i}].{f}"));
            let spec = ScheduleSpec {
                name: rs.name.get_ref().clone(),
                cron: rs.cron.get_ref().clone(),
                tz: rs
                    .tz
                    .as_ref()
                    .map_or_else(|| "UTC".to_string(), |t| t.get_ref().clone()),
                what: rs.what.get_ref().clone(),
                overlap: rs
                    .overlap
                    .as_ref()
                    .map_or_else(Overlap::default, |o| *o.get_ref()),
                missed: rs
                    .missed
                    .as_ref()
                    .map_or_else(Missed::default, |m| *m.get_ref()),
                grace_secs: rs
                    .grace_secs
                    .as_ref()
                    .map_or(DEFAULT_GRACE_SECS, |g| *g.get_ref()),
                jitter_secs: rs.jitter_secs.as_ref().map_or(0, |j| *j.get_ref()),
                paused: rs.paused.as_ref().is_some_and(|p| *p.get_ref()),
            };
            if let Err(fe) = validate_spec(&spec, min_interval_ms) {
                let (name, span) = match fe.field {
                    "name" => ("name", Some(rs.name.span())),
                    "cron" => ("cron", Some(rs.cron.span())),
                    "tz" => ("tz", rs.tz.as_ref().map(|s| s.span())),
                    "grace_secs" => ("grace_secs", rs.grace_secs.as_ref().map(|s| s.span())),
                    "jitter_secs" => ("jitter_secs", rs.jitter_secs.as_ref().map(|s| s.span())),
                    "missed" => ("missed", rs.missed.as_ref().map(|s| s.span())),
                    other => (other, Some(rs.what.span())),
                };
                return Err(src.err(span.or(Some(table)), field(name), fe.message));
            }
            Ok(spec)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::JobSpec;

    const GOOD: &str = r#"
[[state]]
name = "motd"
targets = { agents = ["a1"] }
check = "true"
apply = "true"

[[schedule]]
name = "nightly"
cron = "30 2 * * *"
tz = "Europe/Berlin"
overlap = "skip"
missed = { catch_up = 3 }
what = { job = { command = "backup", selector = "role=db", all = true } }

[[schedule]]
name = "tick"
cron = "@hourly"
[schedule.what.job]
argv = ["echo", "hi"]
node_id = "a1"
env = { MODE = "fast" }
"#;

    fn error_of(text: &str) -> StateFileError {
        parse_schedule_tables("s.toml", text, 60_000).unwrap_err()
    }

    #[test]
    fn tables_parse_with_the_api_defaults() {
        let s = parse_schedule_tables("s.toml", GOOD, 60_000).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "nightly");
        assert_eq!(s[0].tz, "Europe/Berlin");
        assert_eq!(s[0].overlap, Overlap::Skip);
        assert_eq!(s[0].missed, Missed::CatchUp(3));
        assert!(s[0].job().unwrap().all);
        assert_eq!(s[0].job().unwrap().selector.to_string(), "role=db");
        assert_eq!(s[1].tz, "UTC");
        assert_eq!(s[1].overlap, Overlap::Allow);
        assert_eq!(s[1].missed, Missed::Once);
        assert_eq!(s[1].grace_secs, DEFAULT_GRACE_SECS);
        assert!(!s[1].paused);
        assert_eq!(
            s[1].what,
            What::Job(JobSpec {
                argv: Some(vec!["echo".into(), "hi".into()]),
                node_id: Some("a1".into()),
                env: [("MODE".to_string(), "fast".to_string())].into(),
                ..JobSpec::default()
            })
        );
        // The same file's schedule as JSON is the same spec: the fields mirror the API's.
        let json: ScheduleSpec = serde_json::from_value(serde_json::json!({
            "name": "tick", "cron": "@hourly",
            "what": {"job": {"argv": ["echo", "hi"], "node_id": "a1", "env": {"MODE": "fast"}}}
        }))
        .unwrap();
        assert_eq!(json, s[1]);
        assert!(
            parse_schedule_tables("s.toml", "", 60_000)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_bad_table_is_refused_naming_its_line_and_field() {
        let e = error_of(&GOOD.replace("30 2 * * *", "30 25 * * *"));
        assert_eq!((e.line, e.field.as_deref()), (10, Some("schedule[0].cron")));
        assert!(e.message.contains("hour"), "{e}");
        assert!(
            e.to_string().starts_with("s.toml:10:8: schedule[0].cron:"),
            "{e}"
        );

        let e = error_of(&GOOD.replace("Europe/Berlin", "Europe/Nowhere"));
        assert_eq!((e.line, e.field.as_deref()), (11, Some("schedule[0].tz")));

        let e = error_of(&GOOD.replace("@hourly", "* * * * * *"));
        assert_eq!(e.field.as_deref(), Some("schedule[1].cron"));
        assert!(e.message.contains("--min-schedule-interval"), "{e}");

        let e = error_of(&GOOD.replace("catch_up = 3", "catch_up = 0"));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (13, Some("schedule[0].missed"))
        );

        let e = error_of(&GOOD.replace("name = \"tick\"", "name = \"nightly\""));
        assert_eq!(e.field.as_deref(), Some("schedule[1].name"));
        assert!(e.message.contains("already declared by schedule[0]"), "{e}");

        let e = error_of(&GOOD.replace("argv = [\"echo\", \"hi\"]", ""));
        assert_eq!(e.field.as_deref(), Some("schedule[1].what.job"));
    }

    #[test]
    fn unknown_fields_are_refused_with_a_position() {
        let e = error_of(&GOOD.replace("overlap = \"skip\"", "overlap = \"skip\"\nretries = 2"));
        assert_eq!(e.line, 13, "{e}");
        assert!(e.message.contains("retries"), "{e}");
        let e = error_of(&GOOD.replace("all = true", "all = true, bogus = 1"));
        assert!(e.message.contains("bogus"), "{e}");
        let e = error_of(&GOOD.replace("overlap = \"skip\"", "overlap = \"sometimes\""));
        assert_eq!(e.line, 12, "{e}");
    }
}
