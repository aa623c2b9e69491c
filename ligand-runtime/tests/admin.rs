//! The admin listener over real TCP: probes through init, serving and shutdown, Prometheus
//! metrics after real mTLS requests, and a port in use failing init.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{CALLER_ID, Fixture, SERVER_ID, TRUST_DOMAIN};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use ligand_runtime::testkit::{AllowList, FakeIdentity, RecordingTelemetry, TestCa};
use ligand_runtime::{
    AdminConfig, Config, EvalRequest, EvalResponse, HttpBinding, InitError, PolicyEngine,
    ProviderContext, ProviderError,
};
use tokio::sync::Notify;

/// Any free port.
fn any_port() -> AdminConfig {
    AdminConfig::listen("127.0.0.1:0".parse().unwrap())
}

fn allow_hello() -> AllowList {
    AllowList::new().allow(CALLER_ID, "GET", "/hello/{name}")
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// One plain HTTP/1.1 request over a fresh TCP connection.
async fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    })
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path).await.unwrap()
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sum of every sample of `name` whose labels include `labels`.
fn sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        })
        .sum()
}

#[tokio::test]
async fn probes_and_metrics_follow_real_requests() {
    let f = Fixture::start(|c| c.policy(allow_hello()).admin(any_port())).await;
    let admin = f.server.admin_addr().expect("admin listener");
    assert!(admin.ip().is_loopback());
    assert_ne!(admin.port(), 0);

    let live = get(admin, "/livez").await;
    assert_eq!(live.status, 200);
    let ready = get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["providers"]["identity"], "ready");
    assert_eq!(body["providers"]["binding"], "ready");
    assert!(!ready.body.contains("spiffe://"), "{}", ready.body);

    let (allowed, denied) = (3, 2);
    let caller = f.caller(CALLER_ID);
    for _ in 0..allowed {
        assert_eq!(caller.get(f.addr, "/hello/ada").await.unwrap().status, 200);
    }
    let intruder = f.caller("spiffe://example.org/service/intruder");
    for _ in 0..denied {
        assert_eq!(
            intruder.get(f.addr, "/hello/ada").await.unwrap().status,
            403
        );
    }
    ligand_runtime::testkit::flush_audit_blocking(&f.server);

    let metrics = get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        metrics.content_type
    );
    let scrape = parse(&metrics.body);
    let decisions = |outcome| {
        sum(
            &scrape,
            "ligand_authz_decisions_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(decisions("allow"), f64::from(allowed), "{}", metrics.body);
    assert_eq!(decisions("deny"), f64::from(denied), "{}", metrics.body);
    assert_eq!(decisions("error"), 0.0);
    assert_eq!(
        sum(&scrape, "ligand_authz_decision_duration_seconds_count", &[]),
        f64::from(allowed + denied),
        "{}",
        metrics.body
    );
    let expiry = sum(&scrape, "ligand_svid_expiry_seconds", &[]);
    assert!(expiry > 0.0, "{}", metrics.body);
    assert_eq!(sum(&scrape, "ligand_audit_records_dropped_total", &[]), 0.0);
    assert_eq!(
        sum(
            &scrape,
            "ligand_health_state",
            &[("provider", "policy"), ("state", "ready")]
        ),
        1.0
    );
    for leaked in ["spiffe://", "/hello", "intruder"] {
        assert!(
            !metrics.body.contains(leaked),
            "{leaked} in {}",
            metrics.body
        );
    }

    assert_eq!(get(admin, "/").await.status, 404);
    assert_eq!(get(admin, "/hello/ada").await.status, 404);
    assert_eq!(request(admin, "POST", "/readyz").await.unwrap().status, 405);
    let head = request(admin, "HEAD", "/readyz").await.unwrap();
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    f.server.close().await;
}

#[tokio::test]
async fn readyz_turns_503_while_draining_and_the_listener_closes_last() {
    let draining = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let f = Fixture::start(|c| {
        let (draining, release) = (draining.clone(), release.clone());
        c.policy(allow_hello()).admin(any_port()).pre_stop(move || {
            let (draining, release) = (draining.clone(), release.clone());
            async move {
                draining.notify_one();
                release.notified().await;
                Ok::<(), ligand_runtime::BoxError>(())
            }
        })
    })
    .await;
    let admin = f.server.admin_addr().unwrap();
    assert_eq!(get(admin, "/readyz").await.status, 200);
    // A client that connects and sends nothing does not keep the listener open.
    let mut idle = tokio::net::TcpStream::connect(admin).await.unwrap();

    let closing = tokio::spawn({
        let server = f.server.clone();
        async move { server.close().await }
    });
    draining.notified().await;
    let ready = get(admin, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["providers"]["binding"], "draining");
    // Draining on purpose is alive: a restart now would cut the drain short.
    assert_eq!(get(admin, "/livez").await.status, 200);

    release.notify_one();
    closing.await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::io::AsyncReadExt::read(&mut idle, &mut buf).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        request(admin, "GET", "/livez").await.is_err(),
        "the admin listener is closed once the server is"
    );
}

#[tokio::test]
async fn livez_turns_503_when_the_service_is_unavailable() {
    let f = Fixture::start(|c| c.policy(allow_hello()).admin(any_port())).await;
    let admin = f.server.admin_addr().unwrap();
    ligand_runtime::testkit::set_health(
        &f.server,
        ligand_runtime::ProviderKind::Identity,
        ligand_runtime::State::Unavailable,
        Some("identity grace period expired".into()),
    );
    assert_eq!(get(admin, "/livez").await.status, 503);
    let ready = get(admin, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        !ready.body.contains("grace"),
        "causes stay in the log: {}",
        ready.body
    );
    f.server.close().await;
}

/// A policy engine whose start waits for the test: init is caught half-way.
struct HeldStart {
    started: Arc<Notify>,
    release: Arc<Notify>,
}

#[async_trait::async_trait]
impl PolicyEngine for HeldStart {
    async fn evaluate(&self, _: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        Ok(EvalResponse::default())
    }

    async fn start(&self, _: &ProviderContext) -> Result<(), ProviderError> {
        self.started.notify_one();
        self.release.notified().await;
        Ok(())
    }
}

#[tokio::test]
async fn readyz_answers_503_while_init_runs() {
    // A port known before init returns, to probe it during init.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
        .policy(HeldStart {
            started: started.clone(),
            release: release.clone(),
        })
        .telemetry(Arc::new(RecordingTelemetry::new()))
        .binding(HttpBinding::new("127.0.0.1:0"))
        .admin(AdminConfig::listen(port))
        .build();
    let init = tokio::spawn(ligand_runtime::init(config));
    started.notified().await;
    let ready = get(port, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["status"], "initializing");
    assert_eq!(body["providers"]["policy"], "initializing");
    assert_eq!(get(port, "/livez").await.status, 200);
    release.notify_one();
    let server = init.await.unwrap().unwrap();
    assert_eq!(server.admin_addr(), Some(port));
    // Initialized but not yet serving: the binding is not listening.
    assert_eq!(get(port, "/readyz").await.status, 503);
    server.close().await;
}

#[tokio::test]
async fn a_port_in_use_fails_init_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
        .policy(allow_hello())
        .binding(HttpBinding::new("127.0.0.1:0"))
        .admin(AdminConfig::listen(address))
        .build();
    let error = ligand_runtime::init(config).await.unwrap_err();
    assert!(matches!(error, InitError::Admin { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&address.to_string()), "{message}");
    assert!(message.contains("admin.listen"), "{message}");
}

#[tokio::test]
async fn the_builder_has_no_admin_listener_unless_asked() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    assert_eq!(f.server.admin_addr(), None);
    f.server.close().await;
}

/// A secrets backend with one value that never expires.
struct OneSecret;

#[async_trait::async_trait]
impl ligand_runtime::Secrets for OneSecret {
    async fn get(&self, _: &str) -> Result<ligand_runtime::SecretValue, ProviderError> {
        Ok(ligand_runtime::SecretValue::new(
            b"{\"key\":\"value\"}",
            None,
        ))
    }
}

#[tokio::test]
async fn secret_cache_hits_are_read_at_scrape_time() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let server = ligand_runtime::init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))))
            .policy(allow_hello())
            .secrets(OneSecret)
            .admin(any_port())
            .build(),
    )
    .await
    .unwrap();
    let admin = server.admin_addr().unwrap();
    for _ in 0..3 {
        server.secret_bytes("secret/data/db").await.unwrap();
    }
    let metrics = get(admin, "/metrics").await;
    let scrape = parse(&metrics.body);
    let requests = |result| {
        let found = scrape.samples.iter().any(|s| {
            s.metric == "ligand_secret_cache_requests_total"
                && s.labels.get("result") == Some(result)
        });
        assert!(found, "no {result} series in {}", metrics.body);
        sum(
            &scrape,
            "ligand_secret_cache_requests_total",
            &[("result", result)],
        )
    };
    assert_eq!(
        (requests("miss"), requests("hit")),
        (1.0, 2.0),
        "{}",
        metrics.body
    );
    assert!(!metrics.body.contains("secret/data"), "{}", metrics.body);
    server.close().await;
}
