//! Init (fail-closed), the trust-boundary entry point, the identity grace period and the
//! ordered, idempotent shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{CALLER_ID, Fixture, SERVER_ID, TRUST_DOMAIN};
use ligand_runtime::testkit::{
    AllowList, FakeIdentity, PolicyFn, RecordingTelemetry, ScriptedLimiter, SvidSpec, TestCa,
};
use ligand_runtime::{
    Action, Config, Denial, EvalResponse, HttpBinding, InboundRequest, InitError, Link,
    ProviderKind, Resource, State, X509Context, init, init_trust_boundary,
};

fn allow_all() -> AllowList {
    AllowList::new().allow("*", "*", "*")
}

#[tokio::test]
async fn init_reports_every_missing_required_provider_at_once() {
    let err = init(Config::builder().build()).await.unwrap_err();
    match err {
        InitError::MissingRequiredProviders(m) => {
            assert_eq!(
                m.missing,
                vec![
                    ProviderKind::Identity,
                    ProviderKind::Policy,
                    ProviderKind::Binding
                ]
            );
            assert_eq!(
                m.to_string(),
                "missing required providers: identity, policy, binding"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = init_trust_boundary(Config::builder().build())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, InitError::MissingRequiredProviders(m) if m.missing == [ProviderKind::Identity, ProviderKind::Policy]),
        "{err:?}"
    );
}

#[tokio::test]
async fn init_fails_closed_on_identity_errors() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let base = || {
        Config::builder()
            .policy(allow_all())
            .binding(HttpBinding::new("127.0.0.1:0"))
    };

    let err = init(
        base()
            .identity(FakeIdentity::unavailable("agent down"))
            .build(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InitError::Identity(_)), "{err:?}");

    let empty = X509Context {
        svids: vec![],
        bundles: ca.bundles(),
    };
    let err = init(base().identity(FakeIdentity::new(empty)).build())
        .await
        .unwrap_err();
    assert!(matches!(err, InitError::NoSvids), "{err:?}");

    let expired = ca.context(ca.mint(SvidSpec::new(SERVER_ID).expired()));
    let err = init(base().identity(FakeIdentity::new(expired)).build())
        .await
        .unwrap_err();
    assert!(matches!(err, InitError::Tls(_)), "{err:?}");

    let foreign = TestCa::new("other.example");
    let untrusted = X509Context {
        svids: vec![foreign.svid("spiffe://other.example/s")],
        bundles: ca.bundles(),
    };
    let err = init(base().identity(FakeIdentity::new(untrusted)).build())
        .await
        .unwrap_err();
    assert!(matches!(err, InitError::Tls(_)), "{err:?}");

    let ok = ca.context(ca.svid(SERVER_ID));
    let err = init(
        base()
            .identity(FakeIdentity::new(ok))
            .spiffe_id("spiffe://example.org/not-mine")
            .build(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InitError::SvidNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn trust_boundary_enforces_inbound_without_a_binding() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(
                ca.context(ca.svid("spiffe://example.org/gateway")),
            ))
            .policy(AllowList::new().allow("browser/unauthenticated", "GET", "/login"))
            .telemetry(telemetry.clone())
            .build(),
    )
    .await
    .unwrap();
    let login = |peer: Link, path: &'static str| {
        InboundRequest::new(peer, Resource::http_path(path), Action::new("GET"))
    };
    let external = Link::default().with_external_party("browser/unauthenticated");
    let allowed = server
        .enforce(login(external.clone(), "/login"))
        .await
        .unwrap();
    assert_eq!(allowed.chain().peer(), Some(&external));
    let denied = server.enforce(login(external, "/admin")).await.unwrap_err();
    assert_eq!(denied.denial, Denial::PolicyDenied);
    let anonymous = server
        .enforce(login(Link::default(), "/login"))
        .await
        .unwrap_err();
    assert_eq!(anonymous.denial, Denial::Unauthenticated);
    server.flush_audit().await;
    assert_eq!(telemetry.decisions().len(), 2);
    assert!(server.local_addr().await.is_none());
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn policy_timeout_defaults_to_five_seconds() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let evaluations = Arc::new(AtomicUsize::new(0));
    let seen = evaluations.clone();
    let policy = PolicyFn::new(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(6)).await;
            Ok(EvalResponse::allow())
        }
    });
    let server = init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
            .policy(policy)
            .build(),
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let request = InboundRequest::new(
        Link::workload(CALLER_ID),
        Resource::http_path("/x"),
        Action::new("GET"),
    );
    let denied = server.enforce(request).await.unwrap_err();
    assert_eq!(denied.denial, Denial::PolicyFailure);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(evaluations.load(Ordering::SeqCst), 1);
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn rotation_failure_degrades_then_grace_expiry_makes_identity_unavailable() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let identity = Arc::new(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))));
    let server = init_trust_boundary(
        Config::builder()
            .identity(identity.clone())
            .policy(allow_all())
            .identity_grace_period(Duration::from_secs(60))
            .build(),
    )
    .await
    .unwrap();
    let request = || {
        InboundRequest::new(
            Link::workload(CALLER_ID),
            Resource::http_path("/x"),
            Action::new("GET"),
        )
    };
    identity.fail("agent unreachable");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        server.monitor().provider(ProviderKind::Identity),
        Some(State::Degraded)
    );
    assert_eq!(server.monitor().overall(), State::Degraded);
    // Degraded still serves with the last good SVID.
    server.enforce(request()).await.unwrap();

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        server.monitor().provider(ProviderKind::Identity),
        Some(State::Unavailable)
    );
    assert_eq!(
        server.enforce(request()).await.unwrap_err().denial,
        Denial::NotReady
    );

    // A successful rotation recovers.
    identity.rotate(ca.context(ca.svid(SERVER_ID)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        server.monitor().provider(ProviderKind::Identity),
        Some(State::Ready)
    );
    server.enforce(request()).await.unwrap();
    server.close().await;
}

#[tokio::test]
async fn close_runs_in_the_documented_order_and_is_idempotent() {
    let hook_saw = Arc::new(std::sync::Mutex::new(None));
    let saw = hook_saw.clone();
    let mut f = Fixture::start(|c| {
        c.policy(allow_all())
            .rate_limiter(ScriptedLimiter::allow_all())
            .pre_stop(move || {
                let saw = saw.clone();
                async move {
                    *saw.lock().unwrap() = Some("ran");
                    Ok(())
                }
            })
    })
    .await;
    assert_eq!(
        f.caller(CALLER_ID)
            .get(f.addr, "/hello/x")
            .await
            .unwrap()
            .status,
        200
    );
    let before = f.audit().await.health_transitions().len();

    let Fixture {
        server, serving, ..
    } = &mut f;
    server.close().await;
    assert!(
        serving.await.unwrap().is_ok(),
        "serve returns cleanly after close"
    );
    let after: Vec<_> = f.audit().await.health_transitions()[before..]
        .iter()
        .map(|e| (e.kind, e.to))
        .collect();
    assert_eq!(
        after,
        vec![
            (ProviderKind::Binding, State::Draining),
            (ProviderKind::Identity, State::Unavailable),
            (ProviderKind::Policy, State::Unavailable),
            (ProviderKind::RateLimiter, State::Unavailable),
            (ProviderKind::Telemetry, State::Unavailable),
            (ProviderKind::Binding, State::Unavailable),
        ]
    );
    assert_eq!(*hook_saw.lock().unwrap(), Some("ran"));
    assert!(f.audit().await.is_closed());
    assert!(
        f.caller(CALLER_ID).get(f.addr, "/hello/x").await.is_err(),
        "listener is gone"
    );

    let count = f.audit().await.health_transitions().len();
    f.server.close().await;
    assert_eq!(
        f.audit().await.health_transitions().len(),
        count,
        "second close does nothing"
    );
    assert!(
        f.server
            .serve(common::Hello {
                calls: f.calls.clone()
            })
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn pre_stop_hooks_are_bounded_and_their_errors_do_not_stop_shutdown() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let second_ran = Arc::new(AtomicUsize::new(0));
    let ran = second_ran.clone();
    let server = init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
            .policy(allow_all())
            .pre_stop(|| async { Err("hook failed".into()) })
            .pre_stop(move || {
                let ran = ran.clone();
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok(())
                }
            })
            .build(),
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    server.close().await;
    assert_eq!(
        second_ran.load(Ordering::SeqCst),
        1,
        "a failing hook does not skip the next"
    );
    assert_eq!(started.elapsed(), ligand_runtime::DEFAULT_PRE_STOP_TIMEOUT);
    assert_eq!(
        server.monitor().provider(ProviderKind::Identity),
        Some(State::Unavailable)
    );
}

#[tokio::test]
async fn drain_lets_in_flight_requests_finish() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (g, e) = (gate.clone(), entered.clone());
    let policy = PolicyFn::new(move |_| {
        let (g, e) = (g.clone(), e.clone());
        async move {
            e.notify_one();
            g.notified().await;
            Ok(EvalResponse::allow())
        }
    });
    let f = Fixture::start(|c| c.policy(policy)).await;
    let caller = f.caller(CALLER_ID);
    let addr = f.addr;
    let in_flight = tokio::spawn(async move { caller.get(addr, "/hello/slow").await });
    entered.notified().await;
    let server = f.server.clone();
    let closing = tokio::spawn(async move { server.close().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !closing.is_finished(),
        "close waits for the in-flight request"
    );
    assert_eq!(
        f.server.monitor().provider(ProviderKind::Binding),
        Some(State::Draining)
    );
    gate.notify_one();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status, 200);
    closing.await.unwrap();
}

#[tokio::test]
async fn past_the_drain_deadline_connections_still_busy_are_dropped() {
    // A policy that never answers (and a policy timeout longer than the test): the request
    // stays in flight until the binding gives up on it.
    let entered = Arc::new(tokio::sync::Notify::new());
    let e = entered.clone();
    let policy = PolicyFn::new(move |_| {
        let e = e.clone();
        async move {
            e.notify_one();
            std::future::pending::<()>().await;
            Ok(EvalResponse::allow())
        }
    });
    let f = Fixture::start(|c| {
        c.policy(policy)
            .policy_timeout(Duration::from_secs(3600))
            .pre_stop_timeout(Duration::from_millis(10))
            .drain_timeout(Duration::from_millis(200))
    })
    .await;
    let caller = f.caller(CALLER_ID);
    let addr = f.addr;
    let in_flight = tokio::spawn(async move { caller.get(addr, "/hello/stuck").await });
    entered.notified().await;
    tokio::time::timeout(Duration::from_secs(20), f.server.close())
        .await
        .expect("close waited past the drain deadline");
    let outcome = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("the stuck connection was never dropped")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn close_completes_while_the_serve_future_is_not_polled() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let server = init(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
            .policy(allow_all())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let serving = server.serve(common::Hello { calls });
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => panic!("serve returned early: {served:?}"),
        addr = server.local_addr() => assert!(addr.is_some()),
    }
    // Same task, serve not polled meanwhile: close must still finish well inside the drain
    // deadline (30 s), because the accept loop does not depend on the serve future.
    tokio::time::timeout(Duration::from_secs(10), server.close())
        .await
        .expect("close finished");
    assert!(serving.await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn metrics_snapshots_report_svid_lifetime_at_each_interval() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
            .policy(allow_all())
            .telemetry(telemetry.clone())
            .metrics_interval(Duration::from_secs(10))
            .build(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(35)).await;
    ligand_runtime::testkit::flush_audit_blocking(&server);
    let metrics = telemetry.metrics();
    assert_eq!(metrics.len(), 3);
    let ttl = metrics[0].svid_time_to_expiry.unwrap();
    assert!(
        ttl > Duration::from_secs(3000) && ttl <= Duration::from_secs(3600),
        "{ttl:?}"
    );
    assert!(metrics[0].svid_age.unwrap() >= Duration::from_secs(60));
    server.close().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(telemetry.metrics().len(), 3, "the loop stops at close");
}

/// A limiter whose backend is unreachable at start, recording the identity it was given.
struct UnreachableLimiter(std::sync::Mutex<Option<String>>);

#[async_trait::async_trait]
impl ligand_runtime::RateLimiter for UnreachableLimiter {
    async fn start(
        &self,
        context: &ligand_runtime::ProviderContext,
    ) -> Result<(), ligand_runtime::ProviderError> {
        *self.0.lock().unwrap() = Some(context.spiffe_id().to_string());
        Err(ligand_runtime::ProviderError::backend(
            "connecting to the limiter backend",
            "connection refused",
        ))
    }

    async fn check(
        &self,
        _: &ligand_runtime::RateLimitRequest<'_>,
    ) -> Result<ligand_runtime::RateLimitResponse, ligand_runtime::ProviderError> {
        unreachable!("never started")
    }
}

#[tokio::test]
async fn a_provider_that_cannot_start_fails_init() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let limiter = Arc::new(UnreachableLimiter(std::sync::Mutex::new(None)));
    let err = init(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
            .policy(allow_all())
            .rate_limiter(limiter.clone())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            InitError::Provider {
                kind: ProviderKind::RateLimiter,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        limiter.0.lock().unwrap().as_deref(),
        Some(SERVER_ID),
        "started with the established identity"
    );
}

#[tokio::test]
async fn listening_hooks_get_the_bound_address_once() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let f = Fixture::start(|c| {
        c.policy(allow_all())
            .rate_limiter(ScriptedLimiter::allow_all())
            .on_listening(move |addr| {
                let _ = tx.send(addr);
            })
    })
    .await;
    let addr = rx.recv().await.unwrap();
    assert_eq!(addr, f.addr, "port 0 resolved to the bound port");
    f.server.close().await;
    assert!(rx.try_recv().is_err(), "called once");
}
