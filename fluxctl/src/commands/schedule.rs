//! `fluxctl schedule create|list|get|pause|resume|trigger|delete`: cron jobs that fire once per
//! slot.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use clap::Subcommand;
use flux_core::model::parse_duration;
use flux_core::schedule::{JobSpec, Missed, Overlap, Run, ScheduleSpec, ScheduleView, What};
use reqwest::Method;

use super::job::{Env, Target, command_of};
use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{emit, table, view};

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Create a schedule: a command run on a cron expression.
    Create(Box<CreateArgs>),
    /// List schedules with their next slot and last run.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this schedule name.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show a schedule: its next five slots and its last runs with their results.
    Get { name: String },
    /// Stop firing (slots during the pause are not caught up).
    Pause { name: String },
    /// Fire again from now on.
    Resume { name: String },
    /// Start one run now.
    Trigger { name: String },
    /// Delete a schedule (its jobs stay).
    Delete {
        name: String,
        /// Delete only if the schedule is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    name: String,
    /// Cron expression: five fields, six with seconds first, or @hourly, @daily...
    #[arg(long)]
    cron: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    tz: String,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    env: Env,
    /// Kill each run after this long.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Higher runs first among the tenant's queued jobs (-100 to 100).
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// While the previous run is unfinished: allow, skip or queue.
    #[arg(long, default_value = "allow")]
    overlap: String,
    /// Slots no leader fired in time: skip, once, or catch-up=N.
    #[arg(long, default_value = "once")]
    missed: String,
    /// How late a slot may still run as on time.
    #[arg(long, value_parser = parse_duration, default_value = "1m")]
    grace: Duration,
    /// Delay each slot by up to this much (the same on every node).
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    /// Join all arguments into one shell command line (default with one argument).
    #[arg(long)]
    shell: bool,
    /// Rollout options (with --all): each slot starts a rollout over the selector's agents.
    #[command(flatten)]
    rollout: super::rollout::RolloutFlags,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn parse_overlap(s: &str) -> Result<Overlap> {
    match s {
        "allow" => Ok(Overlap::Allow),
        "skip" => Ok(Overlap::Skip),
        "queue" => Ok(Overlap::Queue),
        _ => Err(anyhow!("--overlap must be allow, skip or queue")),
    }
}

fn parse_missed(s: &str) -> Result<Missed> {
    match s {
        "skip" => Ok(Missed::Skip),
        "once" => Ok(Missed::Once),
        _ => s
            .strip_prefix("catch-up=")
            .or_else(|| s.strip_prefix("catch_up="))
            .and_then(|n| n.parse().ok())
            .map(Missed::CatchUp)
            .ok_or_else(|| anyhow!("--missed must be skip, once or catch-up=N")),
    }
}

fn spec(a: CreateArgs) -> Result<ScheduleSpec> {
    let (command, argv) = command_of(a.shell, a.command);
    let at = a.target.placement()?;
    let (env, secret_env) = a.env.resolve()?;
    let job = JobSpec {
        command,
        argv,
        node_id: at.node_id,
        selector: at.selector,
        all: at.all,
        env,
        secret_env,
        timeout_secs: a.timeout.map(|d| d.as_secs().max(1)),
        priority: a.priority,
        allow_unknown_node: at.allow_unknown_node,
        ..JobSpec::default()
    };
    let what = if at.all && a.rollout.any() {
        What::Rollout(super::rollout::spec_of(&job.submission(), &a.rollout)?)
    } else {
        What::Job(job)
    };
    Ok(ScheduleSpec {
        name: a.name,
        cron: a.cron,
        tz: a.tz,
        what,
        overlap: parse_overlap(&a.overlap)?,
        missed: parse_missed(&a.missed)?,
        grace_secs: a.grace.as_secs(),
        jitter_secs: a.jitter.map_or(0, |d| d.as_secs()),
        paused: a.paused,
    })
}

/// A slot or firing instant for tables, in UTC.
fn when(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

fn render_one(v: &ScheduleView) -> String {
    let mut s = format!(
        "schedule {} (version {})\n  cron: {} ({})\n  runs: {}\n  overlap: {}  missed: {}  paused: {}\n  fired: {}  missed: {}  skipped: {}\n",
        v.name,
        v.version,
        v.spec.cron,
        v.spec.tz,
        v.spec.what.display(),
        v.spec.overlap.as_str(),
        v.spec.missed.display(),
        v.spec.paused,
        v.fires,
        v.missed,
        v.skipped
    );
    s.push_str("  next:\n");
    for n in &v.next {
        s.push_str(&format!("    {}\n", when(*n)));
    }
    if !v.runs.is_empty() {
        let mut t = table(&["SLOT", "FIRED", "JOBS", "RESULT"]);
        for r in &v.runs {
            t.add_row(vec![
                r.run.slot.map_or("trigger".to_string(), when),
                when(r.run.fired_at),
                match &r.run.rollout {
                    Some(id) => format!("rollout {id}"),
                    None => r.run.jobs.join(","),
                },
                r.run
                    .error
                    .as_ref()
                    .map_or(r.result.clone(), |e| format!("error: {e}")),
            ]);
        }
        s.push_str(&format!("{t}\n"));
    }
    s
}

/// Sends one request about schedules and decodes its reply.
async fn send<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    method: Method,
    path: &str,
    body: Option<&ScheduleSpec>,
    headers: &[(&str, String)],
) -> Result<T> {
    let api = ctx.client()?;
    let body = body.map(flux_core::client::erased::Body);
    let resp = api
        .send_with_headers(
            method,
            path,
            body.as_ref()
                .map(|b| b as &(dyn flux_core::client::erased::Json + Sync)),
            Duration::from_secs(30),
            headers,
        )
        .await?;
    resp.json().await.context("decoding the reply")
}

pub async fn run(ctx: &Ctx, cmd: ScheduleCmd) -> CliResult {
    match cmd {
        ScheduleCmd::Create(a) => {
            let spec = spec(*a)?;
            let v: ScheduleView =
                send(ctx, Method::POST, "/v1/schedules", Some(&spec), &[]).await?;
            emit(ctx.out, &view(&v, render_one))?;
        }
        ScheduleCmd::List { limit, after } => {
            let mut path = format!("/v1/schedules?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let v: Vec<ScheduleView> = ctx.client()?.get(&path).await?;
            emit(
                ctx.out,
                &view(&v, |v| {
                    let mut t = table(&["NAME", "CRON", "TZ", "NEXT", "LAST RUN", "PAUSED"]);
                    for s in v {
                        t.add_row(vec![
                            s.name.clone(),
                            s.spec.cron.clone(),
                            s.spec.tz.clone(),
                            s.next.first().map_or("-".into(), |n| when(*n)),
                            s.runs.first().map_or("-".into(), |r| {
                                format!(
                                    "{} {}",
                                    r.run.slot.map_or("trigger".into(), when),
                                    r.result
                                )
                            }),
                            s.spec.paused.to_string(),
                        ]);
                    }
                    format!("{t}\n")
                }),
            )?;
        }
        ScheduleCmd::Get { name } => {
            let v: ScheduleView = ctx.client()?.get(&format!("/v1/schedules/{name}")).await?;
            emit(ctx.out, &view(&v, render_one))?;
        }
        ScheduleCmd::Pause { name } => pause(ctx, &name, "pause").await?,
        ScheduleCmd::Resume { name } => pause(ctx, &name, "resume").await?,
        ScheduleCmd::Trigger { name } => {
            let r: Run = send(
                ctx,
                Method::POST,
                &format!("/v1/schedules/{name}/trigger"),
                None,
                &[],
            )
            .await?;
            emit(
                ctx.out,
                &view(&r, |r| {
                    format!("triggered {name}: jobs {}\n", r.jobs.join(","))
                }),
            )?;
        }
        ScheduleCmd::Delete { name, if_version } => {
            let headers = super::job::if_match(if_version);
            let v: serde_json::Value = send(
                ctx,
                Method::DELETE,
                &format!("/v1/schedules/{name}"),
                None,
                &headers,
            )
            .await?;
            emit(
                ctx.out,
                &view(&v, |v| {
                    format!("deleted schedule {name} (version {})\n", v["version"])
                }),
            )?;
        }
    }
    Ok(())
}

async fn pause(ctx: &Ctx, name: &str, verb: &str) -> Result<()> {
    let v: ScheduleView = send(
        ctx,
        Method::POST,
        &format!("/v1/schedules/{name}/{verb}"),
        None,
        &[],
    )
    .await?;
    emit(ctx.out, &view(&v, render_one))?;
    Ok(())
}
