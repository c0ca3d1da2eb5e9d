//! Schedules with real processes: a one-second schedule run by a real agent, checked from its
//! side effects (each run appends its job id to a file, and each job names its slot), the CLI
//! (create, get, pause, trigger, delete --if-version), refusals of bad input, and failover of
//! the leader by SIGSTOP and SIGKILL around firing instants on a cluster over Redis.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flux_core::testing::RedisServer;
use flux_tests::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const MIN_1S: [&str; 2] = ["--min-schedule-interval", "1s"];

/// The job ids the schedule's runs appended to `file`, in order.
fn ran(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The slot of each run in `ids` (from its job's group), counted: slot -> runs.
/// Waits until every run schedule `tick` fired has succeeded and written its line to `file`;
/// returns the schedule.
async fn settled(n: &Fluxd, file: &Path) -> Value {
    eventually("the runs to settle", T, || async {
        let (_, v) = n.get("/v1/schedules/tick", &n.admin).await;
        let fired = v["fires"].as_u64()? as usize;
        let done = v["runs"]
            .as_array()?
            .iter()
            .all(|r| r["result"] == "succeeded");
        (done && ran(file).len() == fired).then_some(v)
    })
    .await
}

async fn slots(n: &Fluxd, ids: &[String]) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        let (status, job) = n.get(&format!("/v1/jobs/{id}"), &n.admin).await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(job["kind"], "schedule", "{job}");
        let group = job["group"].as_str().expect("group").to_string();
        if let Some((_, slot)) = flux_core::schedule::parse_slot_group(&group) {
            *out.entry(slot).or_default() += 1;
        }
    }
    out
}

/// Every slot ran exactly once, and no slot between the first and the last is missing.
fn assert_each_slot_once(slots: &BTreeMap<u64, usize>) {
    let twice: Vec<_> = slots.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "slots run more than once: {twice:?}");
    let keys: Vec<u64> = slots.keys().copied().collect();
    for w in keys.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1000,
            "a slot is missing between {} and {}",
            w[0],
            w[1]
        );
    }
}

fn every_second(file: &Path, node: &str) -> Value {
    json!({
        "name": "tick",
        "cron": "* * * * * *",
        "what": {"job": {
            "command": format!("echo $FLUX_JOB_ID >> {}", file.display()),
            "node_id": node,
        }},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_second_schedule_runs_each_slot_exactly_once_and_the_cli_manages_it() {
    let n = Fluxd::start_args(&MIN_1S).await;
    let _agent = n.agent("default", "agent-1", &[]).await;
    let file = n.dir.path().join("runs.txt");
    let cmd = format!("echo $FLUX_JOB_ID >> {}", file.display());
    let out = n.fluxctl(
        &n.admin,
        &[
            "schedule",
            "create",
            "tick",
            "--cron",
            "* * * * * *",
            "-n",
            "agent-1",
            "--",
            &cmd,
        ],
    );
    ok(&out).unwrap();
    let got = n.fluxctl_json(&n.admin, &["schedule", "get", "tick"]);
    let v = json_of(&got);
    let next: Vec<u64> = v["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(next.len(), 5, "{v}");
    assert!(next.windows(2).all(|w| w[1] - w[0] == 1000), "{next:?}");
    eventually("six runs", T, || async {
        (ran(&file).len() >= 6).then_some(())
    })
    .await;
    ok(&n.fluxctl(&n.admin, &["schedule", "pause", "tick"])).unwrap();
    // Once paused, the runs already fired finish and no new slot fires.
    let v = settled(&n, &file).await;
    let ids = ran(&file);
    let s = slots(&n, &ids).await;
    assert_eq!(s.len(), ids.len());
    assert_each_slot_once(&s);
    assert_eq!(
        v["next"],
        json!([]),
        "a paused schedule has no next slots: {v}"
    );
    // The status record's runs are the jobs that ran.
    let last = &v["runs"][0];
    assert_eq!(
        last["jobs"][0].as_str(),
        ids.last().map(String::as_str),
        "{v}"
    );
    // A trigger runs once now, paused or not.
    let before = ids.len();
    ok(&n.fluxctl(&n.admin, &["schedule", "trigger", "tick"])).unwrap();
    eventually("the triggered run", T, || async {
        (ran(&file).len() == before + 1).then_some(())
    })
    .await;
    let listed = n.fluxctl(&n.admin, &["schedule", "list"]);
    assert!(ok(&listed).unwrap().contains("tick"));
    // Delete with a stale version is refused and changes nothing; with the current one it goes.
    let version = v["version"].as_u64().unwrap();
    let stale = n.fluxctl(
        &n.admin,
        &[
            "schedule",
            "delete",
            "tick",
            "--if-version",
            &(version - 1).to_string(),
        ],
    );
    assert!(!stale.status.success(), "{}", stdout(&stale));
    assert_eq!(n.get("/v1/schedules/tick", &n.admin).await.0, 200);
    ok(&n.fluxctl(
        &n.admin,
        &[
            "schedule",
            "delete",
            "tick",
            "--if-version",
            &version.to_string(),
        ],
    ))
    .unwrap();
    assert_eq!(n.get("/v1/schedules/tick", &n.admin).await.0, 404);
    let fires = n.metric("flux_schedule_fires_total").await.unwrap();
    assert!(fires >= 6.0, "{fires}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedules_are_refused_naming_the_field_and_nothing_is_stored() {
    let n = Fluxd::start().await;
    let file = n.dir.path().join("never.txt");
    let cases = [
        (json!({"cron": "61 * * * *"}), "minute"),
        (json!({"cron": "* * 32 * *"}), "day-of-month"),
        (json!({"cron": "* * * *"}), "cron"),
        (json!({"tz": "Mars/Olympus"}), "tz"),
        // Every 10 s is more often than the default --min-schedule-interval of 1 minute.
        (json!({"cron": "*/10 * * * * *"}), "--min-schedule-interval"),
        (json!({"missed": {"catch_up": 0}}), "missed"),
        (json!({"bogus": 1}), "bogus"),
    ];
    for (patch, word) in cases {
        let mut body = every_second(&file, "agent-1");
        body["cron"] = json!("0 * * * *");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = n.post("/v1/schedules", &n.admin, &body).await;
        assert!((400..500).contains(&status), "{body} -> {status} {v}");
        let msg = error_message(&v);
        assert!(msg.contains(word), "{body}: {msg:?} does not name {word}");
    }
    let (status, v) = n.get("/v1/schedules", &n.admin).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!([]), "a refused schedule was stored");
    // A viewer may read but not create.
    let viewer = n.token("default", "viewer", None).await;
    let mut ok_body = every_second(&file, "agent-1");
    ok_body["cron"] = json!("0 * * * *");
    ok_body["what"]["job"]["allow_unknown_node"] = json!(true);
    assert_eq!(n.post("/v1/schedules", &viewer, &ok_body).await.0, 403);
    assert_eq!(n.post("/v1/schedules", &n.admin, &ok_body).await.0, 201);
    assert_eq!(
        n.post("/v1/schedules", &n.admin, &ok_body).await.0,
        409,
        "a second create of the same name"
    );
}

struct Cluster {
    nodes: Vec<Fluxd>,
    _redis: RedisServer,
}

async fn cluster(n: usize) -> Option<Cluster> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let mut extra: Vec<&str> = flux_core::testing::FAST_LEASE_ARGS.to_vec();
    extra.extend(MIN_1S);
    let nodes = Fluxd::cluster_on(&url, n, &extra).await;
    Some(Cluster {
        nodes,
        _redis: redis,
    })
}

async fn leader(c: &Cluster, skip: &[usize]) -> Option<usize> {
    for (i, n) in c.nodes.iter().enumerate() {
        if !skip.contains(&i) && n.metric("flux_leader_status").await == Some(1.0) {
            return Some(i);
        }
    }
    None
}

/// Sleeps until `ahead_ms` before the next whole second (a firing instant of the schedule):
/// the fault lands around a firing.
async fn near_firing(ahead_ms: u64) {
    let now = flux_core::model::now_ms();
    let target = (now / 1000 + 1) * 1000 - ahead_ms;
    let wait = target.saturating_sub(now);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_sigstop_and_sigkill_around_firings_neither_miss_nor_repeat_a_slot() {
    let Some(mut c) = cluster(3).await else {
        return;
    };
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url.clone()).collect();
    let _agent = c.nodes[0]
        .agent_with_servers("default", "agent-1", &[], &urls)
        .await;
    let file = c.nodes[0].dir.path().join("runs.txt");
    let first = leader(&c, &[]).await;
    let n0 = &c.nodes[0];
    let (status, v) = n0
        .post("/v1/schedules", &n0.admin, &every_second(&file, "agent-1"))
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(first.is_some());
    eventually("first runs", T, || async {
        (ran(&file).len() >= 2).then_some(())
    })
    .await;
    let mut dead: Vec<usize> = Vec::new();
    // Eight faults at or just before a firing instant: SIGSTOP of the leader until another
    // node leads (then SIGCONT), and once a SIGKILL.
    for trial in 0..8u64 {
        let l = eventually("a leader", T, || leader(&c, &dead)).await;
        near_firing(trial * 7 % 40).await;
        if trial == 4 {
            c.nodes[l].proc.kill9();
            dead.push(l);
            eventually("a new leader", T, || leader(&c, &dead)).await;
        } else {
            c.nodes[l].proc.signal(Signal::SIGSTOP);
            let mut skip = dead.clone();
            skip.push(l);
            eventually("a new leader", T, || leader(&c, &skip)).await;
            c.nodes[l].proc.signal(Signal::SIGCONT);
        }
        let before = ran(&file).len();
        eventually("runs after the failover", T, || async {
            (ran(&file).len() >= before + 2).then_some(())
        })
        .await;
    }
    let live = (0..c.nodes.len()).find(|i| !dead.contains(i)).unwrap();
    let n = &c.nodes[live];
    let (s, _) = n
        .req(reqwest::Method::POST, "/v1/schedules/tick/pause", &n.admin)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 200);
    let v = settled(n, &file).await;
    let ids = ran(&file);
    let s = slots(n, &ids).await;
    assert_eq!(s.values().sum::<usize>(), ids.len());
    assert_each_slot_once(&s);
    assert_eq!(v["missed"], 0, "{v}");
    assert!(ids.len() >= 16, "only {} runs", ids.len());
}

/// Waits until `name` has fired `n` slots more than `since`.
async fn fires(n: &Fluxd, name: &str) -> u64 {
    let (_, v) = n.get(&format!("/v1/schedules/{name}"), &n.admin).await;
    v["fires"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_whole_cluster_was_down_late_slots_follow_the_missed_policy() {
    let mut n = Fluxd::start_args(&MIN_1S).await;
    let _agent = n.agent("default", "agent-1", &[]).await;
    let policies = [
        ("skip", json!("skip"), 0usize),
        ("once", json!("once"), 1),
        ("catch2", json!({"catch_up": 2}), 2),
    ];
    for (name, missed, _) in &policies {
        let file = n.dir.path().join(format!("{name}.txt"));
        let mut body = every_second(&file, "agent-1");
        body["name"] = json!(name);
        body["missed"] = missed.clone();
        body["grace_secs"] = json!(1);
        let (status, v) = n.post("/v1/schedules", &n.admin, &body).await;
        assert_eq!(status, 201, "{v}");
    }
    eventually("first runs", T, || async {
        let mut all = true;
        for (name, _, _) in &policies {
            all &= fires(&n, name).await >= 2;
        }
        all.then_some(())
    })
    .await;
    // The whole cluster (one node) is down for six slots.
    n.proc.kill9();
    tokio::time::sleep(Duration::from_secs(6)).await;
    n.start_again(&MIN_1S).await;
    let agent_back = eventually("runs after the restart", T, || async {
        let mut all = true;
        for (name, _, _) in &policies {
            let (_, v) = n.get(&format!("/v1/schedules/{name}"), &n.admin).await;
            all &= v["missed"].as_u64().unwrap_or(0) >= 3;
        }
        all.then_some(())
    });
    agent_back.await;
    for (name, _, _) in &policies {
        let (s, _) = send(n.req(
            reqwest::Method::POST,
            &format!("/v1/schedules/{name}/pause"),
            &n.admin,
        ))
        .await;
        assert_eq!(s, 200);
    }
    for (name, _, keep) in &policies {
        let (_, v) = n.get(&format!("/v1/schedules/{name}"), &n.admin).await;
        let runs = v["runs"].as_array().unwrap();
        // Late runs: fired more than grace (1 s) after their slot; exactly as many as the
        // policy keeps.
        let late = runs
            .iter()
            .filter(|r| r["fired_at"].as_u64().unwrap() > r["slot"].as_u64().unwrap() + 1000)
            .count();
        assert_eq!(late, *keep, "{name}: {v}");
        // Every slot from the first fired to the last decided either ran or was counted missed.
        let slots: Vec<u64> = runs.iter().map(|r| r["slot"].as_u64().unwrap()).collect();
        let first = v["runs"].as_array().unwrap().last().unwrap()["slot"]
            .as_u64()
            .unwrap();
        let last = v["last_slot"].as_u64().unwrap();
        let fired = v["fires"].as_u64().unwrap();
        let missed = v["missed"].as_u64().unwrap();
        if fired as usize == runs.len() {
            assert_eq!((last - first) / 1000 + 1, fired + missed, "{name}: {v}");
        }
        let mut sorted = slots.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), slots.len(), "{name}: a slot ran twice: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overlap_skip_and_queue_never_run_two_at_once_and_allow_does() {
    let n = Fluxd::start_args(&MIN_1S).await;
    let _agent = n.agent("default", "agent-1", &[]).await;
    for overlap in ["skip", "queue", "allow"] {
        let file = n.dir.path().join(format!("{overlap}.txt"));
        let f = file.display();
        let body = json!({
            "name": overlap,
            "cron": "* * * * * *",
            "overlap": overlap,
            "what": {"job": {
                "command": format!("echo start >> {f}; sleep 2.5; echo end >> {f}"),
                "node_id": "agent-1",
            }},
        });
        let (status, v) = n.post("/v1/schedules", &n.admin, &body).await;
        assert_eq!(status, 201, "{v}");
    }
    eventually("three runs of each", T, || async {
        let mut all = true;
        for o in ["skip", "queue", "allow"] {
            all &= ran(&n.dir.path().join(format!("{o}.txt")))
                .iter()
                .filter(|l| *l == "end")
                .count()
                >= 3;
        }
        all.then_some(())
    })
    .await;
    for o in ["skip", "queue", "allow"] {
        let lines = ran(&n.dir.path().join(format!("{o}.txt")));
        let overlapped = lines.windows(2).any(|w| w[0] == "start" && w[1] == "start");
        assert_eq!(overlapped, o == "allow", "{o}: {lines:?}");
        let (_, v) = n.get(&format!("/v1/schedules/{o}"), &n.admin).await;
        let skipped = v["skipped"].as_u64().unwrap();
        assert_eq!(skipped > 0, o != "allow", "{o}: {v}");
    }
}

/// A state file with one state and, unless `schedule` is empty, one `[[schedule]]` table.
fn state_file(dir: &Path, name: &str, schedule: &str) -> String {
    let text = format!(
        r#"[[state]]
name = "marker"
targets = {{ agents = ["agent-x"] }}
check = "true"
apply = "true"
{schedule}"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn nightly(cron: &str, tz: &str) -> String {
    format!(
        r#"
[[schedule]]
name = "nightly"
cron = "{cron}"
tz = "{tz}"
overlap = "skip"
what = {{ job = {{ command = "true", node_id = "agent-x", allow_unknown_node = true }} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_tables_in_a_state_file_are_created_diffed_updated_and_pruned() {
    let n = Fluxd::start().await;
    let dir = n.dir.path();
    // A schedule made by the CLI, not in any file.
    ok(&n.fluxctl(
        &n.admin,
        &[
            "schedule",
            "create",
            "cli-made",
            "--cron",
            "@daily",
            "-n",
            "agent-x",
            "--allow-unknown-node",
            "--",
            "true",
        ],
    ))
    .unwrap();
    let v1 = state_file(dir, "v1.toml", &nightly("@hourly", "UTC"));

    let diff = n.fluxctl(&n.admin, &["diff", "-f", &v1]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    assert_eq!(
        stdout(&diff),
        "+ marker (create)\n+ schedule nightly (create)\n"
    );
    let out = n.fluxctl(&n.admin, &["apply", "-f", &v1]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("+ schedule nightly (create)"),
        "{}",
        stdout(&out)
    );
    let (status, s) = n.get("/v1/schedules/nightly", &n.admin).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["spec"]["cron"], "@hourly");
    assert_eq!(s["spec"]["overlap"], "skip");
    assert_eq!(s["next"].as_array().unwrap().len(), 5, "{s}");
    let v_created = s["version"].as_u64().unwrap();

    let diff = n.fluxctl(&n.admin, &["diff", "-f", &v1]);
    assert_eq!(diff.status.code(), Some(0), "{}", stdout(&diff));
    assert_eq!(stdout(&diff), "");
    let again = n.fluxctl(&n.admin, &["apply", "-f", &v1]);
    assert!(stdout(&again).contains("no changes"), "{}", stdout(&again));

    // An edit shows as an update of the one field, and applying it updates the schedule.
    let v2 = state_file(dir, "v2.toml", &nightly("0 3 * * *", "UTC"));
    let diff = n.fluxctl(&n.admin, &["diff", "-f", &v2]);
    assert_eq!(diff.status.code(), Some(1));
    assert_eq!(
        stdout(&diff),
        format!(
            "~ schedule nightly (update from version {v_created})\n    cron: \"@hourly\" → \"0 3 * * *\"\n"
        )
    );
    // Planned against a version a concurrent edit moved: a conflict, nothing changed.
    let text = std::fs::read_to_string(&v2).unwrap();
    let stale = json!({"toml": text, "expect_schedules": {"nightly": v_created - 1}});
    let (status, body) = n.post("/v1/states", &n.admin, &stale).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("schedule nightly"), "{body}");
    let out = n.fluxctl(&n.admin, &["apply", "-f", &v2]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, s) = n.get("/v1/schedules/nightly", &n.admin).await;
    assert_eq!(s["spec"]["cron"], "0 3 * * *");
    assert!(s["version"].as_u64().unwrap() > v_created, "{s}");

    // A bad table refuses the whole file, naming the table and field: the new state is not
    // created either.
    let bad = state_file(
        dir,
        "bad.toml",
        &format!(
            "{}\n[[state]]\nname = \"second\"\ntargets = {{ agents = [\"agent-x\"] }}\ncheck = \"true\"\napply = \"true\"\n",
            nightly("0 3 * * *", "Mars/Olympus")
        ),
    );
    for cmd in ["diff", "apply"] {
        let out = n.fluxctl(&n.admin, &[cmd, "-f", &bad]);
        assert!(!out.status.success(), "{cmd}: {}", stdout(&out));
        assert!(stderr(&out).contains("schedule[0].tz"), "{}", stderr(&out));
    }
    let (status, _) = n.get("/v1/states/second", &n.admin).await;
    assert_eq!(status, 404);
    let (_, s) = n.get("/v1/schedules/nightly", &n.admin).await;
    assert_eq!(s["spec"]["tz"], "UTC");

    // Without its table, and without --prune, both schedules stay.
    let v3 = state_file(dir, "v3.toml", "");
    let diff = n.fluxctl(&n.admin, &["diff", "-f", &v3]);
    assert_eq!(diff.status.code(), Some(0), "{}", stdout(&diff));
    ok(&n.fluxctl(&n.admin, &["apply", "-f", &v3])).unwrap();
    for name in ["nightly", "cli-made"] {
        let (status, _) = n.get(&format!("/v1/schedules/{name}"), &n.admin).await;
        assert_eq!(status, 200, "{name}");
    }
    // With --prune, the schedules the file does not declare go (the CLI's too); its state stays.
    let diff = n.fluxctl(&n.admin, &["diff", "-f", &v3, "--prune"]);
    assert_eq!(diff.status.code(), Some(1));
    let text = stdout(&diff);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("- schedule cli-made (delete version "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("- schedule nightly (delete version "),
        "{text}"
    );
    let out = n.fluxctl(&n.admin, &["apply", "-f", &v3, "--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["nightly", "cli-made"] {
        let (status, _) = n.get(&format!("/v1/schedules/{name}"), &n.admin).await;
        assert_eq!(status, 404, "{name}");
    }
    let (status, _) = n.get("/v1/states/marker", &n.admin).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_schedule_starts_one_rollout_per_slot_on_real_agents() {
    let n = Fluxd::start_args(&MIN_1S).await;
    let _a1 = n.agent("default", "web-1", &["role=web"]).await;
    let _a2 = n.agent("default", "web-2", &["role=web"]).await;
    let file = n.dir.path().join("runs.txt");
    let cmd = format!("echo $FLUX_JOB_ID >> {}", file.display());
    ok(&n.fluxctl(
        &n.admin,
        &[
            "schedule",
            "create",
            "roll",
            "--cron",
            "* * * * * *",
            "-l",
            "role=web",
            "--all",
            "--max-concurrency",
            "2",
            "--max-errors",
            "1",
            "--overlap",
            "skip",
            "--",
            &cmd,
        ],
    ))
    .unwrap();
    let (_, v) = n.get("/v1/schedules/roll", &n.admin).await;
    assert_eq!(v["spec"]["what"]["rollout"]["max_concurrency"], "2", "{v}");
    // Three rollouts finished.
    eventually("three finished rollout runs", T, || async {
        let (_, v) = n.get("/v1/schedules/roll", &n.admin).await;
        let done = v["runs"]
            .as_array()?
            .iter()
            .filter(|r| r["result"] == "succeeded")
            .count();
        (done >= 3).then_some(())
    })
    .await;
    ok(&n.fluxctl(&n.admin, &["schedule", "pause", "roll"])).unwrap();
    let v = eventually("the runs to settle", T, || async {
        let (_, v) = n.get("/v1/schedules/roll", &n.admin).await;
        let settled = v["runs"]
            .as_array()?
            .iter()
            .all(|r| r["result"] == "succeeded");
        settled.then_some(v)
    })
    .await;
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len() as u64, v["fires"].as_u64().unwrap(), "{v}");
    // Each run names its own rollout, of both agents, and each slot has one run.
    let mut seen_slots = std::collections::BTreeSet::new();
    let mut seen_rollouts = std::collections::BTreeSet::new();
    let mut jobs = Vec::new();
    for run in runs {
        assert!(seen_slots.insert(run["slot"].as_u64().expect("a slot run")));
        let id = run["rollout"].as_str().expect("a rollout id").to_string();
        assert!(run["jobs"].as_array().is_none_or(|j| j.is_empty()), "{run}");
        let (status, r) = n.get(&format!("/v1/rollouts/{id}"), &n.admin).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["created_by"], "schedule/roll", "{r}");
        assert_eq!(r["params"]["max_concurrency"], 2, "{r}");
        let mut nodes = field_strs(&r["targets"], "node_id");
        nodes.sort();
        assert_eq!(nodes, ["web-1", "web-2"], "{r}");
        for t in r["targets"].as_array().unwrap() {
            jobs.push(t["job_id"].as_str().expect("a job").to_string());
        }
        assert!(seen_rollouts.insert(id));
    }
    // The side effects: every rollout job ran once, and nothing else ran.
    let mut ran_ids = ran(&file);
    ran_ids.sort();
    jobs.sort();
    assert_eq!(ran_ids, jobs);
    // `schedule get` shows the rollout of each run.
    let out = n.fluxctl(&n.admin, &["schedule", "get", "roll"]);
    assert!(ok(&out).unwrap().contains("rollout r-"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedules_secret_env_reaches_its_jobs_and_is_never_shown() {
    let n = Fluxd::start().await;
    let _agent = n.agent("default", "agent-1", &[]).await;
    let file = n.dir.path().join("secret.txt");
    let secret = "s3cr3t-value-42";
    let body = json!({
        "name": "sec",
        "cron": "@daily",
        "what": {"job": {
            "command": format!("echo $TOKEN > {}; echo token=$TOKEN", file.display()),
            "node_id": "agent-1",
            "secret_env": {"TOKEN": secret},
        }},
    });
    let (status, v) = n.post("/v1/schedules", &n.admin, &body).await;
    assert_eq!(status, 201, "{v}");
    let sealed = v["spec"]["what"]["job"]["secret_env"]["TOKEN"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sealed.starts_with("hmac-sha256:"), "{v}");
    let (_, list) = n.get("/v1/schedules", &n.admin).await;
    for shown in [v.to_string(), list.to_string()] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Each run's job gets the value, as an ad-hoc job's secret_env: in its environment, not in
    // its record, masked in its output.
    let run_once = || async {
        let (status, run) = n
            .post("/v1/schedules/sec/trigger", &n.admin, &json!({}))
            .await;
        assert_eq!(status, 202, "{run}");
        let id = run["jobs"][0].as_str().unwrap().to_string();
        let job = n.wait_job(&n.admin, &id, T, terminal).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert!(!job.to_string().contains(secret), "{job}");
        let logs = n.logs(&n.admin, &id).await;
        assert!(logs.contains("token=[redacted]"), "{logs}");
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret);
        std::fs::remove_file(&file).unwrap();
    };
    run_once().await;
    // The spec sent back as shown (with the digest) is unchanged and keeps the value.
    let mut back = v["spec"].clone();
    back["paused"] = json!(true);
    let (status, v2) = send(
        n.req(reqwest::Method::PUT, "/v1/schedules/sec", &n.admin)
            .json(&back),
    )
    .await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(
        v2["spec"]["what"]["job"]["secret_env"]["TOKEN"],
        sealed.as_str()
    );
    run_once().await;
    // A digest of no stored value (another schedule's, say) is refused, naming the field.
    let mut stray = v["spec"].clone();
    stray["name"] = json!("other");
    let (status, e) = n.post("/v1/schedules", &n.admin, &stray).await;
    assert_eq!(status, 422, "{e}");
    assert!(e.to_string().contains("secret_env"), "{e}");
}
