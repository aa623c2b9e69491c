//! Redis limiter checks against a local `redis-server` started by the benchmark itself.
#![allow(missing_docs, reason = "criterion generates the bench entry points")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ligand_ratelimit_redis::{RedisConfig, RedisLimiter};
use ligand_runtime::{Action, Chain, Link, RateLimitRequest, RateLimiter, Resource};

/// Checks in flight at once in the concurrent case, as under many simultaneous requests.
const CONCURRENCY: usize = 64;

fn check(c: &mut Criterion) {
    let redis = ligand_runtime::testkit::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A limit so high that every check is allowed: the allow path is the common one.
    let limiter = Arc::new(
        runtime
            .block_on(RedisLimiter::connect(RedisConfig::new(
                redis.url(),
                1e6,
                u32::MAX / 2,
            )))
            .unwrap(),
    );
    let chain = Chain::from(vec![Link::workload("spiffe://example.org/service/caller")]);
    let (resource, action) = (Resource::http_path("/hello/{name}"), Action::new("GET"));

    let mut group = c.benchmark_group("redis check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = RateLimitRequest {
                chain: &chain,
                resource: &resource,
                action: &action,
            };
            limiter.check(black_box(&request)).await.unwrap()
        })
    });

    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function(format!("{CONCURRENCY} concurrent"), |b| {
        b.to_async(&runtime).iter(|| {
            let limiter = limiter.clone();
            async move {
                let tasks: Vec<_> = (0..CONCURRENCY)
                    .map(|i| {
                        let limiter = limiter.clone();
                        tokio::spawn(async move {
                            let chain = Chain::from(vec![Link::workload(format!(
                                "spiffe://example.org/service/caller-{i}"
                            ))]);
                            let resource = Resource::http_path("/hello/{name}");
                            let action = Action::new("GET");
                            let request = RateLimitRequest {
                                chain: &chain,
                                resource: &resource,
                                action: &action,
                            };
                            limiter.check(&request).await.unwrap().allowed
                        })
                    })
                    .collect();
                for task in tasks {
                    assert!(task.await.unwrap());
                }
            }
        })
    });
    group.finish();
    drop(redis);
}

criterion_group!(benches, check);
criterion_main!(benches);
