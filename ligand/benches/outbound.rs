//! A Ligand → Ligand call against a plain hyper + rustls client calling the same server with
//! the same TLS (TLS 1.3, client SVID, server verified as the exact SPIFFE ID), both pooled;
//! and a Ligand client signing version 1 chains, to show what the chain header costs.
//!
//! The clients run on a current-thread runtime on the benchmark thread and the server on its
//! own runtime thread, so a call's latency is the wall time of one sequential call. The
//! client CPU per call is the client side's alone: the benchmark thread's CPU time (the
//! connection tasks run on it) and, for a Ligand client, its audit writer's, which writes
//! the call records (the default audit log's lines, written to a sink that discards them;
//! the server writes its decision records the same way). A shared machine moves both by tens of percent between
//! runs, so the clients take turns on the same server in interleaved rounds (the order
//! alternating), and the verdict is the median over rounds of each round's ratio to plain.
//!
//! ```text
//! cargo bench -p ligand --bench outbound                       # 9 rounds of 2000 calls each
//! cargo bench -p ligand --bench outbound -- --rounds 5 --calls 500
//! ```
//!
//! Instruction counts, which do not depend on the machine's load, come from the same binary
//! under callgrind: `--profile <ligand|ligand-v1|plain> --calls N` warms up, then makes N calls
//! inside `profiled_calls` alone, so that
//!
//! ```text
//! valgrind --tool=callgrind --separate-threads=yes --collect-atstart=no \
//!     --toggle-collect='*profiled_calls*' <bench binary> --profile ligand --calls 1000
//! ```
//!
//! counts the client thread's instructions for N calls (the `-01` file of thread 1; divide
//! its total by N). The audit writers' threads are not counted that way (collection follows
//! the calling thread); for them, and for the server's thread, collect from the start
//! (`--collect-atstart=yes`) in two runs of different N and divide the difference of each
//! thread's totals by the difference of the Ns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs,
    reason = "bench"
)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ligand::prelude::*;
use ligand::provider::tls::{IdentityState, PeerVerifier};
use ligand::testkit::{AllowList, FakeIdentity, TestCa};
use ligand::{CallError, ChainVersion, Config, HttpBinding, LogLinesTelemetry, SpiffeId};
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

/// The IDs of this process's threads.
fn threads() -> std::collections::BTreeSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|task| task.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The CPU time of this process's thread `tid` so far (Linux's schedstat, in nanoseconds);
/// zero for a thread that has ended or a kernel without schedstat.
fn task_cpu(tid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

type Plain = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The clients compared, all calling the same server.
struct Clients {
    ligand: AccountsApiClient,
    ligand_v1: AccountsApiClient,
    plain: Plain,
    uri: http::Uri,
    /// Each Ligand client's service, and the threads it started (its audit writer): a call's
    /// client CPU is the calling thread's and theirs.
    ligand_side: [(ligand::Server, Vec<u32>); 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ligand,
    LigandV1,
    Plain,
}

impl Which {
    const ALL: [Self; 3] = [Self::Plain, Self::Ligand, Self::LigandV1];

    fn name(self) -> &'static str {
        match self {
            Self::Ligand => "ligand",
            Self::LigandV1 => "ligand-v1",
            Self::Plain => "plain",
        }
    }
}

impl Clients {
    async fn call(&self, which: Which) {
        match which {
            Which::Ligand => {
                self.ligand.get("a").await.unwrap();
            }
            Which::LigandV1 => {
                self.ligand_v1.get("a").await.unwrap();
            }
            Which::Plain => {
                let response = self.plain.get(self.uri.clone()).await.unwrap();
                assert!(response.status().is_success());
                let body = response.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice::<Account>(&body).unwrap();
            }
        }
    }
}

/// One client's share of a round: latency p50 and client CPU per call.
#[derive(Debug, Clone, Copy)]
struct Sample {
    p50: Duration,
    cpu: Duration,
}

fn measure(rt: &tokio::runtime::Runtime, clients: &Clients, which: Which, calls: usize) -> Sample {
    let side = match which {
        Which::Ligand => Some(&clients.ligand_side[0]),
        Which::LigandV1 => Some(&clients.ligand_side[1]),
        Which::Plain => None,
    };
    let client_cpu = || {
        thread_cpu()
            + side.map_or(Duration::ZERO, |(_, threads)| {
                threads.iter().map(|&tid| task_cpu(tid)).sum()
            })
    };
    rt.block_on(async {
        let mut latencies = Vec::with_capacity(calls);
        let cpu = client_cpu();
        for _ in 0..calls {
            let start = Instant::now();
            clients.call(which).await;
            latencies.push(start.elapsed());
        }
        // The round's call records written before its CPU is read.
        if let Some((server, _)) = side {
            server.flush_audit().await;
        }
        let cpu = (client_cpu() - cpu) / u32::try_from(calls).unwrap();
        latencies.sort_unstable();
        Sample {
            p50: latencies[calls / 2],
            cpu,
        }
    })
}

/// The calls counted under callgrind (`--toggle-collect='*profiled_calls*'`).
#[inline(never)]
fn profiled_calls(rt: &tokio::runtime::Runtime, clients: &Clients, which: Which, calls: usize) {
    rt.block_on(async {
        for _ in 0..calls {
            clients.call(which).await;
        }
    });
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The chain header sizes of both versions: the one a hop starting a chain sends, and the
/// one the third hop of A → B → C sends.
fn header_sizes() {
    use ligand_runtime::testkit::signed_chain_in;
    let ca = TestCa::new("example.org");
    let hop = |id: &str| IdentityState::new(&ca.context(ca.svid(id)), None).unwrap();
    let (a, b, c) = (
        hop("spiffe://example.org/service/a"),
        hop("spiffe://example.org/service/b"),
        hop("spiffe://example.org/service/c"),
    );
    let to = SpiffeId::new(ACCOUNTS).unwrap();
    let now = SystemTime::now();
    for version in [ChainVersion::V1, ChainVersion::V2] {
        let one = signed_chain_in(&[(&c, version)], &to, now).unwrap().len();
        let three = signed_chain_in(&[(&a, version), (&b, version), (&c, version)], &to, now)
            .unwrap()
            .len();
        println!(
            "x-ligand-chain, version {}: {one} bytes for one hop, {three} bytes for three \
             (P-256 leaf SVIDs)",
            version.number()
        );
    }
}

struct Options {
    rounds: usize,
    calls: usize,
    profile: Option<Which>,
}

fn options() -> Options {
    let mut options = Options {
        rounds: 9,
        calls: 2000,
        profile: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the option");
        match arg.as_str() {
            "--rounds" => options.rounds = value().parse().expect("--rounds N"),
            "--calls" => options.calls = value().parse().expect("--calls N"),
            "--profile" => {
                let name = value();
                options.profile = Some(
                    Which::ALL
                        .into_iter()
                        .find(|w| w.name() == name)
                        .expect("--profile ligand|ligand-v1|plain"),
                );
            }
            // cargo bench passes --bench; anything else is a filter this bench has no use for.
            _ => {}
        }
    }
    options.rounds = options.rounds.max(1);
    options.calls = options.calls.max(1);
    options
}

fn main() {
    let options = options();
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
            .telemetry(LogLinesTelemetry::new(std::io::sink()))
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
    let ligand_client = |version: ChainVersion| {
        let before = threads();
        let (server, client) = client_rt.block_on(async {
            let config = Config::builder()
                .identity(FakeIdentity::new(gateway_context.clone()))
                .policy(AllowList::new())
                .telemetry(LogLinesTelemetry::new(std::io::sink()))
                .binding(HttpBinding::new("127.0.0.1:0"))
                .outbound_chain_version(version)
                .registry(
                    StaticRegistry::new()
                        .service(ACCOUNTS, [addr.to_string()])
                        .unwrap(),
                )
                .build();
            let server = ligand::init(config).await.unwrap();
            let client = server.client::<AccountsApiClient>();
            (server, client)
        });
        let started = threads().difference(&before).copied().collect();
        (client, (server, started))
    };
    let (ligand, ligand_side) = ligand_client(ChainVersion::V2);
    let (ligand_v1, ligand_v1_side) = ligand_client(ChainVersion::V1);

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
    let clients = Clients {
        ligand,
        ligand_v1,
        plain,
        uri: format!("https://{addr}/accounts/a").parse().unwrap(),
        ligand_side: [ligand_side, ligand_v1_side],
    };

    // Warm every pool and cache (connections, signed chain tokens, the server's verify cache).
    let warm = options.calls.min(200);
    for which in Which::ALL {
        warm_up(&client_rt, &clients, which, warm);
    }

    if let Some(which) = options.profile {
        profiled_calls(&client_rt, &clients, which, options.calls);
        println!("{}: {} calls profiled", which.name(), options.calls);
        server_rt.block_on(callee.close());
        return;
    }

    header_sizes();
    println!(
        "\n{} interleaved rounds of {} sequential calls per client; p50 latency and client CPU \
         per call (µs), ratios to plain",
        options.rounds, options.calls
    );
    println!(
        "{:>5}  {:>9} {:>9} {:>9}  {:>9} {:>9} {:>9}  {:>7} {:>7}  {:>7} {:>7}",
        "round",
        "p50 plain",
        "ligand",
        "ligand-v1",
        "cpu plain",
        "ligand",
        "ligand-v1",
        "p50 ×",
        "v1 ×",
        "cpu ×",
        "v1 ×"
    );
    let mut ratios: [Vec<f64>; 4] = Default::default();
    for round in 0..options.rounds {
        // Alternate the order, so a drift within a round favours no client.
        let mut order = Which::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        let mut samples = [None; 3];
        for which in order {
            samples[which as usize] = Some(measure(&client_rt, &clients, which, options.calls));
        }
        let [ligand, ligand_v1, plain] = samples.map(Option::unwrap);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let round_ratios = [
            ratio(ligand.p50, plain.p50),
            ratio(ligand_v1.p50, plain.p50),
            ratio(ligand.cpu, plain.cpu),
            ratio(ligand_v1.cpu, plain.cpu),
        ];
        for (all, r) in ratios.iter_mut().zip(round_ratios) {
            all.push(r);
        }
        println!(
            "{round:>5}  {:>9.1} {:>9.1} {:>9.1}  {:>9.1} {:>9.1} {:>9.1}  {:>7.3} {:>7.3}  {:>7.3} {:>7.3}",
            micros(plain.p50),
            micros(ligand.p50),
            micros(ligand_v1.p50),
            micros(plain.cpu),
            micros(ligand.cpu),
            micros(ligand_v1.cpu),
            round_ratios[0],
            round_ratios[1],
            round_ratios[2],
            round_ratios[3],
        );
    }
    let [p50, p50_v1, cpu, cpu_v1] = ratios.map(median);
    println!(
        "median of the rounds' ratios to plain: latency p50 ligand {p50:.3} (v1 chain \
         {p50_v1:.3}), client CPU ligand {cpu:.3} (v1 chain {cpu_v1:.3}); issue #12 goals: \
         latency <= 1.1, CPU <= 1.3"
    );
    server_rt.block_on(callee.close());
}

/// The warm-up calls, outside the profiled function.
#[inline(never)]
fn warm_up(rt: &tokio::runtime::Runtime, clients: &Clients, which: Which, calls: usize) {
    rt.block_on(async {
        for _ in 0..calls {
            clients.call(which).await;
        }
    });
}
