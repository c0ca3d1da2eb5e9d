//! The shipped Prometheus files checked by the real `promtool`: config and rules valid, alert
//! unit tests passing, a real fluxd's `/metrics` accepted by `promtool check metrics`, and every
//! metric the alerts use actually exported. Skips when promtool is not installed unless
//! `FLUX_REQUIRE_PROMTOOL` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use flux_tests::*;
use serde_json::json;

fn promtool() -> Option<PathBuf> {
    tool("promtool", "FLUX_REQUIRE_PROMTOOL")
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn run(promtool: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(deploy())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn shipped_config_and_alert_rules_pass_promtool() {
    let Some(p) = promtool() else { return };
    // promtool checks that the scrape token file exists: the shipped config, with its token
    // path pointed at a file made here, next to a copy of the rules it names.
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("metrics.token");
    std::fs::write(&token, "a-token\n").unwrap();
    let config = std::fs::read_to_string(deploy().join("prometheus.yml")).unwrap();
    assert!(
        config.contains("credentials_file: /etc/fluxforge/metrics.token"),
        "the scrape config sends the metrics token"
    );
    let config = config.replace("/etc/fluxforge/metrics.token", &token.display().to_string());
    std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy().join("alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
    let checked = tmp.path().join("prometheus.yml");
    run(&p, &["check", "config", checked.to_str().unwrap()]);
    let rules = run(&p, &["check", "rules", "alerts.yml"]);
    assert!(rules.contains("6 rules found"), "{rules}");
    run(&p, &["test", "rules", "alerts_test.yml"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_metrics_pass_promtool_and_cover_the_alerts() {
    let Some(p) = promtool() else { return };
    let (d, _agent) = Fluxd::start_with_agent().await;
    // Some traffic, including a client error, so the request series exist.
    let (_, job) = d
        .post("/v1/jobs", &d.admin, &json!({"command": "true"}))
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    d.wait_job(&d.admin, &id, std::time::Duration::from_secs(30), |v| {
        v["status"] == "succeeded"
    })
    .await;
    assert_eq!(d.get("/v1/jobs", "bad-token").await.0, 401);
    let metrics = d.metrics_text().await.expect("metrics");

    let out = output_with_stdin(
        Command::new(&p).args(["check", "metrics"]),
        metrics.as_bytes(),
    );
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric the alerts read is exported.
    let rules = std::fs::read_to_string(deploy().join("alerts.yml")).unwrap();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("flux_"))
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 4, "{used:?}");
    for m in used {
        assert!(
            metrics.lines().any(|l| l.starts_with(m)),
            "alerts use {m}, which fluxd does not export"
        );
    }
    assert!(
        metrics
            .contains("flux_http_requests_total{method=\"GET\",route=\"/v1/jobs\",status=\"401\"}")
    );
    // Events are counted by type where they were committed: the job's three, the agent's.
    let count = |t: &str| -> u64 {
        let series = format!("flux_events_total{{type=\"{t}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series}"))
    };
    for t in [
        "job.submitted",
        "job.started",
        "job.finished",
        "agent.registered",
    ] {
        assert!(count(t) >= 1, "{t}");
    }
    assert_eq!(count("rollout.halted"), 0);
}
