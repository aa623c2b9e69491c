//! The secrets cache: single-flight, renewal timing, revocation, failure modes, audit and
//! redaction. Time is tokio's paused clock; the backend is a scripted fake.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ligand_runtime::testkit::{AllowList, FakeIdentity, RecordingTelemetry, TestCa};
use ligand_runtime::{
    Config, ExposeSecret, ProviderError, ProviderKind, SecretAccess, SecretError, SecretRevocation,
    SecretValue, Secrets, Server, State, Telemetry, TracingTelemetry, init_trust_boundary,
};
use tokio::sync::mpsc;

const DB: &str = "secret/data/accounts/db";
const VALUE: &str = r#"{"username":"app","password":"correct-horse-battery-staple"}"#;

/// What the backend answers: (value, TTL, lease) or an error message.
type Answer = Result<(String, Option<Duration>, Option<String>), String>;

/// A backend answering from a script, counting calls.
struct Backend {
    calls: AtomicUsize,
    answer: Mutex<Answer>,
    latency: Duration,
    revocations: Mutex<Option<mpsc::Receiver<SecretRevocation>>>,
}

impl Backend {
    fn new(ttl: Option<Duration>) -> (Arc<Self>, mpsc::Sender<SecretRevocation>) {
        let (tx, rx) = mpsc::channel(4);
        let backend = Arc::new(Self {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(Ok((VALUE.to_owned(), ttl, Some("lease-1".to_owned())))),
            latency: Duration::from_millis(20),
            revocations: Mutex::new(Some(rx)),
        });
        (backend, tx)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        let mut answer = self.answer.lock().unwrap();
        *answer = if down {
            Err("connection refused".into())
        } else {
            Ok((
                VALUE.into(),
                Some(Duration::from_secs(60)),
                Some("lease-2".into()),
            ))
        };
    }
}

#[async_trait]
impl Secrets for Backend {
    async fn get(&self, name: &str) -> Result<SecretValue, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        assert_eq!(name, DB);
        match &*self.answer.lock().unwrap() {
            Ok((value, ttl, lease)) => {
                let secret = SecretValue::new(value.as_bytes(), *ttl);
                Ok(match lease {
                    Some(lease) => secret.lease(lease.clone()),
                    None => secret,
                })
            }
            Err(e) => Err(ProviderError::backend("reading secret", e.clone())),
        }
    }

    async fn watch_revocations(&self) -> Result<mpsc::Receiver<SecretRevocation>, ProviderError> {
        self.revocations
            .lock()
            .unwrap()
            .take()
            .ok_or(ProviderError::NotSupported)
    }
}

async fn server(backend: Arc<Backend>, telemetry: impl Telemetry) -> Server {
    let ca = TestCa::new("example.org");
    init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(
                ca.context(ca.svid("spiffe://example.org/accounts")),
            ))
            .policy(AllowList::new())
            .secrets(backend)
            .telemetry(telemetry)
            .build(),
    )
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_cold_reads_make_one_backend_call() {
    let (backend, _tx) = Backend::new(Some(Duration::from_secs(3600)));
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = server(backend.clone(), telemetry.clone()).await;
    let reads: Vec<_> = (0..100)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .secret_bytes(DB)
                    .await
                    .map(|v| v.expose_secret().to_vec())
            })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), VALUE.as_bytes());
    }
    assert_eq!(backend.calls(), 1);
    ligand_runtime::testkit::flush_audit_blocking(&server);
    let accesses = telemetry.secret_accesses();
    assert_eq!(accesses.len(), 100);
    assert_eq!(
        accesses
            .iter()
            .filter(|a| a.access == SecretAccess::Miss)
            .count(),
        1
    );
    assert_eq!(
        accesses
            .iter()
            .filter(|a| a.access == SecretAccess::Hit)
            .count(),
        99
    );
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn short_ttl_renews_at_half_life() {
    let (backend, _tx) = Backend::new(Some(Duration::from_secs(10)));
    let server = server(backend.clone(), Arc::new(RecordingTelemetry::new())).await;
    server.secret_bytes(DB).await.unwrap();
    assert_eq!(backend.calls(), 1);
    // min(lead 10 min, ttl/2 5 s) = 5 s before expiry: at 5 s.
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert_eq!(backend.calls(), 1, "not yet");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(backend.calls(), 2, "renewed at half-life");
    // Reads never waited on the renewal: still one miss.
    server.secret_bytes(DB).await.unwrap();
    assert_eq!(backend.calls(), 2);
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn long_ttl_renews_lead_time_before_expiry() {
    let (backend, _tx) = Backend::new(Some(Duration::from_secs(3600)));
    let server = server(backend.clone(), Arc::new(RecordingTelemetry::new())).await;
    server.secret_bytes(DB).await.unwrap();
    // min(10 min, 30 min) = 10 min before expiry: at 50 min.
    tokio::time::sleep(Duration::from_secs(50 * 60 - 1)).await;
    assert_eq!(backend.calls(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backend.calls(), 2);
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn backend_down_serves_cache_until_ttl_then_fails_with_health_transitions() {
    let (backend, _tx) = Backend::new(Some(Duration::from_secs(60)));
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = server(backend.clone(), telemetry.clone()).await;
    server.secret_bytes(DB).await.unwrap();
    backend.set_down(true);
    // Renewal at 30 s fails: Unavailable, but the cached value is still served.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        server.monitor().provider(ProviderKind::Secrets),
        Some(State::Unavailable)
    );
    assert_eq!(
        server.monitor().overall(),
        State::Degraded,
        "an optional provider down degrades"
    );
    assert_eq!(
        server.secret_bytes(DB).await.unwrap().expose_secret(),
        VALUE.as_bytes()
    );
    // After the TTL the value is gone and reads fail.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let err = server.secret_bytes(DB).await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
    // The backend comes back: the next read succeeds and secrets are Ready again.
    backend.set_down(false);
    assert_eq!(
        server.secret_bytes(DB).await.unwrap().expose_secret(),
        VALUE.as_bytes()
    );
    assert_eq!(
        server.monitor().provider(ProviderKind::Secrets),
        Some(State::Ready)
    );
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn revocation_evicts_and_refetches() {
    let (backend, revoke) = Backend::new(Some(Duration::from_secs(3600)));
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = server(backend.clone(), telemetry.clone()).await;
    server.secret_bytes(DB).await.unwrap();
    revoke
        .send(SecretRevocation {
            lease_id: "lease-1".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.calls(), 2, "re-fetched after revocation");
    ligand_runtime::testkit::flush_audit_blocking(&server);
    let kinds: Vec<State> = telemetry
        .health_transitions()
        .iter()
        .filter(|t| t.kind == ProviderKind::Secrets)
        .map(|t| t.to)
        .collect();
    assert_eq!(kinds, [State::Ready, State::Degraded, State::Ready]);
    assert!(
        telemetry
            .secret_accesses()
            .iter()
            .any(|a| a.access == SecretAccess::Revocation)
    );
    // An unrelated lease changes nothing.
    revoke
        .send(SecretRevocation {
            lease_id: "other".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.calls(), 2);
    server.close().await;
}

#[tokio::test]
async fn secret_values_never_reach_logs() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (backend, revoke) = Backend::new(Some(Duration::from_secs(3600)));
    let server = server(backend.clone(), TracingTelemetry).await;
    let value = server.secret_bytes(DB).await.unwrap();
    let _ = format!("{value:?}");
    server.secret_bytes(DB).await.unwrap();
    revoke
        .send(SecretRevocation {
            lease_id: "lease-1".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tracing::info!(?value, "a careless log line");
    server.close().await;
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("secret access"),
        "the audit events were logged: {logs}"
    );
    assert!(logs.contains(DB));
    assert!(!logs.contains("correct-horse-battery-staple"), "{logs}");
}

#[tokio::test]
async fn without_a_backend_secrets_are_not_configured() {
    let ca = TestCa::new("example.org");
    let server = init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(
                ca.context(ca.svid("spiffe://example.org/accounts")),
            ))
            .policy(AllowList::new())
            .build(),
    )
    .await
    .unwrap();
    assert!(matches!(
        server.secret_bytes(DB).await,
        Err(SecretError::NotConfigured)
    ));
    server.close().await;
}
