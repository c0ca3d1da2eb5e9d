//! Attempts at running a job: their state and result, the task an agent receives, and the
//! output chunks it streams. Attempt ids are `<job_id>.<number>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CommandSpec, Millis};

/// State of one attempt at running a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Written to the agent's inbox, not yet started.
    Assigned,
    Running,
    Finished,
    /// Taken away from its agent (agent dead or never started it); a later attempt may exist.
    Abandoned,
}

/// How an attempt ended, as reported by the agent.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptResult {
    /// `exited`, `signaled`, `timed_out`, `cancelled` or `failed_to_start`.
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub message: Option<String>,
}

/// Body of `POST /v1/agent/attempts/{id}/result`: how the attempt ended and, optionally, the
/// last of its output, recorded in the same step as the result (one commit instead of one per
/// chunk and one for the result). Without `output` it is exactly an [`AttemptResult`], so an
/// agent that sends no output speaks to servers that do not know the field.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultReport {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub message: Option<String>,
    /// Output chunks not uploaded yet, numbered like those of the output endpoint (the next
    /// `seq` first, without gaps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<OutputChunk>,
    /// How long the run took, as the agent measured it, when it did not report the start (a
    /// short run is started and ended by its result): the attempt's start is then recorded
    /// that long before the result, but not before its assignment.
    pub ran_ms: Option<u64>,
}

impl ResultReport {
    /// Most output chunks one result may carry.
    pub const MAX_CHUNKS: usize = 16;

    pub fn new(result: AttemptResult, output: Vec<OutputChunk>) -> ResultReport {
        ResultReport {
            outcome: result.outcome,
            exit_code: result.exit_code,
            signal: result.signal,
            message: result.message,
            output,
            ran_ms: None,
        }
    }

    /// The result as recorded on the attempt, the output carried with it and how long the
    /// run took.
    pub fn into_parts(self) -> (AttemptResult, Vec<OutputChunk>, Option<u64>) {
        let result = AttemptResult {
            outcome: self.outcome,
            exit_code: self.exit_code,
            signal: self.signal,
            message: self.message,
        };
        (result, self.output, self.ran_ms)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Exited,
    Signaled,
    TimedOut,
    Cancelled,
    FailedToStart,
}

/// One attempt.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt_id: String,
    pub job_id: String,
    pub number: u32,
    pub agent: String,
    pub state: AttemptState,
    pub assigned_at: Millis,
    /// If still `Assigned` at this time, the attempt is taken back and requeued.
    pub start_deadline: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub result: Option<AttemptResult>,
    pub abandoned_reason: Option<String>,
    /// Output bytes stored (at most the cap).
    #[serde(default)]
    pub output_bytes: u64,
    /// Output bytes received but not stored because of the cap.
    #[serde(default)]
    pub output_dropped: u64,
    /// Next output chunk sequence number expected.
    #[serde(default)]
    pub output_seq: u64,
    /// What the stored chunks take in the store (key and record, not just the data); the
    /// output cap applies to this.
    #[serde(default)]
    pub output_stored_bytes: u64,
    /// The agent registration the attempt was given to (see [`super::Registration`]); only it
    /// may start it, upload its output and report its result.
    pub registration: Option<String>,
}

/// What an agent receives from its inbox: a task to run, or a request to cancel one.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub attempt_id: String,
    pub job_id: String,
    pub command: CommandSpec,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret variables: set in the environment like `env`, and masked in the output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub timeout_secs: u64,
    #[serde(default)]
    pub cancel: bool,
    /// Store revision of this inbox entry; agents poll with `after=` the highest seen.
    #[serde(default)]
    pub revision: u64,
    /// The registration the task was given to; only its poll returns it (with the secrets).
    pub registration: Option<String>,
}

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Body of `POST /v1/agent/attempts/{id}/output`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputChunk {
    /// Sequence number of this chunk within the attempt, from 0, without gaps.
    pub seq: u64,
    pub stream: Stream,
    /// Chunk bytes as (lossy) UTF-8 text.
    pub data: String,
}

/// A stored chunk of output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChunk {
    pub seq: u64,
    pub stream: Stream,
    pub data: String,
}

/// Attempt ids are `<job_id>.<number>`, so the job is known from the attempt id alone.
pub fn attempt_id(job_id: &str, number: u32) -> String {
    format!("{job_id}.{number}")
}

/// Splits an attempt id into job id and number.
pub fn parse_attempt_id(attempt_id: &str) -> Option<(&str, u32)> {
    let (job, n) = attempt_id.rsplit_once('.')?;
    Some((job, n.parse().ok()?))
}

/// Whether `s` is an attempt id as the server makes them: `<job_id>.<number>`, the whole an
/// identifier ([`super::valid_ident`]) whose job id starts with a letter or digit, so that it is
/// safe as a file name and as a URL path segment (never `.`, `..` or a hidden name).
pub fn valid_attempt_id(s: &str) -> bool {
    super::valid_ident(s)
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && parse_attempt_id(s).is_some_and(|(job, _)| super::valid_ident(job))
}

/// Bytes one stored chunk takes: its key path and its encoded record.
pub fn stored_chunk_cost(key_path: &str, chunk: &StoredChunk) -> u64 {
    (key_path.len() + serde_json::to_vec(chunk).map_or(0, |v| v.len())) as u64
}

/// The longest prefix of `data` (on a character boundary) whose JSON string encoding takes at
/// most `budget` bytes, with the bytes it takes.
pub fn json_prefix_within(data: &str, budget: u64) -> (usize, u64) {
    let mut used = 0u64;
    for (i, c) in data.char_indices() {
        let n = json_escaped_len(c) as u64;
        if used + n > budget {
            return (i, used);
        }
        used += n;
    }
    (data.len(), used)
}

/// Bytes serde_json writes for `c` inside a string.
fn json_escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_are_checked_like_the_server_makes_them() {
        assert!(valid_attempt_id("j-0192abc.3"));
        assert!(valid_attempt_id(&attempt_id("j-01J8.x_y", 12)));
        for bad in [
            "",
            "..",
            "../x.1",
            "..1",
            ".hidden.1",
            "j-1",
            "j-1.x",
            "a/b.1",
            "j 1.1",
            "j%2F.1",
            "j-1.1/../..",
            "\u{0}.1",
        ] {
            assert!(!valid_attempt_id(bad), "{bad:?} accepted");
        }
        assert!(!valid_attempt_id(&format!("{}.1", "j".repeat(200))));
    }

    #[test]
    fn the_json_prefix_matches_serde_json_encoding() {
        let all: String = (0u32..0x250).filter_map(char::from_u32).collect();
        for c in all.chars().chain(['\u{2028}', '\u{1F600}']) {
            let enc = serde_json::to_string(&c.to_string()).unwrap();
            assert_eq!(json_escaped_len(c), enc.len() - 2, "{c:?}");
        }
        let s = "ab\"c\u{1}é";
        let full = serde_json::to_string(s).unwrap().len() as u64 - 2;
        assert_eq!(json_prefix_within(s, full), (s.len(), full));
        assert_eq!(json_prefix_within(s, 3), (2, 2));
        assert_eq!(json_prefix_within(s, 4), (3, 4));
        // Never inside a character.
        let (n, _) = json_prefix_within(s, full - 1);
        assert!(s.is_char_boundary(n));
        assert_eq!(n, s.len() - 'é'.len_utf8());
    }

    #[test]
    fn a_report_without_output_is_the_plain_result_on_the_wire() {
        let result = AttemptResult {
            outcome: Outcome::Exited,
            exit_code: Some(2),
            signal: None,
            message: Some("m".into()),
        };
        let report = ResultReport::new(result.clone(), Vec::new());
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::to_value(&result).unwrap()
        );
        // An older agent's body parses, with no output.
        let old: ResultReport =
            serde_json::from_value(serde_json::to_value(&result).unwrap()).unwrap();
        assert_eq!(old.into_parts(), (result.clone(), Vec::new(), None));
        // Output travels and comes back out; unknown fields are refused.
        let chunk = OutputChunk {
            seq: 3,
            stream: Stream::Stderr,
            data: "tail\n".into(),
        };
        let mut with = ResultReport::new(result.clone(), vec![chunk.clone()]);
        with.ran_ms = Some(42);
        let back: ResultReport =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.into_parts(), (result, vec![chunk], Some(42)));
        let unknown = serde_json::json!({"outcome": "exited", "outputs": []});
        assert!(serde_json::from_value::<ResultReport>(unknown).is_err());
    }

    #[test]
    fn a_chunk_costs_its_key_and_record() {
        let c = StoredChunk {
            seq: 7,
            stream: Stream::Stdout,
            data: "x".into(),
        };
        let cost = stored_chunk_cost("output/j-1.1/0000000007", &c);
        assert!(cost > 40, "{cost}");
        assert_eq!(
            cost,
            ("output/j-1.1/0000000007".len() + serde_json::to_vec(&c).unwrap().len()) as u64
        );
    }
}
