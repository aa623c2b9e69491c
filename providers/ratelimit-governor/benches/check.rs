//! The cost of one limiter check on the request path.
#![allow(missing_docs, reason = "criterion generates the bench entry points")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};
use ligand_runtime::{Action, Chain, LimitOverride, Link, RateLimitRequest, RateLimiter, Resource};

fn check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // A limit so high that every check is allowed: the bench measures the allow path, which
    // is the one taken by nearly every request.
    let limiter = GovernorLimiter::new(
        GovernorConfig::new(1e9, 1_000_000)
            .with_override(LimitOverride::resource("/accounts/{id}/debit", 5.0, 5).action("debit")),
    )
    .unwrap();
    let (resource, action) = (Resource::http_path("/hello/{name}"), Action::new("GET"));
    let chains: Vec<Chain> = (0..1024)
        .map(|i| {
            Chain::from(vec![Link::workload(format!(
                "spiffe://example.org/service/caller-{i}"
            ))])
        })
        .collect();

    let one = &chains[0];
    c.bench_function("governor check, one caller", |b| {
        b.iter(|| {
            let request = RateLimitRequest {
                chain: one,
                resource: &resource,
                action: &action,
            };
            runtime
                .block_on(limiter.check(black_box(&request)))
                .unwrap()
        })
    });

    let mut i = 0usize;
    c.bench_function("governor check, 1024 callers", |b| {
        b.iter(|| {
            i = (i + 1) % chains.len();
            let request = RateLimitRequest {
                chain: &chains[i],
                resource: &resource,
                action: &action,
            };
            runtime
                .block_on(limiter.check(black_box(&request)))
                .unwrap()
        })
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
