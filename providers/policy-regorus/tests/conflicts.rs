//! Data documents may not overlap rules: a `data.json` value at a rule's path would otherwise
//! replace the rule (a data file holding `{"ligand": {"authz": {"allow": true}}}` would allow
//! every request). As OPA does, a policy is refused when data lies at a rule's path or inside
//! it, or when a prefix of a rule's path holds a value that is not an object; on every load
//! path.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{CALLER, INTRUDER, bundle, request, write_folder};
use ligand_opa_bundle::{Bundle, BundleFile};
use ligand_policy_regorus::{LoadError, RegorusConfig, RegorusPolicy};
use ligand_runtime::PolicyEngine;

/// Allows only the caller, through a helper rule; `callers` and `roles` are unrelated data.
const POLICY: &str = r#"package ligand.authz

import rego.v1

default allow := false

allow if is_caller

is_caller if input.peer.workload == "spiffe://example.org/service/caller"

grants[role] := true if some role in data.roles

check(x) := x == 1
"#;

fn load_folder(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<RegorusPolicy, LoadError>) {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), files);
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path()));
    (dir, policy)
}

/// The conflict a folder of `POLICY` plus `data_files` is refused with: the rule, the data
/// path and the rule's file (relative to the folder).
fn refused(data_files: &[(&str, &str)]) -> (String, String, String) {
    let mut files = vec![("ligand/authz/policy.rego", POLICY)];
    files.extend_from_slice(data_files);
    let (dir, policy) = load_folder(&files);
    match policy {
        Err(LoadError::RuleDataConflict {
            rule, data, file, ..
        }) => {
            let file = std::path::Path::new(&file)
                .strip_prefix(dir.path())
                .map_or(file.clone(), |f| f.display().to_string());
            (rule, data, file)
        }
        Err(other) => panic!("{data_files:?}: refused for another reason: {other:?}"),
        Ok(policy) => {
            let decision = policy.evaluate_now(&request(INTRUDER, "GET", "/hello/{name}"));
            panic!("{data_files:?}: loaded; the intruder gets {decision:?}")
        }
    }
}

/// A conflict between `rule`, defined in `POLICY`, and data at `data`.
fn conflict(rule: &str, data: &str) -> (String, String, String) {
    (
        rule.to_owned(),
        data.to_owned(),
        "ligand/authz/policy.rego".to_owned(),
    )
}

#[test]
fn data_at_the_decision_path_is_refused() {
    // At the root, in a nested object.
    assert_eq!(
        refused(&[("data.json", r#"{"ligand": {"authz": {"allow": true}}}"#)]),
        conflict("data.ligand.authz.allow", "data.ligand.authz.allow")
    );
    // In the package's own folder.
    assert_eq!(
        refused(&[("ligand/authz/data.json", r#"{"allow": true}"#)]),
        conflict("data.ligand.authz.allow", "data.ligand.authz.allow")
    );
    // A document of its own at the rule's path, whatever its value.
    assert_eq!(
        refused(&[("ligand/authz/allow/data.json", "true")]),
        conflict("data.ligand.authz.allow", "data.ligand.authz.allow")
    );
}

#[test]
fn data_inside_a_rule_path_is_refused() {
    assert_eq!(
        refused(&[("ligand/authz/allow/data.json", r#"{"x": 1}"#)]),
        conflict("data.ligand.authz.allow", "data.ligand.authz.allow")
    );
    assert_eq!(
        refused(&[("ligand/authz/allow/x/data.json", r#"{}"#)]),
        conflict("data.ligand.authz.allow", "data.ligand.authz.allow")
    );
}

#[test]
fn a_value_at_a_prefix_of_a_rule_path_is_refused() {
    // `data.ligand.authz` as a value would hide the whole package.
    assert_eq!(
        refused(&[("ligand/data.json", r#"{"authz": true}"#)]),
        conflict("data.ligand.authz.allow", "data.ligand.authz")
    );
    assert_eq!(
        refused(&[("data.json", r#"{"ligand": [1, 2]}"#)]),
        conflict("data.ligand.authz.allow", "data.ligand")
    );
}

#[test]
fn data_under_another_rules_path_is_refused() {
    // A helper the decision depends on.
    assert_eq!(
        refused(&[("ligand/authz/data.json", r#"{"is_caller": true}"#)]),
        conflict("data.ligand.authz.is_caller", "data.ligand.authz.is_caller")
    );
    // A partial object rule owns every key below its path.
    assert_eq!(
        refused(&[("ligand/authz/grants/data.json", r#"{"admin": true}"#)]),
        conflict("data.ligand.authz.grants", "data.ligand.authz.grants")
    );
    // Functions too.
    assert_eq!(
        refused(&[("ligand/authz/data.json", r#"{"check": 1}"#)]),
        conflict("data.ligand.authz.check", "data.ligand.authz.check")
    );
    // Also the module the engine generates to read the decision.
    assert_eq!(
        refused(&[(
            "data.json",
            r#"{"ligand_decision__": {"decision": [[true], []]}}"#,
        )]),
        (
            "data.ligand_decision__.decision".to_owned(),
            "data.ligand_decision__.decision".to_owned(),
            "ligand:decision.rego".to_owned(),
        )
    );
}

#[test]
fn rule_paths_from_ref_heads_and_other_packages_are_checked() {
    let files = [
        ("ligand/authz/policy.rego", POLICY),
        (
            "lib/roles.rego",
            "package lib\n\nimport rego.v1\n\nroles.admin.members := [\"alice\"]\n",
        ),
        ("lib/data.json", r#"{"roles": {"admin": {"members": []}}}"#),
    ];
    let (_dir, policy) = load_folder(&files);
    match policy {
        Err(LoadError::RuleDataConflict {
            rule, data, file, ..
        }) => {
            assert_eq!(rule, "data.lib.roles.admin.members");
            assert_eq!(data, "data.lib.roles.admin.members");
            assert!(file.ends_with("lib/roles.rego"), "{file}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_error_names_both_paths() {
    let mut files = vec![("ligand/authz/policy.rego", POLICY)];
    files.push(("ligand/data.json", r#"{"authz": {"allow": true}}"#));
    let (_dir, policy) = load_folder(&files);
    let message = policy.unwrap_err().to_string();
    assert!(message.contains("data.ligand.authz.allow"), "{message}");
    assert!(message.contains("conflict"), "{message}");
    assert!(message.contains("policy.rego"), "{message}");
}

#[tokio::test]
async fn unrelated_data_still_loads() {
    let (_dir, policy) = load_folder(&[
        ("ligand/authz/policy.rego", POLICY),
        // Next to the rules, in the package's object.
        (
            "ligand/authz/data.json",
            r#"{"callers": ["x"], "limits": {"a": 1}}"#,
        ),
        // Beside the package.
        ("ligand/data.json", r#"{"other": {"authz_like": true}}"#),
        // Read by the policy.
        ("roles/data.json", r#"["admin", "reader"]"#),
        ("data.json", r#"{"elsewhere": {"allow": true}}"#),
    ]);
    let policy = policy.unwrap();
    assert!(
        policy
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !policy
            .evaluate(&request(INTRUDER, "GET", "/hello/{name}"))
            .await
            .unwrap()
            .allowed
    );
}

/// A bundle of the standard policy whose data also sets `data.ligand.authz.allow`.
fn overriding_bundle(revision: &str) -> Bundle {
    Bundle::new(vec![
        BundleFile::new("ligand/authz/policy.rego", common::policy(revision)),
        BundleFile::new("authz/data.json", common::data(&[CALLER])),
        BundleFile::new("ligand/authz/data.json", r#"{"allow": true}"#),
    ])
    .with_revision(revision)
}

fn assert_conflict(error: &LoadError) {
    assert!(
        matches!(error, LoadError::RuleDataConflict { rule, data, file, .. }
            if rule == "data.ligand.authz.allow"
                && data == "data.ligand.authz.allow"
                && file == "ligand/authz/policy.rego"),
        "{error:?}"
    );
}

#[test]
fn a_bundle_file_with_overlapping_data_is_refused_at_construction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.tar.gz");
    std::fs::write(&path, overriding_bundle("rev-x").to_tar_gz().unwrap()).unwrap();
    let error = RegorusPolicy::new(&RegorusConfig::bundle(&path)).unwrap_err();
    assert_conflict(&error);
}

#[tokio::test]
async fn reloads_with_overlapping_data_are_refused_and_keep_the_policy() {
    let policy = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
    policy
        .reload(&bundle("rev-1", &[CALLER]).to_tar_gz().unwrap())
        .await
        .unwrap();

    // Through the engine's reload (the bundle fetcher's path).
    let error = policy
        .reload(&overriding_bundle("rev-2").to_tar_gz().unwrap())
        .await
        .expect_err("overlapping data must be refused");
    let load = std::error::Error::source(&error)
        .and_then(|s| s.downcast_ref::<LoadError>())
        .expect("a LoadError");
    assert_conflict(load);

    // Through load_bundle and load_folder.
    assert_conflict(
        &policy
            .load_bundle(&overriding_bundle("rev-3").to_tar_gz().unwrap())
            .unwrap_err(),
    );
    let dir = tempfile::tempdir().unwrap();
    write_folder(
        dir.path(),
        &[
            ("ligand/authz/policy.rego", &common::policy("rev-4")),
            ("ligand/authz/data.json", r#"{"allow": true}"#),
        ],
    );
    assert!(matches!(
        policy.load_folder(dir.path()),
        Err(LoadError::RuleDataConflict { .. })
    ));

    // The first policy is still in force.
    let intruder = policy
        .evaluate(&request(INTRUDER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(!intruder.allowed);
    assert_eq!(intruder.policy_version.as_deref(), Some("rev-1"));
}
