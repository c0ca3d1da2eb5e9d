//! `fluxctl bench converge|submit|jobs`: benchmarks against a running control plane (the
//! measuring is in [`crate::bench`]); each prints its report as a one-row table or as JSON and
//! exits 1 if any job failed, a request failed or submission was refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use flux_core::client::ApiClient;
use flux_core::model::parse_duration;

use crate::bench;
use crate::cli::parse_kv;
use crate::context::Ctx;
use crate::error::{CliResult, ok_or_1};
use crate::output::{Render, emit, table};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Convergence: declare a throwaway state on the agents (all, or those with --label) and
    /// time until every target is compliant; the state is deleted afterwards.
    Converge {
        /// Select agents by label KEY=VALUE (repeatable); default: every registered agent.
        #[arg(long = "label", short = 'l', value_parser = parse_kv)]
        labels: Vec<(String, String)>,
        /// Directory on the agents where the marker files go.
        #[arg(long, default_value = "/tmp/fluxforge-bench")]
        dir: String,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration, default_value = "10m")]
        timeout: Duration,
    },
    /// Submission throughput: jobs acknowledged per second and submission latency, without
    /// waiting for the jobs to run (agents run them afterwards).
    Submit {
        /// Jobs to submit at most.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[command(flatten)]
        load: LoadArgs,
        /// Command each job runs.
        #[arg(long, default_value = "true")]
        command: String,
    },
    /// Job round trip: submit → result, latency percentiles and jobs/s, with submission and
    /// dispatch (created → started on the agent) latencies, failed requests and jobs left
    /// unfinished at the deadline.
    Jobs {
        /// Jobs to run at most.
        #[arg(long, default_value_t = 500)]
        count: usize,
        #[command(flatten)]
        load: LoadArgs,
        /// Command each job runs.
        #[arg(long, default_value = "true")]
        command: String,
        /// Pin jobs to one agent.
        #[arg(short, long)]
        node: Option<String>,
    },
}

/// How hard and how long `bench jobs` and `bench submit` drive the control plane.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Jobs in flight at once (each worker submits, waits, repeats), 1 to 1024.
    #[arg(long, default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(bench::MAX_CONCURRENCY)))]
    concurrency: u32,
    /// HTTP/2 connections the workers share, 1 to 256; default one per 64 workers.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(bench::MAX_CONNECTIONS)))]
    connections: Option<u32>,
    /// Issue no new job after this long (with a large --count: a run of fixed length).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// End the run by then; jobs not finished by then are reported as unfinished.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    deadline: Duration,
}

impl LoadArgs {
    fn load(&self, count: usize) -> bench::Load {
        bench::Load {
            count,
            concurrency: self.concurrency as usize,
            connections: self.connections.map(|c| c as usize),
            duration: self.duration,
            deadline: self.deadline,
        }
    }
}

/// The benchmark's clients, connected (see [`bench::connect`]).
async fn clients(ctx: &Ctx, load: &bench::Load) -> Result<Vec<Arc<ApiClient>>> {
    load.validate()?;
    bench::connect(|| ctx.client(), load.connection_count()).await
}

/// Progress on stderr only for people at a terminal.
fn progress(ctx: &Ctx) -> bool {
    !ctx.out.is_json() && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> CliResult {
    match cmd {
        BenchCmd::Jobs {
            count,
            load,
            command,
            node,
        } => {
            let load = load.load(count);
            let api = clients(ctx, &load).await?;
            let r = bench::jobs(api, &load, command, node, progress(ctx)).await?;
            emit(ctx.out, &r)?;
            ok_or_1(r.clean())
        }
        BenchCmd::Submit {
            count,
            load,
            command,
        } => {
            let load = load.load(count);
            let api = clients(ctx, &load).await?;
            let r = bench::submit(api, &load, command).await?;
            emit(ctx.out, &r)?;
            ok_or_1(r.refused == 0)
        }
        BenchCmd::Converge {
            labels,
            dir,
            timeout,
        } => {
            let api = ctx.client()?;
            let r = bench::converge(
                &api,
                labels.into_iter().collect(),
                &dir,
                timeout,
                progress(ctx),
            )
            .await?;
            emit(ctx.out, &r)?;
            ok_or_1(r.failed == 0)
        }
    }
}

/// A benchmark's result as a table of one row.
fn one_row(header: &[&str], row: Vec<String>) -> String {
    let mut t = table(header);
    t.add_row(row);
    format!("{t}\n")
}

impl Render for bench::Report {
    fn render(&self) -> String {
        let r = self;
        one_row(
            &[
                "JOBS",
                "CONCURRENCY",
                "CONNS",
                "FAILED",
                "ERRORS",
                "UNFINISHED",
                "SECONDS",
                "JOBS/S",
                "P50 MS",
                "P90 MS",
                "P99 MS",
                "MAX MS",
                "SUBMIT P50/P99",
                "DISPATCH P50/P99",
            ],
            vec![
                r.jobs.to_string(),
                r.concurrency.to_string(),
                r.connections.to_string(),
                r.failed.to_string(),
                r.errors.to_string(),
                r.unfinished.to_string(),
                format!("{:.2}", r.elapsed_secs),
                format!("{:.1}", r.jobs_per_sec),
                format!("{:.1}", r.round_trip.p50_ms),
                format!("{:.1}", r.round_trip.p90_ms),
                format!("{:.1}", r.round_trip.p99_ms),
                format!("{:.1}", r.round_trip.max_ms),
                format!("{:.1}/{:.1}", r.submit.p50_ms, r.submit.p99_ms),
                format!("{:.0}/{:.0}", r.dispatch.p50_ms, r.dispatch.p99_ms),
            ],
        )
    }
}

impl Render for bench::SubmitReport {
    fn render(&self) -> String {
        let r = self;
        one_row(
            &[
                "JOBS",
                "CONCURRENCY",
                "CONNS",
                "REFUSED",
                "SECONDS",
                "SUBMITS/S",
                "P50 MS",
                "P99 MS",
                "MAX MS",
            ],
            vec![
                r.jobs.to_string(),
                r.concurrency.to_string(),
                r.connections.to_string(),
                r.refused.to_string(),
                format!("{:.2}", r.elapsed_secs),
                format!("{:.1}", r.submits_per_sec),
                format!("{:.1}", r.latency.p50_ms),
                format!("{:.1}", r.latency.p99_ms),
                format!("{:.1}", r.latency.max_ms),
            ],
        )
    }
}

impl Render for bench::ConvergeReport {
    fn render(&self) -> String {
        let r = self;
        one_row(
            &[
                "TARGETS",
                "COMPLIANT",
                "FAILED",
                "SECONDS",
                "P50 MS",
                "P90 MS",
                "P99 MS",
                "MAX MS",
            ],
            vec![
                r.targets.to_string(),
                r.compliant.to_string(),
                r.failed.to_string(),
                format!("{:.2}", r.elapsed_secs),
                format!("{:.0}", r.to_compliant.p50_ms),
                format!("{:.0}", r.to_compliant.p90_ms),
                format!("{:.0}", r.to_compliant.p99_ms),
                format!("{:.0}", r.to_compliant.max_ms),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Cmd};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["fluxctl", "bench"].iter().chain(args))
    }

    #[test]
    fn concurrency_up_to_1024_is_taken() {
        for cmd in ["jobs", "submit"] {
            let cli = parse(&[cmd, "--concurrency", "1024", "--connections", "16"]).unwrap();
            assert!(matches!(cli.cmd, Cmd::Bench(_)));
        }
    }

    #[test]
    fn concurrency_beyond_1024_is_refused_naming_the_flag() {
        for cmd in ["jobs", "submit"] {
            for (flag, value) in [
                ("--concurrency", "1025"),
                ("--concurrency", "0"),
                ("--connections", "257"),
            ] {
                let e = parse(&[cmd, flag, value]).expect_err("out of range");
                assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
                let msg = e.to_string();
                assert!(msg.contains(flag) && msg.contains(value), "{msg}");
            }
        }
    }
}
