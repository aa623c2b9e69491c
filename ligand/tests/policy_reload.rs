//! Changing policy without a restart: a watched policy folder reloads while the service runs
//! and its health says when an edit was refused; a shadow policy is evaluated on live traffic,
//! never enforced, and its disagreements are counted and logged with the request ID.
//! Real files, real regorus; each test waits (bounded) for what it expects, never sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ligand::testkit::{FakeIdentity, RecordingTelemetry, TestCa};
use ligand::{
    Action, Config, Denial, InboundRequest, Link, ProviderKind, Resource, Server, State,
    init_trust_boundary,
};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::util::SubscriberInitExt;

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

async fn start(
    policy: RegorusPolicy,
    shadow: Option<RegorusPolicy>,
    telemetry: Arc<RecordingTelemetry>,
) -> Server {
    let ca = TestCa::new("example.org");
    let mut config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
        .policy(policy)
        .telemetry(telemetry);
    if let Some(shadow) = shadow {
        config = config.shadow_policy(shadow);
    }
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
    let server = start(policy, None, telemetry.clone()).await;
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
    let server = start(policy, None, telemetry).await;
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

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn a_shadow_policy_never_changes_the_answer_and_its_disagreements_are_counted_and_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(LevelFilter::INFO)
        .finish();
    // A current-thread test runtime: the shadow worker runs on this thread, under this
    // subscriber.
    let _logging = subscriber.set_default();

    let enforced = folder(true, "enforced allows");
    let candidate = folder(false, "candidate denies");
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = start(
        RegorusPolicy::new(&RegorusConfig::folder(enforced.path())).unwrap(),
        Some(RegorusPolicy::new(&RegorusConfig::folder(candidate.path())).unwrap()),
        telemetry,
    )
    .await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        let admitted = server
            .enforce(request())
            .await
            .expect("the shadow never enforces");
        ids.push(admitted.request_id);
    }
    eventually("five disagreements counted", || async {
        server.shadow_decisions().unwrap().disagree == 5
    })
    .await;
    let counts = server.shadow_decisions().unwrap();
    assert_eq!((counts.agree, counts.error, counts.dropped), (0, 0, 0));

    let logged = logs.text();
    for id in &ids {
        let line = logged
            .lines()
            .find(|l| l.contains(&id.to_string()) && l.contains("shadow policy disagrees"))
            .unwrap_or_else(|| panic!("no disagreement logged for {id}:\n{logged}"));
        assert!(
            line.contains("enforced=\"allow\"") || line.contains("enforced=allow"),
            "{line}"
        );
        assert!(
            line.contains("candidate denies") && line.contains("enforced allows"),
            "{line}"
        );
    }

    // A shadow policy that agrees is counted as such.
    write(candidate.path(), &fixed(true, "candidate allows"));
    eventually("the shadow reloads and agrees", || async {
        assert!(allowed(&server).await);
        server.shadow_decisions().unwrap().agree > 0
    })
    .await;
    server.close().await;
}
