//! Reading back the start and end times that test commands record, one file per node, and
//! measuring how many of those runs overlapped.
//!
//! Guarantees:
//! - [`side_effects`] reads every file under the folder and panics on a line that is neither
//!   `start <ns>` nor `end <ns>`, so a malformed record fails the test instead of being skipped.
//! - [`max_overlap`] counts an end before a start at the same instant, so back-to-back runs do
//!   not count as overlapping.
//! - [`single_runs`] fails on a node that ran more than once, or whose run has no end.

use std::collections::BTreeMap;
use std::path::Path;

/// Per node, the (start, end) times in ns its runs wrote under `dir` (one file per node).
pub fn side_effects(dir: &Path) -> BTreeMap<String, Vec<(u128, Option<u128>)>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let text = std::fs::read_to_string(e.path()).unwrap();
        let mut runs: Vec<(u128, Option<u128>)> = Vec::new();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next().and_then(|t| t.parse::<u128>().ok())) {
                (Some("start"), Some(t)) => runs.push((t, None)),
                (Some("end"), Some(t)) => {
                    runs.last_mut().expect("an end after a start").1 = Some(t)
                }
                _ => panic!("unexpected line {line:?}"),
            }
        }
        m.insert(e.file_name().to_string_lossy().into_owned(), runs);
    }
    m
}

/// The (start, end) of the one run of every node in `runs` (as [`side_effects`] reads them);
/// panics naming the node when it made other than one `what` (`run`, `apply`), or that one has
/// not ended.
pub fn single_runs(
    runs: &BTreeMap<String, Vec<(u128, Option<u128>)>>,
    what: &str,
) -> Vec<(u128, u128)> {
    runs.iter()
        .map(|(node, r)| {
            assert_eq!(r.len(), 1, "{node}: {} {what}s, not one", r.len());
            let end = r[0]
                .1
                .unwrap_or_else(|| panic!("the {what} on {node} did not end"));
            (r[0].0, end)
        })
        .collect()
}

/// The most runs in progress at any instant (an end before a start at the same instant).
pub fn max_overlap(runs: &[(u128, u128)]) -> usize {
    let mut ev: Vec<(u128, i32)> = Vec::new();
    for (s, e) in runs {
        ev.push((*s, 1));
        ev.push((*e, -1));
    }
    ev.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}
