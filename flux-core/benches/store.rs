//! CAS write and read throughput of each store backend.
//!
//! `cargo bench -p flux-core --bench store` (Redis cases need `redis-server` on PATH; they start
//! their own on a free loopback port with `appendonly yes`, `appendfsync always`).

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flux_core::store::{self, DynStore, Expect, Key, Store};
use flux_core::testing::RedisServer;

/// One read-modify-write through CAS: read the version, write expecting it.
async fn cas_increment(s: &dyn Store, k: &Key) {
    loop {
        let cur = s.get(k).await.unwrap();
        let expect = cur
            .as_ref()
            .map_or(Expect::Absent, |v| Expect::Version(v.version));
        match s.put(k.clone(), vec![7u8; 256], expect).await {
            Ok(_) => return,
            Err(store::StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

fn bench_backend(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, s: DynStore) {
    let mut g = c.benchmark_group(format!("store/{name}"));
    g.measurement_time(Duration::from_secs(4)).sample_size(20);

    let key = Key::new("bench", "cas/one").unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("cas_write_1_client", |b| {
        b.to_async(rt).iter(|| cas_increment(s.as_ref(), &key))
    });

    rt.block_on(s.put(
        Key::new("bench", "read/one").unwrap(),
        vec![1u8; 256],
        Expect::Any,
    ))
    .unwrap();
    let rkey = Key::new("bench", "read/one").unwrap();
    g.bench_function("read_1_client", |b| {
        b.to_async(rt)
            .iter(|| async { s.get(&rkey).await.unwrap().unwrap() })
    });

    for clients in [4usize, 16, 64, 256] {
        g.throughput(Throughput::Elements(clients as u64));
        let keys: Vec<Key> = (0..clients)
            .map(|i| Key::new("bench", format!("cas/many/{i}")).unwrap())
            .collect();
        g.bench_with_input(
            BenchmarkId::new("cas_write_clients", clients),
            &keys,
            |b, keys| {
                b.to_async(rt).iter(|| async {
                    let tasks: Vec<_> = keys
                        .iter()
                        .map(|k| {
                            let (s, k) = (s.clone(), k.clone());
                            tokio::spawn(async move { cas_increment(s.as_ref(), &k).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            },
        );
    }
    g.finish();
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb: DynStore = Arc::new(
        rt.block_on(store::redb::RedbStore::open(dir.path().join("bench.redb")))
            .unwrap(),
    );
    bench_backend(c, "redb", &rt, redb);
    if let Some(server) = RedisServer::start() {
        let redis = rt.block_on(store::open(&server.url())).unwrap();
        bench_backend(c, "redis", &rt, redis);
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
