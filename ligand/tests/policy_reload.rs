//! Changing policy without a restart: a watched policy folder reloads while the service runs
//! and its health says when an edit was refused.
//! Real files, real regorus; each test waits (bounded) for what it expects, never sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ligand::testkit::{FakeIdentity, RecordingTelemetry, TestCa};
use ligand::{
    Action, Config, Denial, InboundRequest, Link, ProviderKind, Resource, Server, State,
    init_trust_boundary,
};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};

const SERVICE: &str = "spiffe://example.org/service/accounts";
const CALLER: &str = "spiffe://example.org/service/gateway";

/// A policy that answers `allowed` to everything, with `tag` as its reason.
fn fixed(allowed: bool, tag: &str) -> String {
    format!("package ligand.authz\n\nimport rego.v1\n\nallow := {allowed}\n\nreason := \"{tag}\"\n")
}

fn folder(allowed: bool, tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &fixed(allowed, tag));
    dir
}

fn write(dir: &Path, content: &str) {
    std::fs::write(dir.join("policy.rego"), content).unwrap();
}

fn request() -> InboundRequest {
    InboundRequest::new(
        Link::workload(CALLER),
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
    )
}

async fn start(policy: RegorusPolicy, telemetry: Arc<RecordingTelemetry>) -> Server {
    let ca = TestCa::new("example.org");
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
        .policy(policy)
        .telemetry(telemetry);
    init_trust_boundary(config.build()).await.unwrap()
}

/// Checks `done` until it holds, for at most 20 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done().await {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 20 s"));
}

async fn allowed(server: &Server) -> bool {
    server.enforce(request()).await.is_ok()
}

#[tokio::test]
async fn an_edited_policy_folder_reloads_and_a_bad_edit_degrades_policy_until_fixed() {
    let dir = folder(true, "v1");
    let telemetry = Arc::new(RecordingTelemetry::new());
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    let server = start(policy, telemetry.clone()).await;
    assert!(allowed(&server).await);

    // An edit on disk changes decisions without a restart.
    write(dir.path(), &fixed(false, "v2"));
    eventually("the edit denies", || async { !allowed(&server).await }).await;
    let denied = server.enforce(request()).await.unwrap_err();
    assert_eq!(denied.denial, Denial::PolicyDenied);

    // A broken edit keeps the last good policy (still denying) and turns Policy Degraded,
    // with the file and line as the cause. Traffic is still served.
    write(
        dir.path(),
        "package ligand.authz\n\nimport rego.v1\n\nallow if {\n\tinput.peer ==\n}\n",
    );
    let monitor = server.monitor();
    eventually("policy degraded", || async {
        monitor.provider(ProviderKind::Policy) == Some(State::Degraded)
    })
    .await;
    assert_eq!(
        server.enforce(request()).await.unwrap_err().denial,
        Denial::PolicyDenied,
        "the last good policy decides"
    );
    server.flush_audit().await;
    let file = dir.path().join("policy.rego").display().to_string();
    let cause = telemetry
        .health_transitions()
        .into_iter()
        .filter(|t| t.kind == ProviderKind::Policy && t.to == State::Degraded)
        .find_map(|t| t.cause)
        .expect("a Degraded transition with a cause");
    assert!(cause.contains(&file) && cause.contains("line"), "{cause}");

    // Fixing it restores Ready and the fixed policy decides.
    write(dir.path(), &fixed(true, "v3"));
    eventually("policy ready again", || async {
        monitor.provider(ProviderKind::Policy) == Some(State::Ready) && allowed(&server).await
    })
    .await;

    server.close().await;
}

#[tokio::test]
async fn an_editor_style_replace_is_picked_up_by_a_running_service() {
    let dir = folder(true, "v1");
    let telemetry = Arc::new(RecordingTelemetry::new());
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    let server = start(policy, telemetry).await;
    assert!(allowed(&server).await);

    let aside = dir.path().join(".policy.rego.swp");
    std::fs::write(&aside, fixed(false, "v2")).unwrap();
    std::fs::rename(&aside, dir.path().join("policy.rego")).unwrap();
    eventually("the replaced file denies", || async {
        !allowed(&server).await
    })
    .await;
    server.close().await;
}
