//! What the outbound resilience stack (bulkhead → circuit breaker → balancer → outcome
//! recorded → retry decision) adds to one call, measured around an exchange that answers at
//! once: compare each case with `bare`, the same exchange without the stack, and with a whole
//! Ligand → Ligand call (`cargo bench -p ligand --bench outbound`, tens of microseconds).
//!
//! Run with: cargo bench -p ligand-runtime --bench resilience

#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, StatusCode};
use ligand_runtime::testkit::ResilienceStack;
use ligand_runtime::{ResilienceConfig, Strategy};

fn stack(strategy: Strategy, endpoints: usize) -> ResilienceStack {
    let mut config = ResilienceConfig::default();
    config.balancer.strategy = strategy;
    ResilienceStack::new(&config, endpoints).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("resilience");

    // The exchange alone, awaited the way the stack awaits it.
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async {
            let exchange = async { (StatusCode::OK, Ok::<(), ()>(())) };
            std::hint::black_box(exchange.await)
        })
    });
    for (name, strategy) in [
        ("p2c_ewma", Strategy::P2cEwma),
        ("least_request", Strategy::LeastRequest),
        ("round_robin", Strategy::RoundRobin),
        ("ring_hash", Strategy::RingHash),
    ] {
        let stack = stack(strategy, 8);
        group.bench_function(format!("{name}/8-endpoints/success"), |b| {
            b.to_async(&rt)
                .iter(|| async { stack.call(&Method::GET, StatusCode::OK).await })
        });
    }
    let wide = stack(Strategy::P2cEwma, 100);
    group.bench_function("p2c_ewma/100-endpoints/success", |b| {
        b.to_async(&rt)
            .iter(|| async { wide.call(&Method::GET, StatusCode::OK).await })
    });
    // Every attempt fails: the outlier detector, breaker and budget all do their work, and
    // the call ends refused by the open circuit most of the time.
    let failing = stack(Strategy::P2cEwma, 8);
    group.bench_function("p2c_ewma/8-endpoints/post-500", |b| {
        b.to_async(&rt).iter(|| async {
            failing
                .call(&Method::POST, StatusCode::INTERNAL_SERVER_ERROR)
                .await
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
