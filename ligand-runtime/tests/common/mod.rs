//! Shared fixtures: a CA, a served test service and callers, all over real loopback mTLS.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Path;
use ligand_runtime::__private::{Routes, delete, get};
use ligand_runtime::testkit::{FakeIdentity, PeerClient, RecordingTelemetry, TestCa};
use ligand_runtime::{Config, ConfigBuilder, Ctx, HttpBinding, Server, Service, SpiffeId};

pub const TRUST_DOMAIN: &str = "example.org";
pub const SERVER_ID: &str = "spiffe://example.org/service/hello";
pub const CALLER_ID: &str = "spiffe://example.org/service/caller";

/// The test service, written the way `#[ligand::service]` expands, counting handler runs.
pub struct Hello {
    pub calls: Arc<AtomicUsize>,
}

impl Service for Hello {
    fn __ligand_routes(self) -> Routes<Self> {
        Routes::new(self)
            .route("/hello/{name}", "GET", |this: Arc<Hello>| {
                get(move |ctx: Ctx, Path(name): Path<String>| async move {
                    this.calls.fetch_add(1, Ordering::SeqCst);
                    let chain: Vec<String> = ctx
                        .chain()
                        .links()
                        .iter()
                        .filter_map(|l| l.principal().map(str::to_owned))
                        .collect();
                    let txn = ctx
                        .txn()
                        .map(|t| format!("|txn={}", t.sub))
                        .unwrap_or_default();
                    format!(
                        "hello {name}|peer={}|chain={}{txn}",
                        ctx.caller().principal().unwrap_or_default(),
                        chain.join(",")
                    )
                })
            })
            .route("/accounts/{id}", "close", |this: Arc<Hello>| {
                delete(move |Path(id): Path<String>| async move {
                    this.calls.fetch_add(1, Ordering::SeqCst);
                    format!("closed {id}")
                })
            })
    }
}

pub struct Fixture {
    pub ca: TestCa,
    pub server: Server,
    pub addr: SocketAddr,
    pub identity: Arc<FakeIdentity>,
    pub telemetry: Arc<RecordingTelemetry>,
    pub calls: Arc<AtomicUsize>,
    pub serving: tokio::task::JoinHandle<Result<(), ligand_runtime::ServeError>>,
}

impl Fixture {
    /// Starts the Hello service with `configure` adding policy, limiter and settings.
    pub async fn start(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Fixture {
        Self::start_with(TestCa::new(TRUST_DOMAIN), configure).await
    }

    /// [`start`](Self::start) with the server's SVID and trust from `ca`.
    pub async fn start_with(
        ca: TestCa,
        configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Fixture {
        let identity = Arc::new(FakeIdentity::new(ca.context(ca.svid(SERVER_ID))));
        let telemetry = Arc::new(RecordingTelemetry::new());
        let config = configure(
            Config::builder()
                .identity(identity.clone())
                .telemetry(telemetry.clone())
                .binding(HttpBinding::new("127.0.0.1:0")),
        )
        .build();
        let server = ligand_runtime::init(config).await.expect("init");
        let calls = Arc::new(AtomicUsize::new(0));
        let serving = tokio::spawn({
            let server = server.clone();
            let service = Hello {
                calls: calls.clone(),
            };
            async move { server.serve(service).await }
        });
        let addr = server.local_addr().await.expect("listening");
        Fixture {
            ca,
            server,
            addr,
            identity,
            telemetry,
            calls,
            serving,
        }
    }

    /// A caller holding a valid SVID for `id` from the fixture's CA, expecting the server's ID.
    pub fn caller(&self, id: &str) -> PeerClient {
        let expect = SpiffeId::new(SERVER_ID).unwrap();
        PeerClient::new(&self.ca.context(self.ca.svid(id)), Some(&expect)).unwrap()
    }

    /// The recorded events, once every record produced so far has reached the recorder.
    pub async fn audit(&self) -> &RecordingTelemetry {
        ligand_runtime::testkit::flush_audit_blocking(&self.server);
        &self.telemetry
    }

    pub fn handler_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}
