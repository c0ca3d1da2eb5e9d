//! Parsing of `state.toml`: the file's syntax, unknown fields and every rule of
//! [`super::validate_spec`], with errors that name the file, line, column and field
//! ([`StateFileError`], kept structured up to the API).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{
    DEFAULT_INTERVAL_SECS, DEFAULT_TIMEOUT_SECS, MAX_STATES, StateRollout, StateSpec, Targets,
    validate_spec,
};

/// An error in a state file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct StateFileError {
    pub file: String,
    /// 1-based line and column; 0 when the position is unknown.
    pub line: usize,
    pub column: usize,
    /// The field concerned (`state[2].interval`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    state: Vec<Spanned<RawState>>,
    /// `[[schedule]]` tables: parsed by `crate::schedule::parse_schedule_tables`.
    #[serde(default, rename = "schedule")]
    _schedule: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    name: Spanned<String>,
    targets: Spanned<Targets>,
    check: Spanned<String>,
    apply: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    desired_exit_code: Option<Spanned<i32>>,
    #[serde(default)]
    rollout: Option<Spanned<StateRollout>>,
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The text of a state file and its name, for the parsers of its tables (`[[state]]` here,
/// `[[schedule]]` in `crate::schedule`): their errors say where, in the same way.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at `span` (position unknown without one).
    pub fn err(
        &self,
        span: Option<Range<usize>>,
        field: Option<String>,
        message: String,
    ) -> StateFileError {
        let (line, column) = span.map_or((0, 0), |s| position(self.text, s.start));
        StateFileError {
            file: self.file.to_string(),
            line,
            column,
            field,
            message,
        }
    }

    /// The file's TOML as `T`; a syntax error or an unknown field names its position.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, StateFileError> {
        toml::from_str(self.text)
            .map_err(|e| self.err(e.span(), None, e.message().trim().to_string()))
    }

    /// The specs of the file's `[[table]]`s, in file order: at most `max` of them, each built
    /// and checked by `build` from its index, its table's span and the table as read, and each
    /// with a name (`name` finds it in the table) that no earlier table declared.
    pub fn tables<R, S>(
        &self,
        table: &str,
        max: usize,
        raw: Vec<Spanned<R>>,
        name: impl Fn(&R) -> &Spanned<String>,
        mut build: impl FnMut(usize, Range<usize>, &R) -> Result<S, StateFileError>,
    ) -> Result<Vec<S>, StateFileError> {
        self.at_most(raw.len(), max, &format!("{table}s"))?;
        let mut out = Vec::with_capacity(raw.len());
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, r) in raw.into_iter().enumerate() {
            let span = r.span();
            let r = r.into_inner();
            let spec = build(i, span, &r)?;
            self.unique_name(&mut names, table, i, name(&r))?;
            out.push(spec);
        }
        Ok(out)
    }

    /// Refuses a file with more than `max` tables of a kind (`what`: `states`, `schedules`).
    fn at_most(&self, count: usize, max: usize, what: &str) -> Result<(), StateFileError> {
        if count > max {
            return Err(self.err(None, None, format!("at most {max} {what} in one file")));
        }
        Ok(())
    }

    /// Records that table `table[i]` declares `name`, refusing a name an earlier table of the
    /// file declared (`names` maps each name to the first table's index).
    fn unique_name(
        &self,
        names: &mut BTreeMap<String, usize>,
        table: &str,
        i: usize,
        name: &Spanned<String>,
    ) -> Result<(), StateFileError> {
        if let Some(first) = names.insert(name.get_ref().clone(), i) {
            return Err(self.err(
                Some(name.span()),
                Some(format!("{table}[{i}].name")),
                format!(
                    "{:?} is already declared by {table}[{first}]",
                    name.get_ref()
                ),
            ));
        }
        Ok(())
    }
}

/// Parses a `state.toml`. `file` names it in errors.
pub fn parse_state_file(file: &str, text: &str) -> Result<Vec<StateSpec>, StateFileError> {
    let src = Source { file, text };
    let raw: RawFile = src.parse()?;
    src.tables(
        "state",
        MAX_STATES,
        raw.state,
        |rs| &rs.name,
        |i, _, rs| {
            let field = |f: &str| Some(format!("state[{i}].{f}"));
            let duration = |v: &Option<Spanned<String>>, name: &str, default: u64| match v {
                None => Ok(default),
                Some(s) => crate::model::parse_duration(s.get_ref())
                    .and_then(|d| {
                        if d.subsec_millis() != 0 {
                            Err("use whole seconds".to_string())
                        } else {
                            Ok(d.as_secs())
                        }
                    })
                    .map_err(|m| src.err(Some(s.span()), field(name), m)),
            };
            let spec = StateSpec {
                name: rs.name.get_ref().clone(),
                targets: rs.targets.get_ref().clone(),
                check: rs.check.get_ref().clone(),
                apply: rs.apply.get_ref().clone(),
                interval_secs: duration(&rs.interval, "interval", DEFAULT_INTERVAL_SECS)?,
                timeout_secs: duration(&rs.timeout, "timeout", DEFAULT_TIMEOUT_SECS)?,
                env: rs
                    .env
                    .as_ref()
                    .map(|e| e.get_ref().clone())
                    .unwrap_or_default(),
                desired_exit_code: rs.desired_exit_code.as_ref().map_or(0, |c| *c.get_ref()),
                rollout: rs.rollout.as_ref().map(|r| r.get_ref().clone()),
            };
            if let Err(fe) = validate_spec(&spec) {
                let span = match fe.field {
                    "name" => Some(rs.name.span()),
                    "targets" => Some(rs.targets.span()),
                    "check" => Some(rs.check.span()),
                    "apply" => Some(rs.apply.span()),
                    "interval" => rs.interval.as_ref().map(|s| s.span()),
                    "timeout" => rs.timeout.as_ref().map(|s| s.span()),
                    "env" => rs.env.as_ref().map(|s| s.span()),
                    "desired_exit_code" => rs.desired_exit_code.as_ref().map(|s| s.span()),
                    "rollout.max_concurrency" | "rollout.max_errors" => {
                        rs.rollout.as_ref().map(|s| s.span())
                    }
                    _ => None,
                };
                return Err(src.err(span, field(fe.field), fe.message));
            }
            Ok(spec)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{diff_specs, validate_set};

    const GOOD: &str = r#"
[[state]]
name = "motd"
targets = { labels = { role = "web" } }
check = "grep -q fluxforge /etc/motd"
apply = "echo fluxforge >> /etc/motd"
interval = "30s"
timeout = "1m"

[[state]]
name = "pkg"
targets = { agents = ["agent-1", "agent-2"] }
check = "test -f /tmp/x"
apply = "touch /tmp/x"
env = { MODE = "fast" }
desired_exit_code = 3
"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let s = parse_state_file("state.toml", GOOD).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "motd");
        assert_eq!(s[0].interval_secs, 30);
        assert_eq!(s[0].timeout_secs, 60);
        assert_eq!(s[0].targets.labels.to_string(), "role=web");
        assert_eq!(s[1].interval_secs, DEFAULT_INTERVAL_SECS);
        assert_eq!(s[1].targets.agents, vec!["agent-1", "agent-2"]);
        assert_eq!(s[1].env["MODE"], "fast");
        assert_eq!(s[1].desired_exit_code, 3);
        assert!(validate_set(&s).is_ok());
    }

    fn error_of(text: &str) -> StateFileError {
        parse_state_file("s.toml", text).unwrap_err()
    }

    #[test]
    fn semantic_errors_point_at_line_and_field() {
        let bad = GOOD.replace("interval = \"30s\"", "interval = \"30y\"");
        let e = error_of(&bad);
        assert_eq!((e.line, e.field.as_deref()), (7, Some("state[0].interval")));
        assert!(
            e.to_string().starts_with("s.toml:7:12: state[0].interval:"),
            "{e}"
        );

        let bad = GOOD.replace("check = \"test -f /tmp/x\"", "check = \"  \"");
        let e = error_of(&bad);
        assert_eq!((e.line, e.field.as_deref()), (13, Some("state[1].check")));

        let bad = GOOD.replace("name = \"pkg\"", "name = \"motd\"");
        let e = error_of(&bad);
        assert_eq!(e.line, 11);
        assert!(e.message.contains("already declared by state[0]"), "{e}");

        let bad = GOOD.replace("agents = [\"agent-1\", \"agent-2\"]", "agents = [\"a/b\"]");
        assert_eq!(error_of(&bad).field.as_deref(), Some("state[1].targets"));

        let bad = GOOD.replace("MODE = \"fast\"", "\"1BAD\" = \"x\"");
        assert_eq!(error_of(&bad).field.as_deref(), Some("state[1].env"));
    }

    #[test]
    fn syntax_and_unknown_fields_are_rejected_with_a_position() {
        let e = error_of("[[state]]\nname = \"x\"\ncheck = \n");
        assert_eq!(e.line, 3);
        let e = error_of(&GOOD.replace("timeout = \"1m\"", "timeout = \"1m\"\nretries = 3"));
        assert_eq!(e.line, 9, "{e}");
        assert!(e.message.contains("retries"), "{e}");
        let e = error_of("[[state]]\nname = \"x\"\ncheck = \"true\"\napply = \"true\"\n");
        assert!(e.message.contains("targets"), "{e}");
        let e =
            error_of("[[state]]\nname = \"x\"\ntargets = {}\ncheck = \"true\"\napply = \"true\"\n");
        assert_eq!((e.line, e.field.as_deref()), (3, Some("state[0].targets")));
        // A bad selector expression: the file's line, and the byte in the expression.
        let e = error_of(
            "[[state]]\nname = \"x\"\ntargets = { selector = \"role in (web\" }\ncheck = \"true\"\napply = \"true\"\n",
        );
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("at byte 12"), "{e}");
    }

    #[test]
    fn a_rollout_table_is_read_with_the_ad_hoc_rules_and_bad_limits_name_their_field() {
        let with = |r: &str| GOOD.replace("timeout = \"1m\"", &format!("timeout = \"1m\"\n{r}"));
        let s = parse_state_file(
            "s.toml",
            &with("rollout = { max_concurrency = \"20%\", max_errors = 1 }"),
        )
        .unwrap();
        let r = s[0].rollout.as_ref().unwrap();
        assert_eq!(r.display(), "max_concurrency=20% max_errors=1");
        assert!(s[1].rollout.is_none());
        for (table, field, says) in [
            (
                "rollout = { max_concurrency = \"150%\" }",
                "state[0].rollout.max_concurrency",
                "1% to 100%",
            ),
            (
                "rollout = { max_concurrency = \"0%\" }",
                "state[0].rollout.max_concurrency",
                "1% to 100%",
            ),
            (
                "rollout = { max_concurrency = 0 }",
                "state[0].rollout.max_concurrency",
                "at least 1",
            ),
            (
                "rollout = { max_errors = \"101%\" }",
                "state[0].rollout.max_errors",
                "1% to 100%",
            ),
            (
                "rollout = { max_errors = \"many\" }",
                "state[0].rollout.max_errors",
                "neither a count",
            ),
        ] {
            let e = error_of(&with(table));
            assert_eq!(
                (e.line, e.field.as_deref()),
                (9, Some(field)),
                "{table}: {e}"
            );
            assert!(e.message.contains(says), "{table}: {e}");
        }
        let e = error_of(&with("rollout = { max_concurrency = 2, canary = 1 }"));
        assert_eq!(e.line, 9, "{e}");
        assert!(e.message.contains("canary"), "{e}");
        // The rollout is part of the state: changing it is a change.
        let mut n = s[0].clone();
        n.rollout = None;
        let d = diff_specs(&s[0], &n);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].field.as_str(), d[0].from.as_str(), d[0].to.as_str()),
            ("rollout", "max_concurrency=20% max_errors=1", "none")
        );
    }

    #[test]
    fn an_empty_file_declares_nothing() {
        assert!(parse_state_file("s.toml", "").unwrap().is_empty());
    }

    #[test]
    fn diffs_list_only_changed_fields() {
        let s = parse_state_file("s.toml", GOOD).unwrap();
        assert!(diff_specs(&s[0], &s[0]).is_empty());
        let mut n = s[0].clone();
        n.interval_secs = 120;
        n.check = "true".into();
        let d = diff_specs(&s[0], &n);
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["check", "interval"]);
        assert_eq!((d[1].from.as_str(), d[1].to.as_str()), ("30s", "2m"));
    }
}
