//! `fluxctl apply`, `diff`, `get states` and `delete state`: desired state from `state.toml`.
//! The helpers the four commands in `commands/` share: reading the file, plan and apply
//! requests, waiting for convergence, and the plan and state tables.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use flux_core::client::ApiClient;
use flux_core::reconcile::TargetState;
use flux_core::state::format_secs;
use flux_core::state::{ApplyRequest, Plan, PlanAction, StateView};
use serde::Serialize;

/// State names become URL path segments: refuse anything that is not a valid name.
pub fn check_name(name: &str) -> Result<()> {
    if !flux_core::model::valid_ident(name) {
        bail!(
            "{name:?} is not a state name (1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-')"
        );
    }
    Ok(())
}

/// The state file and the prune switch, as `apply` and `diff` take them.
#[derive(clap::Args, Debug)]
pub struct FileArgs {
    /// State file (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Also delete the tenant's states that the file does not declare (with diff: show those
    /// deletions).
    #[arg(long)]
    pub prune: bool,
}

/// A state file as read (its display name and text) and the server's plan for it.
pub struct Planned {
    pub file: String,
    pub text: String,
    pub plan: Plan,
}

impl FileArgs {
    /// Reads the file and asks the server for its plan (nothing changes).
    pub async fn plan(&self, api: &ApiClient) -> Result<Planned> {
        let (file, text) = read_file(&self.file)?;
        let plan = plan(api, &file, &text, self.prune).await?;
        Ok(Planned { file, text, plan })
    }
}

/// Reads a state file (`-` is stdin) and returns its display name and text.
fn read_file(path: &Path) -> Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading state file from stdin")?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading state file {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Asks the server for the plan of applying `text` (nothing changes).
async fn plan(api: &ApiClient, file: &str, text: &str, prune: bool) -> Result<Plan> {
    let req = ApplyRequest {
        toml: Some(text.to_string()),
        file: Some(file.to_string()),
        prune,
        dry_run: true,
        ..ApplyRequest::default()
    };
    Ok(api.post("/v1/states", &req).await?)
}

/// Applies `text`, refusing (409) if any state moved since `planned` was computed.
pub async fn apply(
    api: &ApiClient,
    file: &str,
    text: &str,
    prune: bool,
    planned: &Plan,
) -> Result<Plan> {
    let req = ApplyRequest {
        toml: Some(text.to_string()),
        file: Some(file.to_string()),
        prune,
        dry_run: false,
        expect: planned
            .items
            .iter()
            .map(|i| (i.name.clone(), i.from_version))
            .collect(),
        expect_schedules: Some(
            planned
                .schedules
                .iter()
                .map(|i| (i.name.clone(), i.from_version))
                .collect(),
        ),
        ..ApplyRequest::default()
    };
    Ok(api.post("/v1/states", &req).await?)
}

/// Human rendering of a plan, one line per state (then per schedule, `schedule NAME`) and one
/// per changed field.
pub fn render_plan(plan: &Plan, show_unchanged: bool) -> String {
    let mut out = String::new();
    let states = plan.items.iter().map(|i| (i, i.name.clone()));
    let schedules = plan
        .schedules
        .iter()
        .map(|i| (i, format!("schedule {}", i.name)));
    for (i, name) in states.chain(schedules) {
        let line = match i.action {
            PlanAction::Create => format!("+ {name} (create)\n"),
            PlanAction::Update => {
                format!("~ {name} (update from version {})\n", i.from_version)
            }
            PlanAction::Delete => format!("- {name} (delete version {})\n", i.from_version),
            PlanAction::Unchanged if show_unchanged => {
                format!("  {name} (unchanged, version {})\n", i.from_version)
            }
            PlanAction::Unchanged => continue,
        };
        out.push_str(&line);
        for c in &i.changes {
            out.push_str(&format!("    {}: {:?} → {:?}\n", c.field, c.from, c.to));
        }
    }
    out
}

/// Progress of a set of states towards convergence.
#[derive(Debug, Default, Serialize)]
pub struct Convergence {
    pub targets: usize,
    pub compliant: usize,
    pub failed: usize,
    /// `state/agent: message` of every failed target.
    pub failures: Vec<String>,
    /// States that select no agent at all.
    pub empty: Vec<String>,
}

impl Convergence {
    pub fn done(&self) -> bool {
        self.compliant + self.failed == self.targets
    }
}

/// How far the states of `want` (name → version) have converged.
pub fn convergence(views: &[StateView], want: &BTreeMap<String, u64>) -> Convergence {
    let mut c = Convergence::default();
    for v in views.iter().filter(|v| want.contains_key(&v.name)) {
        let version = want[&v.name].max(v.version);
        if v.status.is_empty() {
            c.empty.push(v.name.clone());
        }
        for t in &v.status {
            c.targets += 1;
            let why = match t.settled_at(version) {
                Some(TargetState::Compliant) => {
                    c.compliant += 1;
                    continue;
                }
                Some(_) => t.message.as_deref().unwrap_or("failed").to_string(),
                // Its agent cannot run anything now: waiting longer would not help.
                None if t.agent_state.as_deref().is_some_and(|a| a != "online") => {
                    format!("agent is {}", t.agent_state.as_deref().unwrap_or("?"))
                }
                None => continue,
            };
            c.failed += 1;
            c.failures.push(format!("{}/{}: {why}", t.state, t.agent));
        }
    }
    c
}

/// Polls until every target of `want` is compliant or failed, or `timeout`. Shows a progress
/// bar on a terminal and a line per change otherwise.
pub async fn wait(
    api: &ApiClient,
    want: &BTreeMap<String, u64>,
    timeout: Duration,
    quiet: bool,
) -> Result<Convergence> {
    let deadline = tokio::time::Instant::now() + timeout;
    let bar = if !quiet && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} converging [{bar:30}] {pos}/{len} targets {msg} ({elapsed})",
            )
            .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    let mut last = String::new();
    loop {
        let views: Vec<StateView> = api.get("/v1/states").await?;
        let c = convergence(&views, want);
        let line = format!(
            "{}/{} targets settled: {} compliant, {} failed",
            c.compliant + c.failed,
            c.targets,
            c.compliant,
            c.failed
        );
        match &bar {
            Some(b) => {
                b.set_length(c.targets as u64);
                b.set_position((c.compliant + c.failed) as u64);
                b.set_message(format!("{} failed", c.failed));
            }
            None if !quiet && line != last => eprintln!("{line}"),
            None => {}
        }
        last = line;
        if c.done() {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(c);
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(b) = bar {
                b.abandon();
            }
            bail!(
                "states did not converge within {}: {last}",
                format_secs(timeout.as_secs().max(1))
            );
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - tokio::time::Instant::now()))
            .await;
    }
}

fn ago(ms: Option<u64>) -> String {
    ms.map(|m| format!("{} ago", crate::output::age(m)))
        .unwrap_or_else(|| "-".into())
}

/// Table of states with their targets per status.
pub fn states_table(views: &[StateView]) -> comfy_table::Table {
    let mut t = crate::output::table(&[
        "STATE",
        "VERSION",
        "TARGETS",
        "SELECTOR",
        "COMPLIANT",
        "DRIFTED",
        "APPLYING",
        "FAILED",
        "UNKNOWN",
        "INTERVAL",
        "ROLLOUT",
    ]);
    for v in views {
        let c = v.counts();
        let n = |s: TargetState| c.get(s.as_str()).copied().unwrap_or(0).to_string();
        t.add_row(vec![
            v.name.clone(),
            v.version.to_string(),
            v.status.len().to_string(),
            crate::output::short(&v.spec.targets.display(), 32),
            n(TargetState::Compliant),
            n(TargetState::Drifted),
            n(TargetState::Applying),
            n(TargetState::Failed),
            n(TargetState::Unknown),
            format_secs(v.spec.interval_secs),
            rollout_cell(v),
        ]);
    }
    t
}

/// A state's rollout in one cell: `-` without one, else its repairs and failures against the
/// limits, and `HALTED` once its remediation stopped.
pub fn rollout_cell(v: &StateView) -> String {
    match &v.rollout {
        None => "-".into(),
        Some(r) => format!(
            "{}{}/{} repairing, {}/{} failed",
            if r.halted { "HALTED " } else { "" },
            r.repairing,
            r.max_concurrency,
            r.failed_repairs,
            r.max_errors
        ),
    }
}

/// Per-target detail of one state, then its latest events.
pub fn state_detail(v: &StateView) -> String {
    let mut t = crate::output::table(&[
        "AGENT",
        "STATUS",
        "LAST CHECK",
        "LAST CHANGE",
        "REPAIRS",
        "FAILURES",
        "MESSAGE",
    ]);
    for s in &v.status {
        t.add_row(vec![
            s.agent.clone(),
            s.status.as_str().to_string(),
            ago(s.last_check),
            ago(s.last_change),
            s.repairs.to_string(),
            s.failures.to_string(),
            crate::output::short(s.message.as_deref().unwrap_or(""), 60),
        ]);
    }
    let mut out = format!(
        "state {} version {} ({}), check every {}\ncheck: {}\napply: {}\n{t}\n",
        v.name,
        v.version,
        v.spec.targets.display(),
        format_secs(v.spec.interval_secs),
        v.spec.check,
        v.spec.apply,
    );
    if let Some(r) = &v.rollout {
        out.push_str(&format!(
            "rollout: {} ({}){}\n",
            v.spec
                .rollout
                .as_ref()
                .map(|s| s.display())
                .unwrap_or_default(),
            rollout_cell(v),
            if r.halted {
                format!(
                    "; remediation halted, resume with `fluxctl state resume {}`",
                    v.name
                )
            } else {
                String::new()
            },
        ));
    }
    let mut events: Vec<_> = v
        .status
        .iter()
        .flat_map(|s| s.events.iter().map(move |e| (e, &s.agent)))
        .collect();
    events.sort_by_key(|(e, _)| std::cmp::Reverse(e.at));
    if !events.is_empty() {
        out.push_str("recent events:\n");
        for (e, agent) in events.into_iter().take(10) {
            out.push_str(&format!(
                "  {} ago  {agent}  {}: {}{}\n",
                crate::output::age(e.at),
                e.kind,
                e.message,
                e.job_id
                    .as_deref()
                    .map(|j| format!(" (job {j})"))
                    .unwrap_or_default()
            ));
        }
    }
    for s in v.status.iter().filter(|s| s.output.is_some()) {
        out.push_str(&format!(
            "output of the last failure on {}:\n{}\n",
            s.agent,
            s.output.as_deref().unwrap_or_default().trim_end()
        ));
    }
    out
}
