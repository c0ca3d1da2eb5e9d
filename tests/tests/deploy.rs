//! The shipped deployment files checked with real tools: the compose file with `docker-compose
//! config`, the Kubernetes manifests with `kubernetes-validate` (offline OpenAPI schemas), and
//! the Grafana dashboard against the metrics a live fluxd exports. Each validator is also shown
//! a broken file, to prove it is really checking. Skips a tool that is not installed unless
//! `FLUX_REQUIRE_DEPLOY_TOOLS` is set (CI sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flux_tests::*;
use serde_json::{Value, json};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn deploy_tool(name: &str) -> Option<PathBuf> {
    tool(name, "FLUX_REQUIRE_DEPLOY_TOOLS")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_compose_file_is_valid_and_matches_the_nginx_upstreams() {
    let Some(dc) = deploy_tool("docker-compose") else {
        return;
    };
    let dir = deploy().join("compose");
    let run = |file: &str, stdin: Option<String>| {
        let mut c = Command::new(&dc);
        c.args(["-f", file, "config", "-q"]).current_dir(&dir);
        match stdin {
            None => c.output().unwrap(),
            Some(body) => output_with_stdin(&mut c, body.as_bytes()),
        }
    };
    let out = run("docker-compose.yml", None);
    assert!(out.status.success(), "{}", text(&out));
    let original = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    let broken = original.replacen("    image: redis:7.0", "    imagee: redis:7.0", 1);
    assert_ne!(broken, original);
    let out = run("-", Some(original.clone()));
    assert!(
        out.status.success(),
        "the same file on stdin: {}",
        text(&out)
    );
    let out = run("-", Some(broken));
    assert!(!out.status.success(), "a misspelt key passed validation");

    // nginx resolves every upstream at start: each must be a name the compose network has.
    let nginx = std::fs::read_to_string(deploy().join("nginx/fluxforge.conf")).unwrap();
    for line in nginx
        .lines()
        .filter(|l| l.trim_start().starts_with("server fluxd"))
    {
        let host = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert!(
            original.contains(&format!("aliases: [{host}]")),
            "{host} is not in the compose network"
        );
    }
    assert!(
        original.contains("fluxd.internal"),
        "the certificate must name fluxd.internal"
    );
}

#[test]
fn the_kubernetes_manifests_are_valid_and_complete() {
    let Some(kv) = deploy_tool("kubernetes-validate") else {
        return;
    };
    let dir = deploy().join("kubernetes");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    let validate = |paths: &[PathBuf]| {
        Command::new(&kv)
            .args(["-k", "1.31.0", "--strict"])
            .args(paths)
            .output()
            .unwrap()
    };
    let out = validate(&files);
    assert!(out.status.success(), "{}", text(&out));

    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    for needed in [
        "kind: Deployment",
        "kind: StatefulSet",
        "kind: NetworkPolicy",
        "name: fluxd-signing-key",
        "appendonly yes",
        "appendfsync always",
        "path: /readyz",
        "path: /healthz",
        "scheme: HTTPS",
        "volumeClaimTemplates",
    ] {
        assert!(all.contains(needed), "the manifests lack {needed:?}");
    }

    // A broken manifest is refused.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    let fluxd = std::fs::read_to_string(dir.join("fluxd.yaml")).unwrap();
    std::fs::write(&bad, fluxd.replacen("replicas: 3", "replicas: three", 1)).unwrap();
    let out = validate(&[bad]);
    assert!(
        !out.status.success(),
        "replicas: three passed: {}",
        text(&out)
    );
}

/// Every metric the dashboard queries is exported by a real fluxd that has run a job.
#[tokio::test(flavor = "multi_thread")]
async fn the_grafana_dashboard_reads_only_exported_metrics() {
    let raw = std::fs::read_to_string(deploy().join("grafana/fluxforge-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&raw).expect("the dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 12);
    let mut used: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("flux_"))
                .map(|w| {
                    w.trim_end_matches("_bucket")
                        .trim_end_matches("_count")
                        .trim_end_matches("_sum")
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    used.sort();
    used.dedup();

    let (d, _agent) = Fluxd::start_with_agent().await;
    let job = d
        .submit(&d.admin, &json!({"command": "true", "node_id": "agent-1"}))
        .await;
    d.wait_job(&d.admin, &job, std::time::Duration::from_secs(30), terminal)
        .await;
    // The job is final for clients a moment before the node that recorded it counts it.
    let metrics = eventually(
        "the finished job counted",
        std::time::Duration::from_secs(10),
        || async {
            let m = d.metrics_text().await?;
            m.contains("flux_jobs_finished_total{status=\"succeeded\"} 1")
                .then_some(m)
        },
    )
    .await;
    let exported = |name: &str| {
        metrics.lines().any(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with(' ')
                    || rest.starts_with('{')
                    || rest.starts_with("_bucket")
                    || rest.starts_with("_count")
            })
        })
    };
    for m in &used {
        assert!(
            exported(m),
            "the dashboard queries {m}, which fluxd does not export"
        );
    }
    assert!(
        metrics.contains("flux_dispatch_latency_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains("flux_store_op_duration_seconds_bucket{op=\"commit\""));
}
