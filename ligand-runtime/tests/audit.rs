//! The audit queue: requests never wait for the sink (unless `block` is chosen), losses are
//! counted and turn telemetry Degraded, `block` loses nothing, and the JSON lines sink writes
//! one parseable record per decision.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ligand_runtime::testkit::{AllowList, FakeIdentity, RecordingTelemetry, TestCa};
use ligand_runtime::{
    Action, AuditOverflow, Config, ConfigBuilder, DecisionEvent, InboundRequest,
    JsonLinesTelemetry, Link, LogLinesTelemetry, MetricsSnapshot, OutboundCallEvent, ProviderError,
    ProviderKind, RateLimitEvent, Resource, Server, State, Telemetry, init_trust_boundary,
};

const SERVICE: &str = "spiffe://example.org/service/accounts";
const CALLER: &str = "spiffe://example.org/service/caller";

/// A sink that holds every decision until the gate opens: a sink that has fallen behind.
#[derive(Default)]
struct Gated {
    open: Mutex<bool>,
    opened: Condvar,
    decisions: AtomicUsize,
    metrics: Mutex<Vec<MetricsSnapshot>>,
}

impl Gated {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl Telemetry for Gated {
    fn record_decision(&self, _: &DecisionEvent) -> Result<(), ProviderError> {
        let open = self.open.lock().unwrap();
        drop(self.opened.wait_while(open, |open| !*open).unwrap());
        self.decisions.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn record_rate_limit(&self, _: &RateLimitEvent) -> Result<(), ProviderError> {
        Ok(())
    }
    fn record_outbound_call(&self, _: &OutboundCallEvent) -> Result<(), ProviderError> {
        Ok(())
    }
    fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
        self.metrics.lock().unwrap().push(snapshot.clone());
        Ok(())
    }
}

async fn server(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Server {
    let ca = TestCa::new("example.org");
    init_trust_boundary(
        configure(
            Config::builder()
                .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
                .policy(AllowList::new().allow(CALLER, "GET", "/accounts/{id}")),
        )
        .build(),
    )
    .await
    .unwrap()
}

fn request(peer: &str) -> InboundRequest {
    InboundRequest::new(
        Link::workload(peer),
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
    )
}

#[tokio::test]
async fn a_full_queue_drops_counts_and_degrades_but_never_holds_a_request() {
    let sink = Arc::new(Gated::default());
    let server = server(|c| {
        c.telemetry(sink.clone())
            .audit_queue_capacity(4)
            .metrics_interval(Duration::from_millis(20))
    })
    .await;
    // The sink is stuck: every request still completes (the guard is only against a hang).
    for _ in 0..50 {
        let allowed =
            tokio::time::timeout(Duration::from_secs(10), server.enforce(request(CALLER)))
                .await
                .expect("a request waited for the sink");
        assert!(allowed.is_ok());
    }
    assert_eq!(
        server.monitor().provider(ProviderKind::Telemetry),
        Some(State::Degraded),
        "losing audit records degrades telemetry"
    );
    assert_eq!(server.monitor().overall(), State::Degraded);

    sink.open();
    server.flush_audit().await;
    let delivered = sink.decisions.load(Ordering::SeqCst);
    assert!(delivered < 50, "{delivered} delivered through a queue of 4");
    // The next snapshot reports the losses.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.flush_audit().await;
    let dropped = sink.metrics.lock().unwrap().last().unwrap().audit_dropped;
    assert!(
        dropped >= (50 - delivered) as u64,
        "{dropped} dropped, {delivered} delivered"
    );
    server.close().await;
}

#[tokio::test]
async fn a_sink_that_refuses_records_counts_losses_and_degrades() {
    /// Fails every decision, as a full disk would.
    #[derive(Default)]
    struct Refusing(Mutex<Vec<MetricsSnapshot>>);
    impl Telemetry for Refusing {
        fn record_decision(&self, _: &DecisionEvent) -> Result<(), ProviderError> {
            Err(ProviderError::Invalid("no space left on device".into()))
        }
        fn record_rate_limit(&self, _: &RateLimitEvent) -> Result<(), ProviderError> {
            Ok(())
        }
        fn record_outbound_call(&self, _: &OutboundCallEvent) -> Result<(), ProviderError> {
            Ok(())
        }
        fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
            self.0.lock().unwrap().push(snapshot.clone());
            Ok(())
        }
    }
    let sink = Arc::new(Refusing::default());
    let server = server(|c| {
        c.telemetry(sink.clone())
            .metrics_interval(Duration::from_millis(20))
    })
    .await;
    for _ in 0..3 {
        assert!(server.enforce(request(CALLER)).await.is_ok());
    }
    server.flush_audit().await;
    assert_eq!(
        server.monitor().provider(ProviderKind::Telemetry),
        Some(State::Degraded),
        "a sink losing records degrades telemetry like a full queue does"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.flush_audit().await;
    let dropped = sink.0.lock().unwrap().last().unwrap().audit_dropped;
    assert_eq!(dropped, 3);
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_makes_requests_wait_and_loses_nothing() {
    let sink = Arc::new(Gated::default());
    let server = server(|c| {
        c.telemetry(sink.clone())
            .audit_queue_capacity(2)
            .audit_overflow(AuditOverflow::Block)
    })
    .await;
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { server.enforce(request(CALLER)).await.is_ok() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        requests.iter().any(|r| !r.is_finished()),
        "with a stuck sink and a full queue, requests wait"
    );
    sink.open();
    for request in requests {
        assert!(request.await.unwrap());
    }
    server.flush_audit().await;
    assert_eq!(sink.decisions.load(Ordering::SeqCst), 20);
    assert_eq!(
        server.monitor().provider(ProviderKind::Telemetry),
        Some(State::Ready)
    );
    server.close().await;
}

#[tokio::test]
async fn the_sink_is_never_called_on_the_request_thread() {
    let recorder = Arc::new(RecordingTelemetry::new());
    struct Where(Arc<RecordingTelemetry>, Mutex<Vec<String>>);
    impl Telemetry for Where {
        fn record_decision(&self, e: &DecisionEvent) -> Result<(), ProviderError> {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            self.1.lock().unwrap().push(name);
            self.0.record_decision(e)
        }
        fn record_rate_limit(&self, e: &RateLimitEvent) -> Result<(), ProviderError> {
            self.0.record_rate_limit(e)
        }
        fn record_outbound_call(&self, e: &OutboundCallEvent) -> Result<(), ProviderError> {
            self.0.record_outbound_call(e)
        }
    }
    let sink = Arc::new(Where(recorder.clone(), Mutex::default()));
    let server = server(|c| c.telemetry(sink.clone())).await;
    server.enforce(request(CALLER)).await.unwrap();
    server
        .enforce(request("spiffe://example.org/service/intruder"))
        .await
        .unwrap_err();
    server.flush_audit().await;
    assert_eq!(*sink.1.lock().unwrap(), ["ligand-audit", "ligand-audit"]);
    assert_eq!(recorder.decisions().len(), 2);
    server.close().await;
}

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

#[tokio::test]
async fn log_lines_hold_one_record_per_decision_with_caller_strings_escaped() {
    let buffer = Buffer::default();
    let server = server(|c| c.telemetry(LogLinesTelemetry::new(buffer.clone()))).await;
    let allowed = server.enforce(request(CALLER)).await.unwrap();
    // A caller-controlled principal that tries to end the line and forge a field.
    let forged = "spiffe://example.org/x\n2026 audit decision allowed=true";
    let denied = server.enforce(request(forged)).await.unwrap_err();
    server.flush_audit().await;
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let decisions: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" audit decision "))
        .collect();
    assert_eq!(decisions.len(), 2, "{text}");
    assert!(decisions[0].ends_with(|c: char| c.is_ascii_digit()));
    assert!(decisions[0].contains(&format!(" request_id={} ", allowed.request_id)));
    assert!(decisions[0].contains(&format!(" peer={CALLER} ")));
    assert!(decisions[0].contains(" resource=/accounts/{id} action=GET allowed=true cached=false"));
    assert!(decisions[1].contains(&format!(" request_id={} ", denied.request_id)));
    assert!(decisions[1].contains(" allowed=false "));
    assert!(
        decisions[1]
            .contains(r#" peer="spiffe://example.org/x\n2026 audit decision allowed=true" "#),
        "{}",
        decisions[1]
    );
    server.close().await;
}

#[tokio::test]
async fn json_lines_hold_one_record_per_decision() {
    let buffer = Buffer::default();
    let server = server(|c| c.telemetry(JsonLinesTelemetry::new(buffer.clone()))).await;
    let allowed = server.enforce(request(CALLER)).await.unwrap();
    let denied = server
        .enforce(request("spiffe://example.org/service/intruder"))
        .await
        .unwrap_err();
    server.flush_audit().await;
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|r: &serde_json::Value| r["type"] == "decision")
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    assert_eq!(records[0]["request_id"], allowed.request_id.as_str());
    assert_eq!(records[0]["allowed"], true);
    assert_eq!(records[0]["cached"], false);
    assert_eq!(records[0]["input"]["chain"][0]["workload"], CALLER);
    assert_eq!(records[0]["input"]["resource"]["value"], "/accounts/{id}");
    assert_eq!(records[0]["input"]["service"], SERVICE);
    assert!(records[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(records[0]["latency_us"].is_u64());
    assert_eq!(records[1]["request_id"], denied.request_id.as_str());
    assert_eq!(records[1]["allowed"], false);
    assert!(records[1]["reason"].as_str().unwrap().contains("intruder"));
    server.close().await;
}
