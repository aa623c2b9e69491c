//! OpenTelemetry export end to end: two services over real mTLS on loopback export their
//! request spans over OTLP/gRPC to a real receiver (a tonic `TraceService` server) on a free
//! loopback port. The export layer is process-wide, so this file holds one test.
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod otel_world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

/// The spans a collector received.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_of_caller_and_callee_reach_the_collector_in_the_inbound_trace() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    otel_world::export_to(collector);

    let (accounts, external) = otel_world::start().await;

    // A sampled inbound traceparent: both server spans are exported in the caller's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let inbound_parent = "00f067aa0ba902b7";
    let response = otel_world::traced(
        &external,
        accounts,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let (accounts_span, request_id) = text.split_once(' ').unwrap();
    let (accounts_span, request_id) = (accounts_span.to_owned(), request_id.to_owned());

    // A traceparent without the sampled flag: nothing of that trace is exported.
    let unsampled = otel_world::traced(
        &external,
        accounts,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    )
    .await;
    assert_eq!(unsampled.status, 200, "{}", unsampled.text());

    // No valid traceparent: accounts starts the trace, samples it by the ratio (1 here) and
    // says so on its call to the ledger, which exports its span too.
    let root = otel_world::traced(&external, accounts, "malformed").await;
    assert_eq!(root.status, 200, "{}", root.text());
    let root_span = root.text().split_once(' ').unwrap().0.to_owned();

    // Closing flushes what is queued.
    tokio::task::spawn_blocking(|| ligand::shutdown_telemetry(Duration::from_secs(10)))
        .await
        .unwrap();

    let all = receiver.spans.lock().unwrap().clone();
    assert!(
        all.iter()
            .all(|span| hex(&span.trace_id) != "0af7651916cd43dd8448eb211c80319c"),
        "nothing of the unsampled trace is exported: {all:?}"
    );
    let (spans, started): (Vec<Span>, Vec<Span>) = all
        .into_iter()
        .partition(|span| hex(&span.trace_id) == trace_id);
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(started.len(), 2, "the trace accounts started: {started:?}");
    let root_caller = started
        .iter()
        .find(|span| hex(&span.span_id) == root_span)
        .expect("accounts' span of the trace it started");
    assert!(root_caller.parent_span_id.is_empty(), "{root_caller:?}");
    let root_callee = started
        .iter()
        .find(|span| span.span_id != root_caller.span_id)
        .unwrap();
    assert_eq!(root_callee.trace_id, root_caller.trace_id);
    assert_eq!(root_callee.parent_span_id, root_caller.span_id);
    let caller = spans
        .iter()
        .find(|span| hex(&span.span_id) == accounts_span)
        .expect("the caller's request span, with the ID of ctx.trace()");
    assert_eq!(hex(&caller.parent_span_id), inbound_parent);
    assert_eq!(
        attribute(caller, "request_id").as_deref(),
        Some(request_id.as_str())
    );
    let callee = spans
        .iter()
        .find(|span| span.span_id != caller.span_id)
        .unwrap();
    assert_eq!(
        callee.parent_span_id, caller.span_id,
        "the callee's parent is the caller's exported span"
    );
    assert!(attribute(callee, "request_id").is_some());
}
