//! `fluxctl rollout list|get|wait|pause|resume|cancel|retry`, and the rollout that `fluxctl job
//! run -l SEL --all --max-concurrency ...` creates: the control plane drives it (closing the
//! terminal does not stop it); `--wait` follows it, with a progress bar on a terminal and one
//! line per target change otherwise, then a per-target table (`-o json`: the final record).
//!
//! Exit codes of a followed rollout: 0 every target succeeded, 1 some failed within the
//! budget, 3 the budget (or a canary) stopped it, 130 it was cancelled.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use flux_core::client::ApiClient;
use flux_core::rollout::{
    LimitSpec, OnHalt, Rollout, RolloutSpec, RolloutStatus, RolloutSummary, TargetState,
};
use reqwest::Method;
use serde_json::json;

use crate::context::Ctx;
use crate::error::{CliResult, exit_with};
use crate::output::{Output, Render, age, emit, print_json, short, status_line, table};

#[derive(Subcommand, Debug)]
pub enum RolloutCmd {
    /// List rollouts, newest first.
    List {
        /// Rollouts per page (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// Show a rollout and its targets.
    Get { id: String },
    /// Follow a rollout until it finishes; exits 0, 1, 3 or 130 like `job run --wait`.
    Wait { id: String },
    /// Start no new target until resumed (running ones finish).
    Pause { id: String },
    /// Resume a paused rollout.
    Resume { id: String },
    /// Cancel a rollout: nothing new starts, running targets are cancelled.
    Cancel { id: String },
    /// Run the failed, skipped and not started targets of a finished rollout again, as a new
    /// rollout that references it.
    Retry {
        id: String,
        /// Follow the new rollout until it finishes.
        #[arg(long, short = 'w')]
        wait: bool,
    },
}

/// The rollout options of `job run --all`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RolloutFlags {
    /// With --all: run as a rollout, this many targets at once (a count or a percentage of
    /// the targets, rounded up, at least 1).
    #[arg(long, value_name = "N|P%", requires = "all")]
    pub max_concurrency: Option<String>,
    /// With --all: errors tolerated over the whole rollout (count or percentage); one more
    /// stops it. Default 0 in a rollout.
    #[arg(long, value_name = "N|P%", requires = "all")]
    pub max_errors: Option<String>,
    /// With --all: that many targets run first, alone; any canary failure stops the rollout.
    #[arg(long, value_name = "N", requires = "all")]
    pub canary: Option<u32>,
    /// With --all: a shell command run on each target after its job succeeded; its failure
    /// is an error.
    #[arg(long, value_name = "CMD", requires = "all")]
    pub verify: Option<String>,
    /// With --all: run in batches of --max-concurrency, waiting this long between them.
    #[arg(long, value_name = "DURATION", value_parser = flux_core::model::parse_duration, requires = "all")]
    pub batch_wait: Option<Duration>,
    /// With --all: count a target whose agent is offline at its turn as an error.
    #[arg(long, requires = "all")]
    pub offline_is_error: bool,
    /// With --all: when the budget is spent, let running targets finish (wait) or cancel them.
    #[arg(long, value_name = "WHAT", value_parser = ["wait", "cancel"], requires = "all")]
    pub on_halt: Option<String>,
}

impl RolloutFlags {
    /// Whether any rollout option was given.
    pub fn any(&self) -> bool {
        self.max_concurrency.is_some()
            || self.max_errors.is_some()
            || self.canary.is_some()
            || self.verify.is_some()
            || self.batch_wait.is_some()
            || self.offline_is_error
            || self.on_halt.is_some()
    }
}

/// The rollout spec of `job run --all` with rollout options. Refused, naming the flag, when
/// the job asks for what a rollout does not carry (rather than dropping it silently).
pub fn spec_of(job: &flux_core::model::SubmitJob, f: &RolloutFlags) -> Result<RolloutSpec> {
    let dropped = [
        ("--secret-env", !job.secret_env.is_empty()),
        ("--priority", job.priority.is_some()),
        ("--attempts", job.max_attempts.is_some()),
        ("--allow-unknown-node", job.allow_unknown_node),
        (
            "--idempotency-key (or FLUX_IDEMPOTENCY_KEY)",
            job.idempotency_key.is_some(),
        ),
    ];
    if let Some((flag, _)) = dropped.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} cannot be used with rollout options (--max-concurrency, --max-errors, \
             --canary, --verify, --batch-wait, --offline-is-error, --on-halt): a rollout does \
             not carry it"
        );
    }
    Ok(RolloutSpec {
        command: job.command.clone(),
        argv: job.argv.clone(),
        selector: job.selector.clone(),
        nodes: Vec::new(),
        env: job.env.clone(),
        workdir: job.workdir.clone(),
        timeout_secs: job.timeout_secs,
        max_concurrency: f.max_concurrency.clone().map(LimitSpec::Text),
        max_errors: f.max_errors.clone().map(LimitSpec::Text),
        canary: f.canary,
        verify: f.verify.clone(),
        batch_wait_secs: f.batch_wait.map(|d| d.as_secs()),
        offline_is_error: f.offline_is_error,
        on_halt: match f.on_halt.as_deref() {
            Some("cancel") => OnHalt::Cancel,
            _ => OnHalt::Wait,
        },
    })
}

/// Creates a rollout; with `wait` follows it to its end.
pub async fn start(ctx: &Ctx, api: &ApiClient, spec: &RolloutSpec, wait: bool) -> CliResult {
    let r: Rollout = api.post("/v1/rollouts", spec).await?;
    created(ctx, api, r, wait).await
}

/// Prints a created rollout, or with `wait` follows it to its end.
pub async fn created(ctx: &Ctx, api: &ApiClient, r: Rollout, wait: bool) -> CliResult {
    if !wait {
        emit(ctx.out, &Created(&r))?;
        return Ok(());
    }
    follow(ctx, api, r).await
}

struct Created<'a>(&'a Rollout);

impl serde::Serialize for Created<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Created<'_> {
    fn render(&self) -> String {
        format!(
            "{} ({} targets, {} at once, {} errors allowed)\n",
            self.0.rollout_id,
            self.0.targets.len(),
            self.0.params.max_concurrency,
            self.0.params.max_errors
        )
    }
}

pub async fn run(ctx: &Ctx, cmd: RolloutCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        RolloutCmd::List { limit } => {
            let list: Vec<RolloutSummary> = api.get(&format!("/v1/rollouts?limit={limit}")).await?;
            emit(ctx.out, list.as_slice())?;
            Ok(())
        }
        RolloutCmd::Get { id } => {
            let r: Rollout = api.get(&format!("/v1/rollouts/{id}")).await?;
            emit(ctx.out, &r)?;
            Ok(())
        }
        RolloutCmd::Wait { id } => {
            let r: Rollout = api.get(&format!("/v1/rollouts/{id}")).await?;
            follow(ctx, &api, r).await
        }
        RolloutCmd::Pause { id } => control(ctx, &api, &id, "pause").await,
        RolloutCmd::Resume { id } => control(ctx, &api, &id, "resume").await,
        RolloutCmd::Cancel { id } => control(ctx, &api, &id, "cancel").await,
        RolloutCmd::Retry { id, wait } => {
            let r: Rollout = api
                .post(&format!("/v1/rollouts/{id}/retry"), &json!({}))
                .await?;
            if !wait {
                emit(ctx.out, &Created(&r))?;
                return Ok(());
            }
            follow(ctx, &api, r).await
        }
    }
}

async fn control(ctx: &Ctx, api: &ApiClient, id: &str, what: &str) -> CliResult {
    let r: Rollout = api
        .post(&format!("/v1/rollouts/{id}/{what}"), &json!({}))
        .await?;
    emit(
        ctx.out,
        &crate::output::view(&r, |r| {
            format!("rollout {} {}\n", r.rollout_id, r.status.as_str())
        }),
    )?;
    Ok(())
}

/// The exit code of a finished rollout.
pub fn exit_code(status: RolloutStatus) -> u8 {
    match status {
        RolloutStatus::Succeeded => 0,
        RolloutStatus::Halted => 3,
        RolloutStatus::Cancelled => 130,
        _ => 1,
    }
}

/// One line for a target's change.
fn target_line(t: &flux_core::rollout::Target) -> String {
    let mut s = format!("{} {}", t.node_id, t.state.as_str());
    if let Some(j) = t.job_id.as_deref() {
        s.push_str(&format!(" job={j}"));
    }
    if let Some(e) = &t.error {
        s.push_str(&format!(" ({e})"));
    }
    s
}

/// Polls the rollout until it finishes, showing progress on stderr; prints the per-target
/// table (or the record as JSON) and exits by its status.
async fn follow(ctx: &Ctx, api: &ApiClient, mut r: Rollout) -> CliResult {
    let quiet = ctx.out.is_json();
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(r.targets.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} rollout [{bar:30}] {pos}/{len} targets {msg} ({elapsed})",
            )
            .expect("valid template"),
        );
        b
    });
    if !quiet && bar.is_none() {
        eprintln!(
            "rollout {} created: {} targets, {} at once, {} errors allowed",
            r.rollout_id,
            r.targets.len(),
            r.params.max_concurrency,
            r.params.max_errors
        );
    }
    let mut seen: BTreeMap<String, TargetState> = BTreeMap::new();
    let mut status = None;
    loop {
        for t in &r.targets {
            if seen.get(&t.node_id) != Some(&t.state) {
                seen.insert(t.node_id.clone(), t.state);
                if t.state != TargetState::Pending && !quiet && bar.is_none() {
                    eprintln!("{}", target_line(t));
                }
            }
        }
        if status != Some(r.status) {
            status = Some(r.status);
            if !quiet && bar.is_none() {
                eprintln!(
                    "{}",
                    status_line(
                        "rollout",
                        &r.rollout_id,
                        r.status.as_str(),
                        r.halt_reason.as_deref()
                    )
                );
            }
        }
        if let Some(b) = &bar {
            let done = r.targets.iter().filter(|t| t.state.is_done()).count();
            let failed = r
                .targets
                .iter()
                .filter(|t| t.state == TargetState::Failed)
                .count();
            b.set_position(done as u64);
            b.set_message(format!("{} ({failed} failed)", r.status.as_str()));
        }
        if r.status.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        r = api
            .call(
                Method::GET,
                &format!("/v1/rollouts/{}", r.rollout_id),
                None,
                Duration::from_secs(30),
            )
            .await
            .context("reading the rollout")?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match ctx.out {
        Output::Json => print_json(&r)?,
        _ => print!("{}", r.render()),
    }
    exit_with(exit_code(r.status))
}

impl Render for Rollout {
    fn render(&self) -> String {
        let mut text = status_line(
            "rollout",
            &self.rollout_id,
            self.status.as_str(),
            self.halt_reason.as_deref(),
        );
        text.push('\n');
        if let Some(r) = &self.retry_of {
            text.push_str(&format!("retry of {r}\n"));
        }
        let mut t = table(&["TARGET", "STATE", "EXIT", "JOB", "ERROR"]);
        for tg in &self.targets {
            t.add_row(vec![
                format!("{}{}", tg.node_id, if tg.canary { " (canary)" } else { "" }),
                tg.state.as_str().to_string(),
                tg.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                tg.job_id.clone().unwrap_or_else(|| "-".into()),
                tg.error.clone().unwrap_or_default(),
            ]);
        }
        text.push_str(&format!("{t}\n"));
        text
    }
}

impl Render for [RolloutSummary] {
    fn render(&self) -> String {
        let mut t = table(&[
            "ROLLOUT", "STATUS", "TARGETS", "OK", "FAILED", "AGE", "COMMAND",
        ]);
        for r in self {
            let n = |s| r.counts.get(&s).copied().unwrap_or(0);
            t.add_row(vec![
                r.rollout_id.clone(),
                r.status.as_str().to_string(),
                r.targets.to_string(),
                n(TargetState::Succeeded).to_string(),
                (n(TargetState::Failed) + n(TargetState::Skipped)).to_string(),
                age(r.created_at),
                short(&r.command, 40),
            ]);
        }
        format!("{t}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a rollout cannot carry is refused, naming the flag, instead of being dropped.
    #[test]
    fn a_rollout_refuses_the_job_flags_it_would_drop() {
        let flags = RolloutFlags {
            max_concurrency: Some("2".into()),
            ..RolloutFlags::default()
        };
        let mut job = flux_core::model::SubmitJob {
            command: Some("true".into()),
            ..Default::default()
        };
        assert!(spec_of(&job, &flags).is_ok());
        job.secret_env.insert("TOKEN".into(), "v".into());
        let e = spec_of(&job, &flags).unwrap_err().to_string();
        assert!(e.starts_with("--secret-env cannot be used"), "{e}");
        job.secret_env.clear();
        job.priority = Some(5);
        let e = spec_of(&job, &flags).unwrap_err().to_string();
        assert!(e.starts_with("--priority cannot be used"), "{e}");
    }
}
