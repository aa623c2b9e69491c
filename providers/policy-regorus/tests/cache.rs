//! The decision cache never changes a decision: cached and uncached answers agree over random
//! inputs for the bench policies, impure policies are never cached, turning the cache off
//! turns it off, and a policy that reads only the route template caches across concrete
//! paths.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::strategies::arb_request;
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_runtime::{Action, Chain, EvalRequest, Link, RequestLine, Resource, TxnClaims};
use proptest::prelude::*;

fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rbac")
}

fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, RegorusPolicy, RegorusPolicy) {
    let dir = tempfile::tempdir().unwrap();
    common::write_folder(dir.path(), files);
    let cached = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    let uncached =
        RegorusPolicy::new(&RegorusConfig::folder(dir.path()).with_cache(false)).unwrap();
    (dir, cached, uncached)
}

/// Asks `cached` twice (the second from the cache when sound) and `uncached` once; the three
/// answers must agree.
fn agree(cached: &RegorusPolicy, uncached: &RegorusPolicy, request: &EvalRequest) {
    let reference = uncached.evaluate_uncached(request).unwrap();
    for _ in 0..2 {
        let answer = cached.evaluate_now(request).unwrap();
        assert_eq!(answer.allowed, reference.allowed, "{request:?}");
        assert_eq!(answer.reason, reference.reason, "{request:?}");
    }
    let off = uncached.evaluate_now(request).unwrap();
    assert!(!off.cached);
    assert_eq!(
        (off.allowed, off.reason),
        (reference.allowed, reference.reason)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rbac_cached_and_uncached_decisions_are_identical(
        requests in proptest::collection::vec(arb_request(), 1..24),
    ) {
        let cached = RegorusPolicy::new(&RegorusConfig::folder(rbac_dir())).unwrap();
        let uncached = RegorusPolicy::new(&RegorusConfig::folder(rbac_dir()).with_cache(false)).unwrap();
        prop_assert!(cached.decision_cache().is_ok());
        for request in &requests {
            agree(&cached, &uncached, request);
        }
    }

    #[test]
    fn the_inline_decision_is_the_awaited_decision(
        requests in proptest::collection::vec(arb_request(), 1..12),
    ) {
        use ligand_runtime::PolicyEngine;
        let policy = RegorusPolicy::new(&RegorusConfig::folder(rbac_dir())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for request in &requests {
            let inline = policy.evaluate_inline(request).expect("regorus decides inline").unwrap();
            let awaited = runtime.block_on(policy.evaluate(request)).unwrap();
            prop_assert_eq!(inline.allowed, awaited.allowed);
            prop_assert_eq!(inline.reason, awaited.reason);
            prop_assert_eq!(inline.policy_version, awaited.policy_version);
        }
    }

    #[test]
    fn test_policy_cached_and_uncached_decisions_are_identical(
        requests in proptest::collection::vec(arb_request(), 1..24),
    ) {
        let (_dir, cached, uncached) = folder(&[
            ("ligand/authz/policy.rego", &common::policy("rev")),
            ("authz/data.json", &common::data(&[common::CALLER])),
        ]);
        for request in &requests {
            agree(&cached, &uncached, request);
        }
    }
}

#[test]
fn rbac_cache_keys_on_exactly_what_the_policy_reads() {
    let policy = RegorusPolicy::new(&RegorusConfig::folder(rbac_dir())).unwrap();
    assert_eq!(
        policy.decision_cache().unwrap(),
        "input.chain, input.peer.workload, input.resource.value, input.action.name, \
         input.request.method, input.service"
    );
    // High-cardinality paths: the concrete id is not read, so the second account is a hit.
    let peer = Link::workload("spiffe://bank.example/service/gateway");
    let request = |id: u32| {
        EvalRequest::new(
            Chain::from(vec![peer.clone()]),
            peer.clone(),
            Resource::http_path("/accounts/{id}"),
            Action::new("GET"),
            RequestLine::new(http::Method::GET, format!("/accounts/{id}")),
            "spiffe://bank.example/service/accounts",
        )
    };
    let first = policy.evaluate_now(&request(1)).unwrap();
    let second = policy.evaluate_now(&request(2)).unwrap();
    assert!(!first.cached);
    assert!(second.cached);
    assert_eq!(first.allowed, second.allowed);
}

#[test]
fn txn_claims_the_policy_reads_key_its_decisions_and_the_rest_do_not() {
    let (_dir, policy, _) = folder(&[(
        "ligand/authz/policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\n\
         allow if input.txn.sub == \"user-42\"\n\n\
         allow if input.txn.tctx.amount < 100\n",
    )]);
    assert_eq!(
        policy.decision_cache().unwrap(),
        "input.txn.sub, input.txn.tctx"
    );
    let request = |sub: &str, amount: i64| {
        let mut claims = TxnClaims::new(format!("t-{sub}-{amount}"), sub, 1_000, 2_000);
        claims.tctx = Some(serde_json::json!({ "amount": amount }));
        common::request(common::CALLER, "GET", "/hello/{name}").with_txn(Some(Arc::new(claims)))
    };
    let first = policy.evaluate_now(&request("user-42", 500)).unwrap();
    assert!(first.allowed && !first.cached);
    let other_sub = policy.evaluate_now(&request("user-7", 500)).unwrap();
    assert!(!other_sub.allowed && !other_sub.cached);
    let other_context = policy.evaluate_now(&request("user-7", 50)).unwrap();
    assert!(other_context.allowed && !other_context.cached);
    let again = policy.evaluate_now(&request("user-7", 500)).unwrap();
    assert!(!again.allowed && again.cached);
    // Another transaction (its own `txn` id) with the same claims the policy reads: a hit.
    let mut claims = TxnClaims::new("t-other", "user-42", 1_000, 2_000);
    claims.tctx = Some(serde_json::json!({ "amount": 500 }));
    let other_txn =
        common::request(common::CALLER, "GET", "/hello/{name}").with_txn(Some(Arc::new(claims)));
    let other_txn = policy.evaluate_now(&other_txn).unwrap();
    assert!(other_txn.allowed && other_txn.cached);
    let absent = common::request(common::CALLER, "GET", "/hello/{name}");
    let absent = policy.evaluate_now(&absent).unwrap();
    assert!(!absent.allowed && !absent.cached);
}

#[test]
fn a_policy_reading_the_clock_is_never_cached() {
    let (_dir, policy, _) = folder(&[(
        "ligand/authz/policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\n\
         allow if time.now_ns() > 0\n\n\
         reason := sprintf(\"at %d\", [time.now_ns()])\n",
    )]);
    let why = policy.decision_cache().unwrap_err();
    assert!(why.contains("time.now_ns"), "{why}");
    let request = common::request(common::CALLER, "GET", "/hello/{name}");
    let first = policy.evaluate_now(&request).unwrap();
    let second = policy.evaluate_now(&request).unwrap();
    assert!(first.allowed && second.allowed);
    assert!(!first.cached && !second.cached);
    assert_ne!(
        first.reason, second.reason,
        "each decision reads the clock anew"
    );
}

#[test]
fn impure_builtins_anywhere_turn_the_cache_off() {
    for call in [
        "rand.intn(\"k\", 10) >= 0",
        "uuid.rfc4122(\"k\") != \"\"",
        "count(opa.runtime()) >= 0",
    ] {
        let source = format!(
            "package ligand.authz\n\nimport rego.v1\n\nhelper if {call}\n\nallow if helper\n"
        );
        let (_dir, policy, _) = folder(&[("ligand/authz/policy.rego", &source)]);
        assert!(policy.decision_cache().is_err(), "{call}");
        let request = common::request(common::CALLER, "GET", "/hello/{name}");
        policy.evaluate_now(&request).unwrap();
        assert!(!policy.evaluate_now(&request).unwrap().cached, "{call}");
    }
}

#[test]
fn whole_input_reads_key_on_the_whole_input() {
    let (_dir, policy, _) = folder(&[(
        "ligand/authz/policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow if count(json.marshal(input)) < 100000\n\n\
         reason := input.request.path\n",
    )]);
    assert!(
        policy
            .decision_cache()
            .unwrap()
            .contains("input.request.path")
    );
    let a = common::request(common::CALLER, "GET", "/hello/{name}");
    let mut b = a.clone();
    b.request.path = "/hello/bob".into();
    policy.evaluate_now(&a).unwrap();
    let other = policy.evaluate_now(&b).unwrap();
    assert!(!other.cached);
    assert_eq!(other.reason.as_deref(), Some("/hello/bob"));
}

#[test]
fn errors_are_never_cached() {
    let (_dir, policy, _) = folder(&[(
        "ligand/authz/policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow if to_number(input.request.path) > 0\n",
    )]);
    let request = common::request(common::CALLER, "GET", "/hello/{name}");
    assert!(policy.evaluate_now(&request).is_err());
    assert!(
        policy.evaluate_now(&request).is_err(),
        "the error is evaluated again"
    );
}

#[test]
fn the_cache_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    common::write_folder(
        dir.path(),
        &[(
            "ligand/authz/policy.rego",
            "package ligand.authz\n\nimport rego.v1\n\nallow if input.request.path != \"\"\n",
        )],
    );
    let mut config = RegorusConfig::folder(dir.path());
    config.cache_capacity = 8;
    let policy = Arc::new(RegorusPolicy::new(&config).unwrap());
    let mut request = common::request(common::CALLER, "GET", "/hello/{name}");
    for i in 0..1000 {
        request.request.path = format!("/hello/{i}").into();
        assert!(policy.evaluate_now(&request).unwrap().allowed);
    }
    assert!(
        policy.cached_decisions() <= 16,
        "{}",
        policy.cached_decisions()
    );
}
