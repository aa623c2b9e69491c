//! Atomic reload: concurrent evaluations during reloads each see exactly one policy (cached
//! decisions included), and garbage never replaces a policy. That an evaluation in flight
//! finishes on the policy it pinned is a unit test of the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use common::{CALLER, bundle, request};
use ligand_opa_bundle::{Bundle, BundleFile};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_runtime::{EvalResponse, PolicyEngine};
use proptest::prelude::*;

/// A policy whose every output names its version: `allow` is `allowed`, the reason is
/// `"<revision>"`, and the revision is in the manifest.
fn versioned(revision: &str, allowed: bool, slow: bool) -> Vec<u8> {
    // The slow variant does real work before deciding, so that a reload can overtake it.
    let work = if slow {
        "\tcount([x | some x in numbers.range(1, 300000)]) > 0\n"
    } else {
        ""
    };
    Bundle::new(vec![BundleFile::new(
        "ligand/authz/policy.rego",
        format!(
            "package ligand.authz\n\nimport rego.v1\n\nallow := {allowed} if {{\n{work}\ttrue\n}}\n\nreason := \"{revision}\"\n"
        ),
    )])
    .with_revision(revision)
    .to_tar_gz()
    .unwrap()
}

fn is_exactly(decision: &EvalResponse, revision: &str, allowed: bool) -> bool {
    decision.allowed == allowed
        && decision.reason.as_deref() == Some(revision)
        && decision.policy_version.as_deref() == Some(revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_evaluations_during_reloads_each_see_exactly_one_policy() {
    let policy = Arc::new(RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap());
    let a = versioned("rev-a", true, false);
    let b = versioned("rev-b", false, false);
    policy.reload(&a).await.unwrap();

    let evaluators: Vec<_> = (0..4)
        .map(|_| {
            let policy = policy.clone();
            tokio::spawn(async move {
                let req = request(CALLER, "GET", "/hello/{name}");
                let mut seen = (0usize, 0usize);
                for _ in 0..150 {
                    let d = policy.evaluate(&req).await.unwrap();
                    if is_exactly(&d, "rev-a", true) {
                        seen.0 += 1;
                    } else if is_exactly(&d, "rev-b", false) {
                        seen.1 += 1;
                    } else {
                        panic!("a decision mixing two policies: {d:?}");
                    }
                }
                seen
            })
        })
        .collect();
    for i in 0..40 {
        policy
            .reload(if i % 2 == 0 { &b } else { &a })
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let mut total = (0, 0);
    for evaluator in evaluators {
        let (a, b) = evaluator.await.unwrap();
        total = (total.0 + a, total.1 + b);
    }
    assert_eq!(total.0 + total.1, 600);
    // The last reload installed rev-a: every later decision is rev-a's.
    let after = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(is_exactly(&after, "rev-a", true), "{after:?}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes, and corruptions of a valid archive, are refused without a panic and
    /// never replace the policy in force.
    #[test]
    fn garbage_bundles_never_replace_the_policy(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        flip in 0usize..4096,
        byte in any::<u8>(),
    ) {
        let rt = runtime();
        let policy = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
        rt.block_on(policy.reload(&bundle("rev-1", &[CALLER]).to_tar_gz().unwrap())).unwrap();

        prop_assert!(rt.block_on(policy.reload(&bytes)).is_err());
        prop_assert_eq!(policy.policy_version(), Some("rev-1".to_owned()));
        let mut corrupted = bundle("rev-2", &[]).to_tar_gz().unwrap();
        let at = flip % corrupted.len();
        corrupted[at] ^= byte | 1;
        // A flipped bit may still leave a readable archive: the gzip trailer's checksum is
        // not reached when the tar ends first, and an unsigned bundle has no other integrity
        // check (signed bundles do: every file's digest). Either way the engine answers with
        // one whole policy, or fails, which denies.
        let reloaded = rt.block_on(policy.reload(&corrupted)).is_ok();
        let decision = rt.block_on(policy.evaluate(&request(CALLER, "GET", "/hello/{name}")));
        if reloaded {
            // The manifest itself may be what the flip changed.
            if let Ok(decision) = decision {
                prop_assert_eq!(decision.policy_version.as_deref().map(str::to_owned), policy.policy_version());
            }
        } else {
            let decision = decision.unwrap();
            prop_assert!(decision.allowed);
            prop_assert_eq!(decision.policy_version.as_deref(), Some("rev-1"));
        }
    }

    /// Any module text either loads or is refused with an error naming a file.
    #[test]
    fn arbitrary_rego_loads_or_fails_with_a_file(source in "package ligand.authz\n\nimport rego.v1\n\n[ -~\n]{0,120}") {
        let archive = Bundle::new(vec![BundleFile::new("ligand/authz/policy.rego", source)])
            .to_tar_gz()
            .unwrap();
        let policy = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
        if let Err(error) = policy.load_bundle(&archive) {
            let message = error.to_string();
            prop_assert!(
                message.contains("policy.rego") || message.contains("allow rule") || message.contains("<policy>"),
                "{message}"
            );
        }
    }
}
