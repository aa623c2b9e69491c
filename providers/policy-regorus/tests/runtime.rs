//! End to end: `ligand_runtime::init` with this engine, a real mTLS call over loopback, and
//! the decision events the runtime records.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use axum::extract::Path;
use common::{Keys, bundle};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy, SigningConfig};
use ligand_runtime::__private::{Routes, get};
use ligand_runtime::testkit::{FakeIdentity, PeerClient, RecordingTelemetry, TestCa};
use ligand_runtime::{Config, HttpBinding, PolicyEngine, Service, SpiffeId};

const TRUST_DOMAIN: &str = "example.org";

/// A one-route service, written the way `#[ligand::service]` expands.
struct Hello;

impl Service for Hello {
    fn __ligand_routes(self) -> Routes<Self> {
        Routes::new(self).route("/hello/{name}", "GET", |_| {
            get(|Path(name): Path<String>| async move { format!("hello {name}") })
        })
    }
}

#[tokio::test]
async fn allowed_and_denied_calls_over_mtls_carry_reason_and_revision() {
    let keys = Keys::es256("bundle-key");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.tar.gz");
    std::fs::write(&path, keys.sign(bundle("rev-42", &[common::CALLER]))).unwrap();
    let policy = RegorusPolicy::new(
        &RegorusConfig::bundle(&path).with_signing(SigningConfig::keys([keys.config.clone()])),
    )
    .unwrap();

    let ca = TestCa::new(TRUST_DOMAIN);
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = ligand_runtime::init(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(common::SERVICE))))
            .policy(policy.clone())
            .telemetry(telemetry.clone())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .expect("init");
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(Hello).await }
    });
    let addr = server.local_addr().await.expect("listening");
    let expect = SpiffeId::new(common::SERVICE).unwrap();
    let caller = |id: &str| PeerClient::new(&ca.context(ca.svid(id)), Some(&expect)).unwrap();

    let allowed = caller(common::CALLER)
        .get(addr, "/hello/ada")
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.text(), "hello ada");

    let denied = caller(common::INTRUDER)
        .get(addr, "/hello/ada")
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json().unwrap()["error_code"], "POLICY_DENIED");
    // The reason is for the audit log only.
    assert!(!denied.text().contains("intruder"), "{}", denied.text());

    server.flush_audit().await;
    let decisions = telemetry.decisions();
    assert_eq!(decisions.len(), 2);
    assert!(decisions[0].allowed);
    assert_eq!(decisions[0].policy_version.as_deref(), Some("rev-42"));
    assert!(!decisions[1].allowed);
    assert_eq!(decisions[1].policy_version.as_deref(), Some("rev-42"));
    assert_eq!(
        decisions[1].reason.as_deref(),
        Some("rev-42: spiffe://example.org/service/intruder may not GET /hello/{name}")
    );

    // A hot reload changes the next decision and its recorded revision.
    policy
        .reload(&keys.sign(bundle("rev-43", &[common::INTRUDER])))
        .await
        .unwrap();
    let now_allowed = caller(common::INTRUDER)
        .get(addr, "/hello/ada")
        .await
        .unwrap();
    assert_eq!(now_allowed.status, 200);
    server.flush_audit().await;
    assert_eq!(
        telemetry.decisions()[2].policy_version.as_deref(),
        Some("rev-43")
    );

    server.close().await;
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn evaluation_errors_deny_with_503() {
    let dir = tempfile::tempdir().unwrap();
    common::write_folder(
        dir.path(),
        &[(
            "authz/policy.rego",
            "package ligand.authz\n\nimport rego.v1\n\nallow if to_number(input.request.path) > 0\n",
        )],
    );
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = ligand_runtime::init(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(common::SERVICE))))
            .policy(policy)
            .telemetry(telemetry.clone())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .expect("init");
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(Hello).await }
    });
    let addr = server.local_addr().await.expect("listening");
    let expect = SpiffeId::new(common::SERVICE).unwrap();
    let caller = PeerClient::new(&ca.context(ca.svid(common::CALLER)), Some(&expect)).unwrap();
    let response = caller.get(addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.json().unwrap()["error_code"], "POLICY_UNAVAILABLE");
    server.flush_audit().await;
    let decision = &telemetry.decisions()[0];
    assert!(!decision.allowed);
    assert!(decision.error.is_some());
    server.close().await;
    serving.await.unwrap().unwrap();
}
