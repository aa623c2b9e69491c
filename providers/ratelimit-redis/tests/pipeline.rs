//! End to end: a service served by `ligand_runtime::init` over real mTLS, limited by Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Path;
use ligand_ratelimit_redis::{RedisConfig, RedisLimiter};
use ligand_runtime::__private::{Routes, get};
use ligand_runtime::testkit::RedisServer;
use ligand_runtime::testkit::{AllowList, FakeIdentity, PeerClient, RecordingTelemetry, TestCa};
use ligand_runtime::{Config, HttpBinding, InitError, Service, SpiffeId};

const SERVER_ID: &str = "spiffe://example.org/service/hello";
const CALLER_ID: &str = "spiffe://example.org/service/caller";

/// The test service, written the way `#[ligand::service]` expands, counting handler runs.
struct Hello {
    calls: Arc<AtomicUsize>,
}

impl Service for Hello {
    fn __ligand_routes(self) -> Routes<Self> {
        Routes::new(self).route("/hello/{name}", "GET", |this: Arc<Hello>| {
            get(move |Path(name): Path<String>| async move {
                this.calls.fetch_add(1, Ordering::SeqCst);
                format!("hello {name}")
            })
        })
    }
}

fn config(ca: &TestCa, limiter: RedisLimiter, telemetry: Arc<RecordingTelemetry>) -> Config {
    Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
        .policy(AllowList::new().allow(CALLER_ID, "GET", "/hello/{name}"))
        .telemetry(telemetry)
        .rate_limiter(limiter)
        .binding(HttpBinding::new("127.0.0.1:0"))
        .build()
}

#[tokio::test]
async fn burst_then_429_with_retry_after_then_503_when_redis_dies() {
    let mut redis = RedisServer::start();
    let ca = TestCa::new("example.org");
    let telemetry = Arc::new(RecordingTelemetry::new());
    // 0.5 rps: Retry-After is at most 2 s.
    let limiter = RedisLimiter::connect(RedisConfig::new(redis.url(), 0.5, 3))
        .await
        .unwrap();
    let server = ligand_runtime::init(config(&ca, limiter, telemetry.clone()))
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let serving = tokio::spawn({
        let server = server.clone();
        let service = Hello {
            calls: calls.clone(),
        };
        async move { server.serve(service).await }
    });
    let addr = server.local_addr().await.unwrap();
    let expect = SpiffeId::new(SERVER_ID).unwrap();
    let caller = PeerClient::new(&ca.context(ca.svid(CALLER_ID)), Some(&expect)).unwrap();

    for _ in 0..3 {
        let response = caller.get(addr, "/hello/ada").await.unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let limited = caller.get(addr, "/hello/ada").await.unwrap();
    assert_eq!(limited.status, 429, "{}", limited.text());
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(limited.json().unwrap()["error_code"], "RATE_LIMITED");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    server.flush_audit().await;
    let events = telemetry.rate_limits();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].limit_rps, Some(0.5));
    assert_eq!(events[3].current_rps, Some(0.5));

    redis.kill();
    let unavailable = caller.get(addr, "/hello/ada").await.unwrap();
    assert_eq!(unavailable.status, 503, "{}", unavailable.text());
    assert_eq!(
        unavailable.json().unwrap()["error_code"],
        "RATE_LIMITER_UNAVAILABLE"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    server.flush_audit().await;
    assert!(telemetry.rate_limits()[4].error.is_some());

    server.close().await;
    let _ = serving.await;
}

#[tokio::test]
async fn init_fails_when_redis_went_away_after_connect() {
    let mut redis = RedisServer::start();
    let ca = TestCa::new("example.org");
    let limiter = RedisLimiter::connect(RedisConfig::new(redis.url(), 1.0, 1))
        .await
        .unwrap();
    redis.kill();
    let error = ligand_runtime::init(config(&ca, limiter, Arc::new(RecordingTelemetry::new())))
        .await
        .unwrap_err();
    assert!(matches!(error, InitError::Provider { .. }), "{error:?}");
}
