//! OpenTelemetry export to a collector that is not there: requests are served as usual (the
//! export layer is process-wide, so this is a file of its own).
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use ligand::prelude::*;
use ligand::testkit::{AllowList, FakeIdentity, PeerClient, RecordingTelemetry, TestCa};
use ligand::{CallError, Config, ConfigBuilder, HttpBinding, SpiffeId};
use ligand_registry_static::StaticRegistry;

const TRUST_DOMAIN: &str = "example.org";
const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";
const LEDGER: &str = "spiffe://example.org/service/ledger";

struct Accounts;

#[ligand::service]
impl Accounts {
    /// Calls the ledger while serving.
    #[get("/traced")]
    async fn traced(&self, ctx: Ctx) -> Result<String, String> {
        ctx.client::<LedgerApiClient>()
            .ping()
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("{} {}", ctx.trace().span_id(), ctx.request_id()))
    }
}

struct Ledger;

#[ligand::service]
impl Ledger {
    #[get("/ping")]
    async fn ping(&self) -> Json<()> {
        Json(())
    }
}

#[ligand::client(service = "spiffe://example.org/service/ledger")]
trait LedgerApi {
    #[get("/ping")]
    async fn ping(&self) -> Result<(), CallError>;
}

async fn serve_service<S: ligand::Service>(
    ca: &TestCa,
    id: &str,
    service: S,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> std::net::SocketAddr {
    let config = configure(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(id))))
            .telemetry(RecordingTelemetry::new())
            .binding(HttpBinding::new("127.0.0.1:0")),
    )
    .build();
    let server = ligand::init(config).await.expect("init");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(service).await }
    });
    server.local_addr().await.expect("listening")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_never_fails_a_request() {
    // A loopback port with nothing listening.
    let collector = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let subscriber = ligand::log_subscriber_exporting(
        ligand::LogFormat::Text,
        "info",
        std::io::sink,
        &format!("http://{collector}"),
        "ligand-test",
        1.0,
    )
    .expect("the exporter starts without reaching the collector");
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let ca = TestCa::new(TRUST_DOMAIN);
    let ledger = serve_service(&ca, LEDGER, Ledger, |c| {
        c.policy(AllowList::new().allow(ACCOUNTS, "GET", "/ping"))
    })
    .await;
    let accounts = serve_service(&ca, ACCOUNTS, Accounts, |c| {
        c.policy(AllowList::new().allow(GATEWAY, "*", "*"))
            .registry(
                StaticRegistry::new()
                    .service(LEDGER, [ledger.to_string()])
                    .unwrap(),
            )
    })
    .await;
    let external = PeerClient::new(
        &ca.context(ca.svid(GATEWAY)),
        Some(&SpiffeId::new(ACCOUNTS).unwrap()),
    )
    .unwrap();
    for _ in 0..3 {
        let response = external
            .send(
                accounts,
                http::Method::GET,
                "/traced",
                &[(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // The flush gives up after its bound instead of hanging the close.
    tokio::task::spawn_blocking(|| ligand::shutdown_telemetry(Duration::from_secs(1)))
        .await
        .unwrap();
}
