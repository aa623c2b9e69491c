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
        ctx.request_id().to_owned()
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

/// Serves one request under a JSON subscriber filtered by `filter` and returns the handler's
/// line and the request's ID.
async fn handled_line(filter: &str) -> (serde_json::Value, String) {
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
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let request_id = response.text();
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
    (handled, request_id)
}

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_request_and_trace_ids() {
    let (handled, request_id) = handled_line("info,ligand::audit=off,ligand::request=debug").await;
    assert_eq!(handled["level"], "INFO");
    assert_eq!(handled["fields"]["account"], "a1");
    assert_eq!(handled["span"]["name"], "request");
    assert_eq!(handled["span"]["request_id"], request_id.as_str());
    assert_eq!(
        handled["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let span_id = handled["span"]["span_id"].as_str().unwrap();
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, "00f067aa0ba902b7");
}

#[tokio::test]
async fn at_the_default_level_the_request_span_is_off() {
    let (handled, _) = handled_line("info,ligand::audit=off").await;
    assert_eq!(handled["fields"]["account"], "a1");
    assert!(handled.get("span").is_none(), "{handled}");
}
