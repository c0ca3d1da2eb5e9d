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

/// A benchmark's result as a table of one row, each cell given with its header.
fn one_row(cells: Vec<(&str, String)>) -> String {
    let (header, row): (Vec<&str>, Vec<String>) = cells.into_iter().unzip();
    let mut t = table(&header);
    t.add_row(row);
    format!("{t}\n")
}

/// The size of a load run: jobs, workers and the connections they shared.
fn load_cells(jobs: usize, concurrency: usize, connections: usize) -> Vec<(&'static str, String)> {
    vec![
        ("JOBS", jobs.to_string()),
        ("CONCURRENCY", concurrency.to_string()),
        ("CONNS", connections.to_string()),
    ]
}

/// A latency's percentiles (p90 only `with_p90`) and maximum, in ms to `decimals` places.
fn latency_cells(
    l: &bench::Latency,
    with_p90: bool,
    decimals: usize,
) -> Vec<(&'static str, String)> {
    let ms = |v: f64| format!("{v:.decimals$}");
    let mut cells = vec![("P50 MS", ms(l.p50_ms))];
    if with_p90 {
        cells.push(("P90 MS", ms(l.p90_ms)));
    }
    cells.extend([("P99 MS", ms(l.p99_ms)), ("MAX MS", ms(l.max_ms))]);
    cells
}

impl Render for bench::Report {
    fn render(&self) -> String {
        let r = self;
        let mut cells = load_cells(r.jobs, r.concurrency, r.connections);
        cells.extend([
            ("FAILED", r.failed.to_string()),
            ("ERRORS", r.errors.to_string()),
            ("UNFINISHED", r.unfinished.to_string()),
            ("SECONDS", format!("{:.2}", r.elapsed_secs)),
            ("JOBS/S", format!("{:.1}", r.jobs_per_sec)),
        ]);
        cells.extend(latency_cells(&r.round_trip, true, 1));
        cells.extend([
            (
                "SUBMIT P50/P99",
                format!("{:.1}/{:.1}", r.submit.p50_ms, r.submit.p99_ms),
            ),
            (
                "DISPATCH P50/P99",
                format!("{:.0}/{:.0}", r.dispatch.p50_ms, r.dispatch.p99_ms),
            ),
        ]);
        one_row(cells)
    }
}

impl Render for bench::SubmitReport {
    fn render(&self) -> String {
        let r = self;
        let mut cells = load_cells(r.jobs, r.concurrency, r.connections);
        cells.extend([
            ("REFUSED", r.refused.to_string()),
            ("SECONDS", format!("{:.2}", r.elapsed_secs)),
            ("SUBMITS/S", format!("{:.1}", r.submits_per_sec)),
        ]);
        cells.extend(latency_cells(&r.latency, false, 1));
        one_row(cells)
    }
}

impl Render for bench::ConvergeReport {
    fn render(&self) -> String {
        let r = self;
        let mut cells = vec![
            ("TARGETS", r.targets.to_string()),
            ("COMPLIANT", r.compliant.to_string()),
            ("FAILED", r.failed.to_string()),
            ("SECONDS", format!("{:.2}", r.elapsed_secs)),
        ];
        cells.extend(latency_cells(&r.to_compliant, true, 0));
        one_row(cells)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Cmd};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["fluxctl", "bench"].iter().chain(args))
    }

    fn latency(base: f64) -> crate::bench::Latency {
        crate::bench::Latency {
            samples: 10,
            p50_ms: base + 0.14,
            p90_ms: base + 1.26,
            p99_ms: base + 2.51,
            max_ms: base + 3.49,
        }
    }

    /// The cells of a rendered one-row table, header row first.
    fn rows(rendered: &str) -> Vec<Vec<String>> {
        rendered
            .lines()
            .filter(|l| l.contains('┆'))
            .map(|l| {
                l.trim_matches(|c| c == '│' || c == ' ')
                    .split('┆')
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn each_report_is_one_row_under_its_own_headers() {
        use crate::output::Render;
        let jobs = crate::bench::Report {
            jobs: 7,
            concurrency: 4,
            connections: 1,
            failed: 2,
            errors: 3,
            unfinished: 5,
            elapsed_secs: 1.234,
            jobs_per_sec: 5.67,
            round_trip: latency(10.0),
            submit: latency(20.0),
            dispatch: latency(30.0),
        };
        let submit = crate::bench::SubmitReport {
            jobs: 9,
            concurrency: 8,
            connections: 2,
            refused: 1,
            elapsed_secs: 2.5,
            submits_per_sec: 3.6,
            latency: latency(40.0),
        };
        let converge = crate::bench::ConvergeReport {
            targets: 6,
            compliant: 5,
            failed: 1,
            elapsed_secs: 9.876,
            to_compliant: latency(100.0),
        };
        // Each report's header row and row, cells joined by '|'.
        let expected = [
            (
                jobs.render(),
                "JOBS|CONCURRENCY|CONNS|FAILED|ERRORS|UNFINISHED|SECONDS|JOBS/S|P50 MS|P90 MS|\
                 P99 MS|MAX MS|SUBMIT P50/P99|DISPATCH P50/P99",
                "7|4|1|2|3|5|1.23|5.7|10.1|11.3|12.5|13.5|20.1/22.5|30/33",
            ),
            (
                submit.render(),
                "JOBS|CONCURRENCY|CONNS|REFUSED|SECONDS|SUBMITS/S|P50 MS|P99 MS|MAX MS",
                "9|8|2|1|2.50|3.6|40.1|42.5|43.5",
            ),
            (
                converge.render(),
                "TARGETS|COMPLIANT|FAILED|SECONDS|P50 MS|P90 MS|P99 MS|MAX MS",
                "6|5|1|9.88|100|101|103|103",
            ),
        ];
        for (rendered, header, row) in expected {
            let got: Vec<String> = rows(&rendered).iter().map(|r| r.join("|")).collect();
            assert_eq!(got, [header, row], "{rendered}");
        }
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
