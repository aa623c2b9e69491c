//! `Server::enforce` with testkit providers, and the providers alone, so that the framework's
//! own overhead is the difference.
//!
//! Run with: cargo bench -p ligand-runtime --bench enforce

#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ligand_runtime::testkit::{AllowList, FakeIdentity, ScriptedLimiter, TestCa};
use ligand_runtime::{
    Action, Chain, Config, DecisionEvent, EvalRequest, InboundRequest, Link, OutboundCallEvent,
    PolicyEngine, ProviderError, RateLimitEvent, RateLimitRequest, RateLimiter, RequestLine,
    Resource, Telemetry, init_trust_boundary,
};

/// Discards events: the benchmark measures the pipeline, not a sink.
struct Discard;

impl Telemetry for Discard {
    fn record_decision(&self, event: &DecisionEvent) -> Result<(), ProviderError> {
        std::hint::black_box(event);
        Ok(())
    }
    fn record_rate_limit(&self, event: &RateLimitEvent) -> Result<(), ProviderError> {
        std::hint::black_box(event);
        Ok(())
    }
    fn record_outbound_call(&self, _: &OutboundCallEvent) -> Result<(), ProviderError> {
        Ok(())
    }
}

const CALLER: &str = "spiffe://example.org/service/caller";

fn request() -> InboundRequest {
    InboundRequest {
        chain: Chain::from(vec![Link::default().with_user("alice@example.org")]),
        peer: Link::workload(CALLER),
        resource: Resource::http_path("/accounts/{id}"),
        action: Action::new("GET"),
        request: RequestLine::new(http::Method::GET, "/accounts/42"),
        txn: None,
    }
}

fn policy() -> AllowList {
    AllowList::new().allow(CALLER, "GET", "/accounts/{id}")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let ca = TestCa::new("example.org");
    let limiter = Arc::new(ScriptedLimiter::allow_all());
    let server = rt
        .block_on(init_trust_boundary(
            Config::builder()
                .identity(FakeIdentity::new(
                    ca.context(ca.svid("spiffe://example.org/service/accounts")),
                ))
                .policy(policy())
                .rate_limiter(limiter.clone())
                .telemetry(Discard)
                .build(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("enforce");
    group.bench_function("server_enforce", |b| {
        b.to_async(&rt).iter(|| async {
            let allowed = server.enforce(request()).await;
            assert!(allowed.is_ok());
        })
    });

    // The same provider work without the framework: build the request, call the limiter and
    // the policy with the inputs the pipeline would give them.
    let engine = policy();
    group.bench_function("providers_only", |b| {
        b.to_async(&rt).iter(|| async {
            let InboundRequest {
                mut chain,
                peer,
                resource,
                action,
                request: line,
                txn: _,
            } = request();
            chain.push(peer.clone());
            let eval = EvalRequest::new(
                chain,
                peer,
                resource,
                action,
                line,
                "spiffe://example.org/service/accounts",
            );
            let check = RateLimitRequest {
                chain: &eval.chain,
                resource: &eval.resource,
                action: &eval.action,
            };
            let verdict = limiter.check(&check).await;
            assert!(verdict.is_ok_and(|v| v.allowed));
            let decision = engine.evaluate(&eval).await;
            assert!(decision.is_ok_and(|d| d.allowed));
        })
    });
    group.finish();
    rt.block_on(server.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
