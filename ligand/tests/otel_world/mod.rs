//! What both OpenTelemetry test files run (each in a process of its own, since the export layer
//! is process-wide): accounts, which calls the ledger while serving, over real mTLS on
//! loopback, and an external caller of accounts.

use std::net::SocketAddr;

use ligand::prelude::*;
use ligand::testkit::{
    AllowList, FakeIdentity, PeerClient, PeerResponse, RecordingTelemetry, TestCa,
};
use ligand::{CallError, Config, ConfigBuilder, HttpBinding, SpiffeId};
use ligand_registry_static::StaticRegistry;

const TRUST_DOMAIN: &str = "example.org";
const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";
const LEDGER: &str = "spiffe://example.org/service/ledger";

struct Accounts;

#[ligand::service]
impl Accounts {
    /// Calls the ledger while serving; answers its own span ID and request ID.
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
) -> SocketAddr {
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

/// Accounts and the ledger, serving; accounts' address and a client calling it as the gateway.
pub(crate) async fn start() -> (SocketAddr, PeerClient) {
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
    (accounts, external)
}

/// Installs, for the whole process, the logging subscriber that exports request spans to the
/// OTLP/gRPC collector at `collector` (which need not be listening), sampling every new trace.
pub(crate) fn export_to(collector: SocketAddr) {
    let subscriber = ligand::log_subscriber_exporting(
        ligand::LogFormat::Text,
        "info",
        std::io::sink,
        &format!("http://{collector}"),
        "ligand-test",
        1.0,
    )
    .expect("the exporter starts, whether or not the collector is there");
    tracing::subscriber::set_global_default(subscriber).unwrap();
}

/// `GET /traced` from accounts as `external`, with `traceparent`.
pub(crate) async fn traced(
    external: &PeerClient,
    accounts: SocketAddr,
    traceparent: &str,
) -> PeerResponse {
    external
        .send(
            accounts,
            http::Method::GET,
            "/traced",
            &[("traceparent", traceparent)],
            Vec::new(),
        )
        .await
        .unwrap()
}
