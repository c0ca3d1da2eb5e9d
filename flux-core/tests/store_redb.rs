//! The store conformance suite and crash-durability checks on the embedded redb backend.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flux_core::store::conformance::Fixture;
use flux_core::store::redb::RedbStore;
use flux_core::store::{self, Expect, Key, Store, StoreError};

mod common;

use common::{acknowledged, concurrent_puts, put_new, wait_writable};

async fn fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let s: store::DynStore = Arc::new(RedbStore::open(dir.path().join("flux.redb")).await.unwrap());
    Some(Fixture {
        store: s.clone(),
        peer: s,
        fresh: Some(Arc::new(
            RedbStore::open(dir.path().join("fresh.redb"))
                .await
                .unwrap(),
        )),
        guard: Box::new(dir),
    })
}

flux_core::store_conformance_tests!(fixture());

/// Runs the test `name` of this binary alone as a child process, with `env` set to the store
/// file `path`; its stdout is piped for its acknowledgements.
fn spawn_child_writer(name: &str, env: &str, path: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

const CHILD_ENV: &str = "FLUX_TEST_REDB_CHILD";

/// Not a test of its own: the child process of `acknowledged_writes_survive_kill_9`. It writes
/// keys one by one and prints each key only after its commit returned.
#[tokio::test]
async fn redb_child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let s = RedbStore::open(path).await.unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let payload = format!("payload-{i}");
        put_new(&s, "acme", &format!("jobs/{i:08}"), payload.as_bytes()).await;
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    let mut child = spawn_child_writer("redb_child_writer", CHILD_ENV, &path);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = None;
    // Let the child acknowledge a few hundred writes, then kill it mid-stream.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            let n: u64 = n.parse().unwrap();
            acked = Some(n);
            if n >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = acked.expect("child acknowledged no write");
    let s = RedbStore::open(&path).await.expect("reopen after kill -9");
    for i in 0..=acked {
        let got = acknowledged(&s, format!("jobs/{i:08}"), &i.to_string()).await;
        assert_eq!(got.value, format!("payload-{i}").into_bytes());
    }
    // Nothing half-written: every present key has its full payload.
    for e in s.list("acme", "jobs/").await.unwrap() {
        let i: u64 = e.key.path().trim_start_matches("jobs/").parse().unwrap();
        assert_eq!(e.value, format!("payload-{i}").into_bytes());
    }
}

const BATCH_CHILD_ENV: &str = "FLUX_TEST_REDB_BATCH_CHILD";
const WRITERS: u64 = 32;

/// Not a test of its own: the child process of
/// `acknowledged_writes_survive_kill_9_during_batched_commits`. `WRITERS` tasks write at once
/// (so commits share write transactions); each key is printed only after its commit returned,
/// and the batch counters now and then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_batch_child_writer() {
    let Some(path) = std::env::var_os(BATCH_CHILD_ENV) else {
        return;
    };
    let s = Arc::new(RedbStore::open(path).await.unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let (s, out) = (s.clone(), out.clone());
        handles.push(tokio::spawn(async move {
            for i in 0u64.. {
                let (path, payload) = (format!("jobs/{w:02}-{i:08}"), format!("payload-{w}-{i}"));
                let v = put_new(s.as_ref(), "acme", &path, payload.as_bytes()).await;
                let mut o = out.lock().unwrap();
                writeln!(o, "acked {w} {i} {v}").unwrap();
                if i % 50 == 0 {
                    let (b, r) = s.commit_batches().expect("group-commit counters");
                    writeln!(o, "stats {b} {r}").unwrap();
                }
                o.flush().unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_during_batched_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    let mut child = spawn_child_writer("redb_batch_child_writer", BATCH_CHILD_ENV, &path);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let mut stats = (0, 0);
    // Kill the child while its writers are mid-stream, after a few thousand acknowledgements.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["acked", w, i, v] => acked.push((
                w.parse::<u64>().unwrap(),
                i.parse::<u64>().unwrap(),
                v.parse::<u64>().unwrap(),
            )),
            ["stats", b, r] => stats = (b.parse::<u64>().unwrap(), r.parse::<u64>().unwrap()),
            _ => {}
        }
        if acked.len() >= 3000 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        acked.len() >= 3000,
        "child acknowledged only {}",
        acked.len()
    );
    assert!(
        stats.1 > stats.0,
        "the writers' commits were never batched ({} requests in {} write transactions)",
        stats.1,
        stats.0
    );
    let s = RedbStore::open(&path).await.expect("reopen after kill -9");
    for (w, i, v) in &acked {
        let got = acknowledged(&s, format!("jobs/{w:02}-{i:08}"), &format!("{w}-{i}")).await;
        assert_eq!(
            (got.version, got.value),
            (*v, format!("payload-{w}-{i}").into_bytes())
        );
    }
    // Nothing half-written: every present key has its full payload.
    for e in s.list("acme", "jobs/").await.unwrap() {
        let (w, i) = e.key.path()["jobs/".len()..].split_once('-').unwrap();
        let (w, i): (u64, u64) = (w.parse().unwrap(), i.parse().unwrap());
        assert_eq!(e.value, format!("payload-{w}-{i}").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_write_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(RedbStore::open(dir.path().join("flux.redb")).await.unwrap());
    let before = s.commit_batches().expect("group-commit counters");
    for put in concurrent_puts(&s, 256, |i| format!("jobs/{i:04}")).await {
        put.unwrap();
    }
    let (b, r) = s.commit_batches().expect("group-commit counters");
    let (b, r) = (b - before.0, r - before.1);
    assert_eq!(r, 256);
    assert!(
        b < 256,
        "256 concurrent commits took {b} write transactions"
    );
    assert_eq!(s.list("acme", "jobs/").await.unwrap().len(), 256);
}

#[tokio::test]
async fn data_and_epoch_survive_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    let k = Key::new("acme", "states/motd").unwrap();
    let (v, e) = {
        let s = RedbStore::open(&path).await.unwrap();
        let v = s
            .put(k.clone(), b"x".to_vec(), Expect::Absent)
            .await
            .unwrap();
        (v, s.next_epoch().await.unwrap())
    };
    let s = RedbStore::open(&path).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().unwrap().version, v);
    assert_eq!(s.current_epoch().await.unwrap(), e);
    let v2 = s.put(k, b"y".to_vec(), Expect::Version(v)).await.unwrap();
    assert!(v2 > v, "revision counter must survive reopen");
}

/// Opens `path`, which must be refused, and checks that the refusal left the file (a `what`)
/// as it was; returns the error.
async fn refused_untouched(path: &Path, what: &str) -> StoreError {
    let before = std::fs::read(path).unwrap();
    let err = RedbStore::open(path).await.unwrap_err();
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "a refused {what} must not be modified"
    );
    err
}

#[tokio::test]
async fn a_foreign_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = b"these are somebody's notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let err = refused_untouched(&path, "file").await;
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains("notes.txt"),
        "error must name the file: {err}"
    );
}

#[tokio::test]
async fn a_redb_file_from_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("settings");
            let mut t = w.open_table(def).unwrap();
            t.insert("theme", "dark").unwrap();
        }
        w.commit().unwrap();
    }
    let err = refused_untouched(&path, "database").await;
    assert!(err.to_string().contains("did not create"), "{err}");
}

#[tokio::test]
async fn a_corrupted_store_file_gives_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    {
        let s = RedbStore::open(&path).await.unwrap();
        put_new(&s, "acme", "a", b"1").await;
    }
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().take(512) {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = RedbStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[tokio::test]
async fn a_second_handle_cannot_open_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    let _s = RedbStore::open(&path).await.unwrap();
    let err = RedbStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
}

#[tokio::test]
async fn open_spec_is_validated() {
    assert!(matches!(
        store::open("redb:").await,
        Err(StoreError::InvalidSpec { .. })
    ));
    assert!(matches!(
        store::open("postgres://x").await,
        Err(StoreError::InvalidSpec { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("redb:{}", dir.path().join("sub/flux.redb").display());
    let s = tokio::time::timeout(Duration::from_secs(10), store::open(&spec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.backend(), "redb");
}

/// A full disk: writes fail with a clear error and change nothing, the store says why it cannot
/// commit, and once there is room again it commits by itself (no reopen by the caller, no
/// restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_the_store_recovers_by_itself() {
    use flux_core::store::redb::IoFaults;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux.redb");
    let faults = Arc::new(IoFaults::default());
    let s = Arc::new(
        RedbStore::open_with_faults(&path, faults.clone())
            .await
            .unwrap(),
    );
    let k = |p: &str| Key::new("acme", p).unwrap();
    let v1 = s
        .put(k("jobs/1"), b"one".to_vec(), Expect::Absent)
        .await
        .unwrap();
    assert_eq!(s.unwritable(), None);

    let mut changes = s.subscribe();
    faults.fail_writes(true);
    for put in concurrent_puts(&s, 20, |i| format!("jobs/full-{i}")).await {
        let err = put.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
    let err = s
        .put(k("jobs/2"), b"two".to_vec(), Expect::Absent)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("No space left on device"),
        "the error says why: {err}"
    );
    let why = s
        .unwritable()
        .expect("the store reports that it cannot commit");
    assert!(why.contains("No space left"), "{why}");
    // A failed commit may be on disk all the same, without its notice: subscribers are told
    // to read afresh.
    let notice = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("a notice after the failed commits")
        .unwrap();
    assert!(notice.is_resync(), "{notice:?}");
    // (Reads may fail too meanwhile: redb must repair the file to open it again, which needs
    // room; they fail with a clear error, never a panic.)
    if let Err(e) = s.get(&k("jobs/1")).await {
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    // Room again: the store notices by itself, without any caller's write.
    faults.fail_writes(false);
    wait_writable(s.as_ref()).await;
    let v2 = s
        .put(k("jobs/2"), b"two".to_vec(), Expect::Absent)
        .await
        .unwrap();
    assert!(v2 > v1);
    assert!(
        s.list("acme", "jobs/full-").await.unwrap().is_empty(),
        "a failed write left a trace"
    );
    drop(s);
    let s = RedbStore::open(&path).await.unwrap();
    assert_eq!(s.get(&k("jobs/1")).await.unwrap().unwrap().value, b"one");
    assert_eq!(s.get(&k("jobs/2")).await.unwrap().unwrap().version, v2);
}

/// Bytes this process has read through system calls so far (`rchar`: a `pread` served from
/// the kernel's page cache counts too).
fn bytes_read() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/self/io")
}

/// `open_with_cache` sizes redb's page cache: with a cache of 1 MiB, reading 4 MiB of objects
/// a second time reads them from the file again (with redb's default of 1 GiB they would come
/// from its cache, filled as they were written).
#[tokio::test]
async fn the_page_cache_is_sized_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let value = vec![b'x'; 16 * 1024];
    let s = RedbStore::open_with_cache(dir.path().join("small.redb"), Some(1 << 20))
        .await
        .unwrap();
    for chunk in 0..16 {
        let mut txn = store::Txn::new();
        for i in 0..16 {
            let k = Key::new("acme", format!("blobs/{chunk:02}-{i:02}")).unwrap();
            txn = txn.put(k, value.clone(), Expect::Absent);
        }
        s.commit(txn).await.unwrap();
    }
    let all = s.list("acme", "blobs/").await.unwrap();
    assert_eq!(all.len(), 256);
    let before = bytes_read();
    let again = s.list("acme", "blobs/").await.unwrap();
    let read = bytes_read() - before;
    assert_eq!(again, all);
    assert!(all.iter().all(|e| e.value == value));
    assert!(
        read >= 4 << 20,
        "read {read} bytes from the file: not a 1 MiB cache"
    );
}
