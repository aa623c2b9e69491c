//! JSON logs: every line is a JSON object, and with the request span enabled a handler's
//! lines carry its request ID, trace ID and span ID; at the default level they do not, and the
//! request pays nothing for the span.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::{Arc, Mutex};

use ligand::prelude::*;
use ligand::testkit::{AllowList, FakeIdentity, TestCa};
use ligand::{Config, HttpBinding, LogFormat, SpiffeId, log_subscriber};

const SERVICE: &str = "spiffe://example.org/service/accounts";
const CALLER: &str = "spiffe://example.org/service/gateway";

struct Accounts;

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, ctx: Ctx, Path(id): Path<String>) -> String {
        tracing::info!(account = %id, "handled");
        // The trace asked for twice: a new trace's IDs, drawn when first asked for, stay.
        let first = *ctx.trace();
        assert_eq!(*ctx.trace(), first);
        format!(
            "{} {} {}",
            ctx.request_id(),
            first.trace_id(),
            first.span_id()
        )
    }
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

/// What the handler answered: the request's ID and its trace and span IDs as its `Ctx` gives
/// them.
struct Answered {
    request_id: String,
    trace_id: String,
    span_id: String,
}

/// Serves one request, with `traceparent` if given, under a JSON subscriber filtered by
/// `filter` and returns the handler's line and its answer.
async fn handled_line(filter: &str, traceparent: Option<&str>) -> (serde_json::Value, Answered) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // A current-thread runtime: the server's tasks run on this thread, under this subscriber.
    let _guard =
        tracing::subscriber::set_default(log_subscriber(LogFormat::Json, filter, move || {
            writer.clone()
        }));
    let ca = TestCa::new("example.org");
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
        .policy(AllowList::new().allow(CALLER, "GET", "/accounts/{id}"))
        .binding(HttpBinding::new("127.0.0.1:0"))
        .build();
    let server = ligand::init(config).await.unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(Accounts).await }
    });
    let addr = server.local_addr().await.unwrap();
    let client = ligand::testkit::PeerClient::new(
        &ca.context(ca.svid(CALLER)),
        Some(&SpiffeId::new(SERVICE).unwrap()),
    )
    .unwrap();
    let response = client
        .send(
            addr,
            http::Method::GET,
            "/accounts/a1",
            &traceparent
                .map(|value| ("traceparent", value))
                .into_iter()
                .collect::<Vec<_>>(),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let mut answer = text.split(' ').map(str::to_owned);
    let answered = Answered {
        request_id: answer.next().unwrap(),
        trace_id: answer.next().unwrap(),
        span_id: answer.next().unwrap(),
    };
    server.close().await;

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let handled = lines
        .iter()
        .find(|l| l["fields"]["message"] == "handled")
        .unwrap_or_else(|| panic!("no handler line in {text}"))
        .clone();
    (handled, answered)
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_request_and_trace_ids() {
    let (handled, answered) = handled_line(
        "info,ligand::audit=off,ligand::request=debug",
        Some(TRACEPARENT),
    )
    .await;
    assert_eq!(handled["level"], "INFO");
    assert_eq!(handled["fields"]["account"], "a1");
    assert_eq!(handled["span"]["name"], "request");
    assert_eq!(handled["span"]["request_id"], answered.request_id.as_str());
    assert_eq!(
        handled["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let span_id = handled["span"]["span_id"].as_str().unwrap();
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, "00f067aa0ba902b7");
    assert_eq!(answered.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(answered.span_id, span_id, "the span is the request's own");
}

#[tokio::test]
async fn a_new_trace_is_the_same_in_the_span_and_the_ctx() {
    let (handled, answered) =
        handled_line("info,ligand::audit=off,ligand::request=debug", None).await;
    let trace_id = handled["span"]["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, "0".repeat(32));
    assert_eq!(answered.trace_id, trace_id);
    assert_eq!(
        answered.span_id,
        handled["span"]["span_id"].as_str().unwrap()
    );
    assert!(handled["span"].get("parent_span_id").is_none(), "{handled}");
}

#[tokio::test]
async fn a_new_trace_the_span_does_not_show_is_drawn_when_asked_for_and_stays() {
    let (handled, answered) = handled_line("info,ligand::audit=off", None).await;
    assert!(handled.get("span").is_none(), "{handled}");
    assert_eq!(answered.trace_id.len(), 32);
    assert_ne!(answered.trace_id, "0".repeat(32));
    assert_eq!(answered.span_id.len(), 16);
}

#[tokio::test]
async fn at_the_default_level_the_request_span_is_off() {
    let (handled, _) = handled_line("info,ligand::audit=off", Some(TRACEPARENT)).await;
    assert_eq!(handled["fields"]["account"], "a1");
    assert!(handled.get("span").is_none(), "{handled}");
}
