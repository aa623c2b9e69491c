//! A Ligand → Ligand call against a plain hyper + rustls client calling the same server with
//! the same TLS (TLS 1.3, client SVID, server verified as the exact SPIFFE ID), both pooled.
//!
//! The clients run on a current-thread runtime on the benchmark thread and the server on its
//! own runtime threads, so `latency` is the wall time of one sequential call and `client_cpu`
//! the benchmark thread's CPU time per call: the client side alone (its connection tasks run on
//! the same thread). Compare `ligand` with `plain` in each group.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "bench"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use ligand::prelude::*;
use ligand::provider::tls::{IdentityState, PeerVerifier};
use ligand::testkit::{AllowList, FakeIdentity, TestCa};
use ligand::{CallError, Config, HttpBinding, SpiffeId};
use ligand_registry_static::StaticRegistry;
use serde::{Deserialize, Serialize};

const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";

#[derive(Debug, Serialize, Deserialize)]
struct Account {
    id: String,
    balance: u64,
}

struct Accounts;

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, Path(id): Path<String>) -> Json<Account> {
        Json(Account { id, balance: 42 })
    }
}

#[ligand::client(service = "spiffe://example.org/service/accounts")]
trait AccountsApi {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Account, CallError>;
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

fn bench(c: &mut Criterion) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let (callee, addr) = server_rt.block_on(async {
        let config = Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(ACCOUNTS))))
            .policy(AllowList::new().allow(GATEWAY, "*", "*"))
            .telemetry(ligand::testkit::RecordingTelemetry::new())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build();
        let server = ligand::init(config).await.unwrap();
        tokio::spawn({
            let server = server.clone();
            async move { server.serve(Accounts).await }
        });
        let addr = server.local_addr().await.unwrap();
        (server, addr)
    });

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gateway_context = ca.context(ca.svid(GATEWAY));
    let ligand_client = client_rt.block_on(async {
        let config = Config::builder()
            .identity(FakeIdentity::new(gateway_context.clone()))
            .policy(AllowList::new())
            .telemetry(ligand::testkit::RecordingTelemetry::new())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .registry(
                StaticRegistry::new()
                    .service(ACCOUNTS, [addr.to_string()])
                    .unwrap(),
            )
            .build();
        let server = ligand::init(config).await.unwrap();
        server.client::<AccountsApiClient>()
    });

    let identity = Arc::new(IdentityState::new(&gateway_context, None).unwrap());
    let tls = identity
        .client_config(PeerVerifier::Exact(SpiffeId::new(ACCOUNTS).unwrap()))
        .unwrap();
    let plain = client_rt.block_on(async {
        // hyper-rustls sets ALPN itself (h2, http/1.1: what the Ligand client offers too).
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        HyperClient::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https)
    });
    let uri: http::Uri = format!("https://{addr}/accounts/a").parse().unwrap();
    let plain_get = || {
        let plain = plain.clone();
        let uri = uri.clone();
        async move {
            let response = plain.get(uri).await.unwrap();
            assert!(response.status().is_success());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Account>(&body).unwrap()
        }
    };

    // Warm both pools.
    client_rt.block_on(async {
        ligand_client.get("a").await.unwrap();
        plain_get().await;
    });

    let mut group = c.benchmark_group("outbound/latency");
    group.bench_function("ligand", |b| {
        b.iter_custom(|n| {
            client_rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    ligand_client.get("a").await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("plain", |b| {
        b.iter_custom(|n| {
            client_rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    plain_get().await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("outbound/client_cpu");
    group.bench_function("ligand", |b| {
        b.iter_custom(|n| {
            client_rt.block_on(async {
                let start = thread_cpu();
                for _ in 0..n {
                    ligand_client.get("a").await.unwrap();
                }
                thread_cpu() - start
            })
        })
    });
    group.bench_function("plain", |b| {
        b.iter_custom(|n| {
            client_rt.block_on(async {
                let start = thread_cpu();
                for _ in 0..n {
                    plain_get().await;
                }
                thread_cpu() - start
            })
        })
    });
    group.finish();
    server_rt.block_on(callee.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
