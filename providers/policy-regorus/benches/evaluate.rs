//! Evaluation latency on a ~50-rule RBAC policy (`benches/rbac`: roles from `data.json`,
//! per-route permissions, chain checks), the cost of each part of an evaluation, and the
//! alternatives the engine's design was chosen against.
//!
//! Besides criterion's estimates, the binary times 20 000 single evaluations of each case and
//! prints p50/p99/p99.9: a measurement, not a test.
#![allow(missing_docs, reason = "benchmark binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark fixtures"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_runtime::{Action, Chain, EvalRequest, Link, PolicyEngine, RequestLine, Resource};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;

const ALLOW: &str = "data.ligand.authz.allow";
const REASON: &str = "data.ligand.authz.reason";

fn rbac_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rbac")
}

fn link(workload: Option<&str>, user: Option<&str>) -> Link {
    let mut link = Link::default();
    link.workload = workload.map(Into::into);
    link.user = user.map(Into::into);
    link
}

/// The transfers service debits an account on behalf of a user who came through the gateway.
fn allowed_request() -> EvalRequest {
    let peer = link(Some("spiffe://bank.example/service/transfers"), None);
    EvalRequest::new(
        Chain::from(vec![
            link(None, Some("alice@bank.example")),
            link(Some("spiffe://bank.example/service/gateway"), None),
            peer.clone(),
        ]),
        peer,
        Resource::http_path("/accounts/{id}/debit"),
        Action::new("debit"),
        RequestLine::new(http::Method::POST, "/accounts/42/debit"),
        "spiffe://bank.example/service/accounts",
    )
}

/// The fraud service tries the same debit: it lacks the permission.
fn denied_request() -> EvalRequest {
    let mut request = allowed_request();
    let peer = link(Some("spiffe://bank.example/service/fraud"), None);
    request.chain = Chain::from(vec![peer.clone()]);
    request.peer = peer;
    request
}

/// The RBAC policy with its decision cache on (the default).
fn rbac_policy() -> RegorusPolicy {
    RegorusPolicy::new(&RegorusConfig::folder(rbac_dir())).unwrap()
}

/// The RBAC policy with the cache off: every decision is a cold evaluation.
fn rbac_cold() -> RegorusPolicy {
    RegorusPolicy::new(&RegorusConfig::folder(rbac_dir()).with_cache(false)).unwrap()
}

fn trivial_policy(cache: bool) -> (tempfile::TempDir, RegorusPolicy) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("authz")).unwrap();
    std::fs::write(
        dir.path().join("authz/policy.rego"),
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n\n\
         allow if input.peer.workload == \"spiffe://bank.example/service/transfers\"\n",
    )
    .unwrap();
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path()).with_cache(cache)).unwrap();
    (dir, policy)
}

/// A bare regorus engine over the RBAC folder, for the strategy comparisons.
fn bare_engine() -> regorus::Engine {
    let dir = rbac_dir();
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    engine
        .add_policy(
            "ligand/authz/policy.rego".into(),
            std::fs::read_to_string(dir.join("ligand/authz/policy.rego")).unwrap(),
        )
        .unwrap();
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rbac/data.json")).unwrap()).unwrap();
    engine
        .add_data(regorus::Value::from(serde_json::json!({ "rbac": data })))
        .unwrap();
    engine.compile_with_entrypoint(&ALLOW.into()).unwrap();
    engine
}

fn input(request: &EvalRequest) -> regorus::Value {
    regorus::Value::from(serde_json::to_value(request).unwrap())
}

fn benches(c: &mut Criterion) {
    let cold = rbac_cold();
    let cached = rbac_policy();
    let allowed = allowed_request();
    let denied = denied_request();
    assert!(cold.evaluate_now(&allowed).unwrap().allowed);
    assert!(!cold.evaluate_now(&denied).unwrap().allowed);
    assert!(!cold.evaluate_now(&allowed).unwrap().cached);
    cached.evaluate_now(&allowed).unwrap();
    assert!(cached.evaluate_now(&allowed).unwrap().cached);

    let mut group = c.benchmark_group("rbac");
    group.bench_function("cold/allow", |b| {
        b.iter(|| cold.evaluate_now(black_box(&allowed)).unwrap())
    });
    group.bench_function("cold/deny", |b| {
        b.iter(|| cold.evaluate_now(black_box(&denied)).unwrap())
    });
    group.bench_function("cached/allow", |b| {
        b.iter(|| cached.evaluate_now(black_box(&allowed)).unwrap())
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    group.bench_function("cold/evaluate_async", |b| {
        b.to_async(&rt)
            .iter(|| async { cold.evaluate(black_box(&allowed)).await.unwrap() })
    });
    group.bench_function("input_document_via_serde", |b| {
        b.iter(|| input(black_box(&allowed)))
    });
    group.finish();

    // The alternatives: two eval_rule calls instead of the one decision document, and the
    // RVM (faster, but not fail-closed on builtin errors and conflicts in regorus 0.14).
    let engine = bare_engine();
    let allowed_input = input(&allowed);
    let mut group = c.benchmark_group("strategy");
    group.bench_function("engine_clone", |b| b.iter(|| black_box(engine.clone())));
    group.bench_function("interpreter_two_eval_rules", |b| {
        b.iter(|| {
            let mut e = engine.clone();
            e.set_input(allowed_input.clone());
            (
                e.eval_rule(ALLOW.into()).unwrap(),
                e.eval_rule(REASON.into()).unwrap(),
            )
        })
    });
    let mut compiled_engine = engine.clone();
    let compiled = compiled_engine
        .compile_with_entrypoint(&ALLOW.into())
        .unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[ALLOW, REASON]).unwrap();
    let data = engine.get_data();
    let mut vm = RegoVM::new();
    vm.set_strict_builtin_errors(true);
    vm.load_program(program);
    vm.set_data(data).unwrap();
    group.bench_function("rvm_reused_vm", |b| {
        b.iter(|| {
            vm.set_input(allowed_input.clone());
            (
                vm.execute_entry_point_by_name(ALLOW).unwrap(),
                vm.execute_entry_point_by_name(REASON).unwrap(),
            )
        })
    });
    group.finish();

    let (_dir, trivial) = trivial_policy(false);
    c.bench_function("trivial/cold", |b| {
        b.iter(|| trivial.evaluate_now(black_box(&allowed)).unwrap())
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn percentiles(name: &str, runs: usize, mut one: impl FnMut()) {
    for _ in 0..runs / 10 {
        one();
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        one();
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    println!(
        "{name:<40} n={runs} p50={:?} p99={:?} p99.9={:?} max={:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples[samples.len() - 1],
    );
}

fn measure_percentiles() {
    const RUNS: usize = 20_000;
    let cold = rbac_cold();
    let cached = rbac_policy();
    let allowed = allowed_request();
    let denied = denied_request();
    percentiles("rbac cold allow", RUNS, || {
        black_box(cold.evaluate_now(&allowed).unwrap());
    });
    percentiles("rbac cold deny", RUNS, || {
        black_box(cold.evaluate_now(&denied).unwrap());
    });
    percentiles("rbac cached allow", RUNS, || {
        black_box(cached.evaluate_now(&allowed).unwrap());
    });
    let (_dir, trivial) = trivial_policy(false);
    percentiles("trivial cold", 100_000, || {
        black_box(trivial.evaluate_now(&allowed).unwrap());
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    if !quick {
        measure_percentiles();
    }
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}
