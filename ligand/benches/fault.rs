//! The fault run: three endpoints of one service, one of them answering every request with
//! 503, called through the Ligand client by 8 concurrent callers. For each balancer, with
//! outlier ejection (the default) and without it, and for a retried method (GET) and one that
//! is not retried (POST), it prints the share of calls that succeeded, their latency and the
//! attempts they took. Each case starts from a fresh caller, so no state carries over.
//!
//! Run with: cargo bench -p ligand --bench fault

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs,
    reason = "bench"
)]

use std::time::{Duration, Instant};

use ligand::prelude::*;
use ligand::testkit::{AllowList, FakeIdentity, TestCa};
use ligand::{CallError, Config, HttpBinding, ResilienceConfig, Server, Strategy};
use ligand_registry_static::StaticRegistry;
use serde::{Deserialize, Serialize};

const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";
const CALLERS: usize = 8;
const CALLS: usize = 4000;

#[derive(Debug, Serialize, Deserialize)]
struct Account {
    id: String,
}

struct Accounts {
    failing: bool,
}

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, Path(id): Path<String>) -> Result<Json<Account>, StatusCode> {
        if self.failing {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        Ok(Json(Account { id }))
    }

    #[post("/accounts/{id}")]
    async fn touch(&self, Path(id): Path<String>) -> Result<Json<Account>, StatusCode> {
        self.get(Path(id)).await
    }
}

#[ligand::client(service = "spiffe://example.org/service/accounts")]
trait AccountsApi {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Account, CallError>;

    #[post("/accounts/{id}")]
    async fn touch(&self, id: &str) -> Result<Account, CallError>;
}

/// How one case went.
struct Run {
    succeeded: usize,
    latencies: Vec<Duration>,
    attempts: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn callee(ca: &TestCa, failing: bool) -> (Server, String) {
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(ACCOUNTS))))
        .policy(AllowList::new().allow(GATEWAY, "*", "*"))
        .telemetry(ligand::testkit::RecordingTelemetry::new())
        .binding(HttpBinding::new("127.0.0.1:0"))
        .build();
    let server = ligand::init(config).await.unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(Accounts { failing }).await }
    });
    let addr = server.local_addr().await.unwrap().to_string();
    (server, addr)
}

async fn run(ca: &TestCa, addresses: &[String], resilience: ResilienceConfig, post: bool) -> Run {
    let telemetry = std::sync::Arc::new(ligand::testkit::RecordingTelemetry::new());
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(GATEWAY))))
        .policy(AllowList::new())
        .telemetry(telemetry.clone())
        .binding(HttpBinding::new("127.0.0.1:0"))
        .registry(
            StaticRegistry::new()
                .service(ACCOUNTS, addresses.iter().cloned())
                .unwrap(),
        )
        .outbound_resilience(resilience)
        .build();
    let gateway = ligand::init(config).await.unwrap();
    let client = gateway.client::<AccountsApiClient>();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut done = Vec::with_capacity(CALLS / CALLERS);
                for _ in 0..CALLS / CALLERS {
                    let started = Instant::now();
                    let result = if post {
                        client.touch("a").await
                    } else {
                        client.get("a").await
                    };
                    done.push((result.is_ok(), started.elapsed()));
                }
                done
            })
        })
        .collect();
    let mut run = Run {
        succeeded: 0,
        latencies: Vec::with_capacity(CALLS),
        attempts: 0,
    };
    for task in tasks {
        for (ok, latency) in task.await.unwrap() {
            run.succeeded += usize::from(ok);
            run.latencies.push(latency);
        }
    }
    run.latencies.sort();
    gateway.flush_audit().await;
    run.attempts = telemetry
        .outbound_calls()
        .iter()
        .map(|c| u64::from(c.attempts))
        .sum();
    gateway.close().await;
    run
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ca = TestCa::new("example.org");
        let mut callees = Vec::new();
        for failing in [false, false, true] {
            callees.push(callee(&ca, failing).await);
        }
        let addresses: Vec<String> = callees.iter().map(|(_, a)| a.clone()).collect();
        println!("{CALLS} calls by {CALLERS} callers; endpoint 3 of 3 answers 503 to everything\n");
        println!(
            "{:<14} {:<9} {:<6} {:>9} {:>9} {:>9} {:>14}",
            "balancer", "ejection", "method", "success", "p50", "p99", "attempts/call"
        );
        for (name, strategy) in [
            ("p2c_ewma", Strategy::P2cEwma),
            ("round_robin", Strategy::RoundRobin),
        ] {
            for ejection in [true, false] {
                for post in [false, true] {
                    let mut resilience = ResilienceConfig::default();
                    resilience.balancer.strategy = strategy;
                    if !ejection {
                        resilience.outlier.consecutive_failures = 0;
                        resilience.outlier.success_rate.enabled = false;
                        resilience.outlier.latency.enabled = false;
                    }
                    let run = run(&ca, &addresses, resilience, post).await;
                    println!(
                        "{:<14} {:<9} {:<6} {:>8.2}% {:>7.0}µs {:>7.0}µs {:>14.2}",
                        name,
                        if ejection { "on" } else { "off" },
                        if post { "POST" } else { "GET" },
                        100.0 * run.succeeded as f64 / CALLS as f64,
                        percentile(&run.latencies, 0.50).as_secs_f64() * 1e6,
                        percentile(&run.latencies, 0.99).as_secs_f64() * 1e6,
                        run.attempts as f64 / CALLS as f64,
                    );
                }
            }
        }
        for (server, _) in callees {
            server.close().await;
        }
    });
}
