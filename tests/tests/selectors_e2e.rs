//! Facts, the selector language and admin labels end to end: real `flux-agent` processes report
//! their machine's facts (and report them again when one changes), selectors of every form
//! place jobs, fan out and target desired states, admin labels override declared ones and
//! survive a re-registration, and a bad expression is a 422 naming its position.

use std::process::Command;
use std::time::Duration;

use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

async fn agent_record(d: &Fluxd, id: &str) -> Value {
    let (s, v) = d.get(&format!("/v1/agents/{id}"), &d.admin).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Submits a job with this selector (an expression string or a map) and returns the agent
/// that ran it.
async fn ran_on(d: &Fluxd, selector: Value) -> String {
    let (s, job) = d
        .post(
            "/v1/jobs",
            &d.admin,
            &json!({"command": "echo $FLUX_NODE_ID", "selector": selector}),
        )
        .await;
    assert_eq!(s, 202, "{selector}: {job}");
    let id = job["job_id"].as_str().unwrap().to_string();
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{selector}: {done}");
    done["agent"].as_str().unwrap().to_string()
}

/// The ids of the agents `agents list -l EXPR` previews.
fn preview(d: &Fluxd, expr: &str) -> Vec<String> {
    let out = d.fluxctl_json(&d.admin, &["agents", "list", "-l", expr]);
    let text = ok(&out).unwrap_or_else(|e| panic!("agents list -l {expr}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// An address added to the loopback interface for the test's life (a real change of the
/// machine's addresses, which the agent reports as `fact.ips`); removed on drop.
struct TestAddress(String);

impl TestAddress {
    fn add() -> Option<TestAddress> {
        // TEST-NET-2 (RFC 5737): never routed, so adding it to lo disturbs nothing.
        let addr = format!("198.51.100.{}", 1 + std::process::id() % 250);
        let out = Command::new("ip")
            .args(["addr", "add", &format!("{addr}/32"), "dev", "lo"])
            .output()
            .ok()?;
        out.status.success().then_some(TestAddress(addr))
    }
}

impl Drop for TestAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

/// Agent `w2` of tenant `default` declaring `labels`, keeping its state in `state_dir`.
async fn w2_agent(d: &Fluxd, labels: &[&str], state_dir: &std::path::Path) -> Proc {
    d.agent_with_args(
        "default",
        "w2",
        labels,
        &["--state-dir", &state_dir.display().to_string()],
    )
    .await
}

/// Facts arrive with the registration (os, cpus, memory, disk, kernel, agent version, boot
/// time), `agents get` and `list -o wide` show them, and a real change of the machine (an
/// address added, then removed) reaches the record through a heartbeat, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn facts_arrive_at_registration_and_follow_a_change() {
    let d = Fluxd::start().await;
    let url = d.url.clone();
    let _a = d
        .agent_full(
            "default",
            "fact-1",
            &["role=web"],
            &[url],
            &["--facts-interval", "1"],
        )
        .await;
    let v = eventually("facts", T, || async {
        let v = agent_record(&d, "fact-1").await;
        v["facts"]["cpus"].is_u64().then_some(v)
    })
    .await;
    let f = &v["facts"];
    assert_eq!(f["os"], std::env::consts::OS, "{f}");
    assert!(f["cpus"].as_u64().unwrap() >= 1, "{f}");
    assert!(f["memory_mb"].as_u64().unwrap() > 0, "{f}");
    assert!(f["root_total_gb"].is_u64(), "{f}");
    assert!(f["kernel"].is_string() && f["arch"].is_string(), "{f}");
    assert_eq!(f["agent_version"], env!("CARGO_PKG_VERSION"), "{f}");
    assert!(f["boot_time"].as_u64().unwrap() > 1_000_000_000, "{f}");
    let cpus = f["cpus"].as_u64().unwrap();

    // Typed: numbers compare numerically.
    assert_eq!(preview(&d, &format!("fact.cpus>={cpus}")), ["fact-1"]);
    assert!(preview(&d, &format!("fact.cpus>{cpus}")).is_empty());
    assert_eq!(preview(&d, &format!("fact.cpus=0{cpus}")), ["fact-1"]);

    let get = d.fluxctl(&d.admin, &["agents", "get", "fact-1"]);
    let text = ok(&get).unwrap();
    assert!(
        text.contains("fact.cpus") && text.contains("fact.memory_mb"),
        "{text}"
    );
    assert!(text.contains("labels:        role=web"), "{text}");
    let wide = d.fluxctl(&d.admin, &["-o", "wide", "agents", "list"]);
    let text = ok(&wide).unwrap();
    assert!(
        text.contains("CPUS") && text.contains("ADMIN LABELS"),
        "{text}"
    );
    assert!(text.contains(std::env::consts::ARCH), "{text}");

    let Some(addr) = TestAddress::add() else {
        eprintln!("cannot add an address to lo (not root?): the change of facts is not tried");
        return;
    };
    let want = addr.0.clone();
    eventually("the new address in the facts", T, || async {
        let v = agent_record(&d, "fact-1").await;
        let ips = v["facts"]["ips"].as_array().cloned().unwrap_or_default();
        ips.iter().any(|ip| ip == want.as_str()).then_some(())
    })
    .await;
    assert_eq!(preview(&d, &format!("fact.ips={want}")), ["fact-1"]);
    drop(addr);
    eventually("the address gone from the facts", T, || async {
        let v = agent_record(&d, "fact-1").await;
        let ips = v["facts"]["ips"].as_array().cloned().unwrap_or_default();
        (!ips.iter().any(|ip| ip == want.as_str())).then_some(())
    })
    .await;
}

/// Every selector form places jobs on exactly the agents it names (expression and map form),
/// fans out to the matching agents, targets states (`selector = "..."` and the map form), and
/// `agents list -l` previews the same agents; admin labels override declared labels, survive
/// the agent registering again with other labels, and can be removed; bad expressions are 422s
/// naming the field and the byte position.
#[tokio::test(flavor = "multi_thread")]
async fn selectors_of_every_form_on_jobs_fan_out_and_states_with_admin_labels() {
    let d = Fluxd::start().await;
    let state_dir = tempfile::tempdir().unwrap();
    let _w1 = d.agent("default", "w1", &["role=web", "zone=a"]).await;
    let mut w2 = w2_agent(&d, &["role=api", "zone=b"], state_dir.path()).await;
    let _d1 = d.agent("default", "d1", &["role=db", "canary=yes"]).await;
    eventually("facts of every agent", T, || async {
        let (_, v) = d.get("/v1/agents", &d.admin).await;
        let all = v.as_array().cloned().unwrap_or_default();
        (all.len() == 3 && all.iter().all(|a| a["facts"]["cpus"].is_u64())).then_some(())
    })
    .await;

    // Jobs: each form picks exactly its agent.
    for (selector, agent) in [
        (json!("role in (web,api),zone=b"), "w2"),
        (json!("role==web"), "w1"),
        (json!("tier notin (db),!canary,zone!=b"), "w1"),
        (json!("canary"), "d1"),
        (json!("role=db,env!=prod"), "d1"),
        (json!({"role": "db"}), "d1"),
        (
            json!("fact.os=linux,fact.cpus>=1,fact.memory_mb>1,role=api"),
            "w2",
        ),
    ] {
        assert_eq!(ran_on(&d, selector.clone()).await, agent, "{selector}");
    }
    // The job record keeps a map selector as a map, an expression as its canonical text.
    let (_, job) = d
        .post(
            "/v1/jobs",
            &d.admin,
            &json!({"command": "true", "selector": "role in ( web ) , zone = a"}),
        )
        .await;
    assert_eq!(job["selector"], "role in (web),zone=a", "{job}");

    // fluxctl job run -l: the old KEY=VALUE form and expressions, joined.
    let out = d.fluxctl(
        &d.admin,
        &[
            "job",
            "run",
            "-l",
            "role in (web,db)",
            "-l",
            "!canary",
            "--wait",
            "--",
            "echo",
            "on-$FLUX_NODE_ID",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.fluxctl(
        &d.admin,
        &[
            "job",
            "run",
            "-l",
            "role=web",
            "--shell",
            "--wait",
            "--",
            "echo on-$FLUX_NODE_ID",
        ],
    );
    assert!(stdout(&out).contains("on-w1"), "{}", stdout(&out));

    // Fan-out to every agent the expression matches.
    let fan = d
        .admin_job_expect(
            &json!({"command": "true", "fan_out": true, "selector": "role notin (api)"}),
            202,
        )
        .await;
    let mut pinned = field_strs(&fan["jobs"], "node_id");
    pinned.sort();
    assert_eq!(pinned, ["d1", "w1"]);

    // Preview.
    assert_eq!(preview(&d, "role in (web,api)"), ["w1", "w2"]);
    assert_eq!(preview(&d, "!canary,fact.cpus>=1"), ["w1", "w2"]);
    assert_eq!(preview(&d, "zone"), ["w1", "w2"]);
    assert!(preview(&d, "fact.memory_mb>999999999").is_empty());

    // States: the expression form and the map form of state.toml.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("state.toml");
    std::fs::write(
        &file,
        format!(
            r#"[[state]]
name = "by-expr"
targets = {{ selector = "role in (web,api),fact.cpus>=1" }}
check = "test -f {dir}/expr-$FLUX_NODE_ID"
apply = "touch {dir}/expr-$FLUX_NODE_ID"
interval = "2s"

[[state]]
name = "by-map"
targets = {{ labels = {{ role = "db" }} }}
check = "test -f {dir}/map-$FLUX_NODE_ID"
apply = "touch {dir}/map-$FLUX_NODE_ID"
interval = "2s"
"#,
            dir = work.path().display()
        ),
    )
    .unwrap();
    let f = file.display().to_string();
    let out = d.apply_wait(&f, "30s");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    for (name, want) in [("by-expr", vec!["w1", "w2"]), ("by-map", vec!["d1"])] {
        let (_, v) = d.get(&format!("/v1/states/{name}"), &d.admin).await;
        let agents = field_strs(&v["status"], "agent");
        assert_eq!(agents, want, "{name}: {v}");
    }
    assert!(work.path().join("expr-w2").exists() && !work.path().join("expr-d1").exists());
    assert!(work.path().join("map-d1").exists());

    // Admin labels: shown apart, and they win over the declared label.
    let out = d.fluxctl(&d.admin, &["agents", "label", "w2", "role=db", "tier=gold"]);
    let text = ok(&out).unwrap();
    assert!(text.contains("admin labels:  role=db,tier=gold"), "{text}");
    assert!(text.contains("labels:        role=api,zone=b"), "{text}");
    assert_eq!(preview(&d, "role=db"), ["d1", "w2"]);
    let (_, audit) = d.get("/v1/audit", &d.admin).await;
    assert!(
        audit.to_string().contains("POST /v1/agents/{id}/labels"),
        "the change is audited: {audit}"
    );
    assert!(preview(&d, "role=api").is_empty());
    // The map-form state now targets w2 as well.
    eventually("w2 a target of by-map", T, || async {
        work.path().join("map-w2").exists().then_some(())
    })
    .await;

    // The agent restarts declaring other labels: its admin labels stay, and still win.
    w2.kill9();
    let _w2 = w2_agent(&d, &["role=web", "tier=tin"], state_dir.path()).await;
    let v = eventually("w2 registered again", T, || async {
        let v = agent_record(&d, "w2").await;
        (v["labels"]["tier"] == "tin").then_some(v)
    })
    .await;
    assert_eq!(
        v["admin_labels"],
        json!({"role": "db", "tier": "gold"}),
        "{v}"
    );
    assert_eq!(ran_on(&d, json!("tier=gold")).await, "w2");
    assert_eq!(preview(&d, "tier=tin"), Vec::<String>::new());

    // An operator may not set admin labels; an admin removes one.
    let operator = d.token("default", "operator", None).await;
    let out = d.fluxctl(&operator, &["agents", "label", "w2", "x=y"]);
    assert!(
        !out.status.success() && stderr(&out).contains("admins only"),
        "{}",
        stderr(&out)
    );
    let out = d.fluxctl(&d.admin, &["agents", "label", "w2", "--remove", "role"]);
    ok(&out).unwrap();
    assert_eq!(preview(&d, "role=web"), ["w1", "w2"]);

    // Bad expressions: 422 naming the field and the byte position.
    let v = d
        .admin_job_expect(&json!({"command": "true", "selector": "role in (web"}), 422)
        .await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("selector") && msg.contains("at byte 12"),
        "{msg}"
    );
    let (s, v) = d
        .get("/v1/agents?selector=fact.cpus%3E%3Dmany", &d.admin)
        .await;
    assert_eq!(s, 422, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("selector: at byte 11"), "{msg}");
    let out = d.fluxctl(
        &d.admin,
        &["job", "run", "-l", "role=", "-l", "(x", "--", "true"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at byte 6"), "{}", stderr(&out));
}
