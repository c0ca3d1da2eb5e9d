//! Property test of everything that decodes untrusted input: the state-file parser, API
//! request bodies, backups and tokens' claims. Thousands of seeded mutations of valid inputs
//! (byte flips, truncations, splices of syntax fragments) must each give a value or an error,
//! never a panic, and whatever decodes must satisfy the same rules as a well-formed input.

use flux_core::backup;
use flux_core::model::{RegisterAgent, SubmitJob};
use flux_core::quota::Quota;
use flux_core::state::ApplyRequest;
use flux_core::state::{StateSpec, parse_state_file, validate_set, validate_spec};
use flux_core::store::{Entry, Key, Snapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 4000;

const FRAGMENTS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "[[state]]",
    "\\u0000",
    "\\",
    "#",
    "0x",
    "-1",
    "99999999999999999999",
    "1e309",
    "null",
    "true",
    ":",
    "\u{feff}",
    "é",
    "\u{10FFFF}",
    "\"\"\"",
    "inf",
    "nan",
    "{\"",
    "\"command\":",
    "\"secret_env\":{\"A\":\"",
    "\0",
];

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..5) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
            1 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v.truncate(i);
            }
            2 => {
                let i = rng.random_range(0..=v.len());
                let f = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())];
                v.splice(i..i, f.bytes());
            }
            3 if v.len() > 2 => {
                let a = rng.random_range(0..v.len());
                let b = rng.random_range(a..v.len());
                v.drain(a..b);
            }
            _ => {
                let i = rng.random_range(0..=v.len());
                let n = rng.random_range(1..8);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, junk);
            }
        }
    }
    v
}

#[test]
fn the_state_file_parser_never_panics_and_accepts_only_valid_states() {
    let seed = br#"
[[state]]
name = "motd"
targets = { labels = { role = "web" } }
check = "grep -q fluxforge /etc/motd"
apply = "echo fluxforge >> /etc/motd"
interval = "30s"
timeout = "1m"
env = { A = "b" }
desired_exit_code = 0
"#;
    let mut rng = StdRng::seed_from_u64(0xF1_0F_0E);
    let mut parsed = 0;
    for _ in 0..ROUNDS {
        let input = mutate(&mut rng, seed);
        let Ok(text) = std::str::from_utf8(&input) else {
            continue;
        };
        match parse_state_file("fuzz.toml", text) {
            Ok(states) => {
                parsed += 1;
                assert!(
                    validate_set(&states).is_ok(),
                    "accepted invalid states from {text:?}"
                );
            }
            Err(e) => {
                // Positions, when given, are inside the text.
                assert!(e.line <= text.lines().count() + 1, "{e} for {text:?}");
            }
        }
    }
    assert!(
        parsed > 0,
        "no mutation parsed: the generator is too destructive"
    );
}

#[test]
fn request_bodies_never_panic_and_what_decodes_is_checked() {
    let seeds: &[&[u8]] = &[
        br#"{"command":"echo hi","node_id":"agent-1","env":{"A":"1"},"timeout_secs":30,"priority":5,"secret_env":{"PW":"hunter22"}}"#,
        br#"{"argv":["ls","-l"],"selector":{"role":"web"},"fan_out":true,"max_attempts":2}"#,
        br#"{"labels":{"role":"web"},"slots":4,"running":["j-1.1"]}"#,
        br#"{"toml":"[[state]]\nname=\"x\"","dry_run":true,"prune":false,"expect":{"x":3}}"#,
        br#"{"name":"s","targets":{"agents":["a"]},"check":"true","apply":"true","interval_secs":5}"#,
        br#"{"max_queued":10,"max_running":2,"submit_per_sec":1.5,"submit_burst":3}"#,
    ];
    let mut rng = StdRng::seed_from_u64(0xB0D1E5);
    for _ in 0..ROUNDS {
        let seed = seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, seed);
        if let Ok(req) = serde_json::from_slice::<SubmitJob>(&input) {
            let _ = flux_core::jobs::validate_submit(&req);
        }
        let _ = serde_json::from_slice::<RegisterAgent>(&input);
        let _ = serde_json::from_slice::<ApplyRequest>(&input);
        if let Ok(s) = serde_json::from_slice::<StateSpec>(&input) {
            let _ = validate_spec(&s);
        }
        if let Ok(q) = serde_json::from_slice::<Quota>(&input) {
            let _ = q.validate();
        }
        let _ = flux_core::auth::peek_claims(&String::from_utf8_lossy(&input));
    }
}

#[test]
fn damaged_backups_are_refused_without_panicking() {
    let e = |t: &str, p: &str, v: u64| Entry {
        key: Key::new(t, p).unwrap(),
        version: v,
        value: format!("{{\"v\":{v}}}").into_bytes(),
    };
    let snap = Snapshot {
        epoch: 4,
        revisions: [("acme".to_string(), 9)].into(),
        entries: vec![
            e("acme", "jobs/1", 3),
            e("acme", "jobs/2", 9),
            e("globex", "x", 1),
        ],
    };
    let key = backup::BackupKey::from_audit_key(&[3; 32]);
    let good = backup::encode(&snap, "redb", 1, &key);
    assert!(backup::decode(&good, &key).is_ok());
    let mut rng = StdRng::seed_from_u64(0xBAC4);
    let mut refused = 0;
    for _ in 0..ROUNDS {
        let input = mutate(&mut rng, &good);
        match backup::decode(&input, &key) {
            // Only a mutation that left the content as it was (or recomputed nothing) passes.
            Ok(b) => assert_eq!(
                b.entries, snap.entries,
                "a damaged backup decoded differently"
            ),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > ROUNDS / 2);
}
