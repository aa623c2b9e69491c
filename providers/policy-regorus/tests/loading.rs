//! Loading from folders and bundles, the decision contract, and every load and evaluation
//! failure.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{CALLER, INTRUDER, bundle, data, policy, request, write_folder};
use ligand_opa_bundle::{Bundle, BundleFile};
use ligand_policy_regorus::{EvalError, LoadError, RegorusConfig, RegorusPolicy};
use ligand_runtime::PolicyEngine;

fn folder_policy(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<RegorusPolicy, LoadError>) {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), files);
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path()));
    (dir, policy)
}

fn single_module(source: &str) -> RegorusPolicy {
    let (_dir, policy) = folder_policy(&[("authz/policy.rego", source)]);
    policy.unwrap()
}

#[tokio::test]
async fn folder_policy_allows_denies_and_gives_reasons() {
    let (_dir, policy) = folder_policy(&[
        ("ligand/authz/policy.rego", &policy("dev")),
        ("authz/data.json", &data(&[CALLER])),
    ]);
    let policy = policy.unwrap();
    let allowed = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(allowed.allowed);
    assert_eq!(allowed.reason.as_deref(), Some("dev: allowed"));
    // A folder without a manifest has no revision.
    assert_eq!(allowed.policy_version, None);

    let denied = policy
        .evaluate(&request(INTRUDER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(
        denied.reason.as_deref(),
        Some("dev: spiffe://example.org/service/intruder may not GET /hello/{name}")
    );
    let other_action = policy
        .evaluate(&request(CALLER, "DELETE", "/hello/{name}"))
        .await
        .unwrap();
    assert!(!other_action.allowed);
}

#[tokio::test]
async fn folder_manifest_gives_the_revision() {
    let (_dir, policy) = folder_policy(&[
        ("ligand/authz/policy.rego", &policy("dev")),
        ("authz/data.json", &data(&[CALLER])),
        (".manifest", r#"{"revision": "folder-3"}"#),
    ]);
    let policy = policy.unwrap();
    assert_eq!(policy.policy_version().as_deref(), Some("folder-3"));
    let decision = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert_eq!(decision.policy_version.as_deref(), Some("folder-3"));
}

#[tokio::test]
async fn bundle_file_loads_with_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.tar.gz");
    std::fs::write(&path, bundle("rev-1", &[CALLER]).to_tar_gz().unwrap()).unwrap();
    let policy = RegorusPolicy::new(&RegorusConfig::bundle(&path)).unwrap();
    let decision = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.policy_version.as_deref(), Some("rev-1"));
    assert_eq!(decision.reason.as_deref(), Some("rev-1: allowed"));
}

#[tokio::test]
async fn reload_reports_the_new_revision_in_every_decision() {
    let policy = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
    assert!(!policy.is_loaded());
    policy
        .reload(&bundle("rev-1", &[CALLER]).to_tar_gz().unwrap())
        .await
        .unwrap();
    policy
        .reload(&bundle("rev-2", &[INTRUDER]).to_tar_gz().unwrap())
        .await
        .unwrap();
    let caller = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    let intruder = policy
        .evaluate(&request(INTRUDER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(!caller.allowed);
    assert!(intruder.allowed);
    assert_eq!(caller.policy_version.as_deref(), Some("rev-2"));
    assert_eq!(intruder.policy_version.as_deref(), Some("rev-2"));
}

#[tokio::test]
async fn the_input_document_is_the_serialized_request() {
    // The reason echoes the whole input back.
    let policy = single_module(
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n\nreason := json.marshal(input)\n",
    );
    let mut req = request(CALLER, "GET", "/hello/{name}");
    req.chain.insert(
        0,
        ligand_runtime::Link::default()
            .with_user("alice@example.org")
            .with_device("device-1"),
    );
    // As the pipeline builds it: the mTLS peer verified, a hand-built link not.
    req.chain.links_mut()[1].verified = true;
    req.peer.verified = true;
    let decision = policy.evaluate(&req).await.unwrap();
    let seen: serde_json::Value =
        serde_json::from_str(decision.reason.as_deref().unwrap()).unwrap();
    assert_eq!(seen, serde_json::to_value(&req).unwrap());
    assert_eq!(
        seen,
        serde_json::json!({
            "chain": [
                {"user": "alice@example.org", "device": "device-1", "verified": false},
                {"workload": CALLER, "verified": true}
            ],
            "peer": {"workload": CALLER, "verified": true},
            "resource": {"kind": "http.path", "value": "/hello/{name}"},
            "action": {"name": "GET"},
            "request": {"method": "GET", "path": "/hello/ada", "params": {"name": "ada"}},
            "service": common::SERVICE
        })
    );
}

#[tokio::test]
async fn undefined_allow_denies_without_error() {
    let policy = single_module(
        "package ligand.authz\n\nimport rego.v1\n\nallow if input.action.name == \"nope\"\n",
    );
    let decision = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.reason, None);
}

#[tokio::test]
async fn anything_but_boolean_true_denies() {
    for value in ["\"true\"", "1", "[true]", "{\"a\": true}", "null", "false"] {
        let policy = single_module(&format!(
            "package ligand.authz\n\nimport rego.v1\n\nallow := {value}\n"
        ));
        let decision = policy
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await
            .unwrap();
        assert!(!decision.allowed, "allow := {value} must deny");
    }
    // A partial set rule named allow holding `true` is a set, not `true`.
    let policy = single_module(
        "package ligand.authz\n\nimport rego.v1\n\nallow contains true if input.peer\n",
    );
    assert!(
        !policy
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn non_string_reason_is_reported_as_json() {
    let policy = single_module(
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n\nreason := {\"code\": 7}\n",
    );
    let decision = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    let reason: serde_json::Value = serde_json::from_str(&decision.reason.unwrap()).unwrap();
    assert_eq!(reason, serde_json::json!({"code": 7}));
}

fn assert_eval_error(
    result: Result<ligand_runtime::EvalResponse, ligand_runtime::ProviderError>,
    needle: &str,
) {
    let error = result.expect_err("evaluation must fail");
    let source = std::error::Error::source(&error).expect("source");
    let eval = source.downcast_ref::<EvalError>().expect("an EvalError");
    assert!(matches!(eval, EvalError::Rego(_)), "{eval:?}");
    assert!(eval.to_string().contains(needle), "{eval}");
}

#[tokio::test]
async fn conflicting_allow_values_are_an_evaluation_error() {
    let policy = single_module(
        "package ligand.authz\n\nimport rego.v1\n\nallow := true if input.peer.workload\n\nallow := false if input.action.name == \"GET\"\n",
    );
    assert_eval_error(
        policy
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await,
        "conflict",
    );
    // Without the conflict the same policy decides.
    assert!(
        policy
            .evaluate(&request(CALLER, "POST", "/hello/{name}"))
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn builtin_errors_are_evaluation_errors() {
    let policy = single_module(
        "package ligand.authz\n\nimport rego.v1\n\nallow if to_number(input.action.name) > 1\n",
    );
    assert_eval_error(
        policy
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await,
        "number",
    );
}

#[tokio::test]
async fn the_time_limit_stops_a_runaway_policy() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(
        dir.path(),
        &[(
            "authz/policy.rego",
            "package ligand.authz\n\nimport rego.v1\n\nallow if count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000); x == y]) < 0\n",
        )],
    );
    let mut config = RegorusConfig::folder(dir.path());
    config.eval_time_limit_ms = 20;
    let policy = RegorusPolicy::new(&config).unwrap();
    let error = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .expect_err("the time limit must stop the evaluation");
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("time limit"), "{source}");
}

#[test]
fn invalid_rego_in_a_folder_names_the_file_and_line() {
    let (dir, policy) = folder_policy(&[
        ("ligand/authz/policy.rego", &policy("dev")),
        (
            "ligand/authz/broken.rego",
            "package ligand.authz\n\nimport rego.v1\n\nbroken if {\n\tinput.x ==\n}\n",
        ),
    ]);
    let error = policy.expect_err("bad Rego must fail init");
    let LoadError::Rego { file, line, .. } = &error else {
        panic!("{error:?}");
    };
    let expected = dir.path().join("ligand/authz/broken.rego");
    assert_eq!(file, &expected.display().to_string());
    assert_eq!(*line, Some(7));
    let message = error.to_string();
    assert!(message.contains("broken.rego"), "{message}");
    assert!(message.contains("line 7"), "{message}");
}

#[test]
fn unsafe_rego_is_refused_at_load_with_its_location() {
    let (_dir, policy) = folder_policy(&[(
        "authz/policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow if y == 1\n",
    )]);
    let error = policy.expect_err("unsafe variables must fail the load");
    assert!(
        matches!(&error, LoadError::Rego { file, line: Some(5), .. } if file.ends_with("authz/policy.rego")),
        "{error:?}"
    );
}

#[tokio::test]
async fn reload_with_bad_rego_names_the_bundle_file_and_keeps_the_old_policy() {
    let policy = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
    policy
        .reload(&bundle("rev-1", &[CALLER]).to_tar_gz().unwrap())
        .await
        .unwrap();
    let broken = Bundle::new(vec![BundleFile::new(
        "ligand/authz/policy.rego",
        "package ligand.authz\n\nallow if {\n",
    )])
    .with_revision("rev-2");
    let error = policy
        .reload(&broken.to_tar_gz().unwrap())
        .await
        .expect_err("bad Rego must be refused");
    let load = std::error::Error::source(&error)
        .and_then(|s| s.downcast_ref::<LoadError>())
        .expect("a LoadError");
    assert!(
        matches!(load, LoadError::Rego { file, line: Some(_), .. } if file == "ligand/authz/policy.rego"),
        "{load:?}"
    );
    let decision = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.policy_version.as_deref(), Some("rev-1"));
}

#[test]
fn a_policy_without_the_allow_rule_is_refused() {
    let (_dir, policy) = folder_policy(&[(
        "authz/policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\npermit := true\n",
    )]);
    assert!(
        matches!(policy, Err(LoadError::MissingAllowRule(rule)) if rule == "data.ligand.authz.allow")
    );
    let (_dir, empty) = folder_policy(&[("authz/data.json", "{}")]);
    assert!(matches!(empty, Err(LoadError::NoModules)), "{empty:?}");
}

#[tokio::test]
async fn rule_paths_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(
        dir.path(),
        &[(
            "acme/policy.rego",
            "package acme.access\n\nimport rego.v1\n\npermit if input.peer.workload == \"spiffe://example.org/service/caller\"\n\nwhy := \"custom\"\n",
        )],
    );
    let config = RegorusConfig::folder(dir.path())
        .with_rules("data.acme.access.permit", "data.acme.access.why");
    let policy = RegorusPolicy::new(&config).unwrap();
    let decision = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.reason.as_deref(), Some("custom"));
    // The default rule does not exist in this policy.
    assert!(matches!(
        RegorusPolicy::new(&RegorusConfig::folder(dir.path())),
        Err(LoadError::MissingAllowRule(_))
    ));
}

#[test]
fn inconsistent_configuration_is_refused() {
    let mut both = RegorusConfig::folder("policy");
    both.bundle = Some("bundle.tar.gz".into());
    assert!(matches!(
        RegorusPolicy::new(&both),
        Err(LoadError::Config(_))
    ));

    let bad_rule = RegorusConfig::awaiting_bundle().with_rules("data.x\nallow := true", "data.y");
    assert!(matches!(
        RegorusPolicy::new(&bad_rule),
        Err(LoadError::Config(_))
    ));

    let mut required = RegorusConfig::awaiting_bundle();
    required.signing.required = Some(true);
    assert!(matches!(
        RegorusPolicy::new(&required),
        Err(LoadError::Config(_))
    ));

    let missing = RegorusConfig::folder("/nonexistent/ligand/policy");
    assert!(matches!(
        RegorusPolicy::new(&missing),
        Err(LoadError::Bundle(_))
    ));
    let missing = RegorusConfig::bundle("/nonexistent/ligand/bundle.tar.gz");
    assert!(matches!(
        RegorusPolicy::new(&missing),
        Err(LoadError::Io { .. })
    ));
}

#[test]
fn configuration_deserializes_with_defaults() {
    let config: RegorusConfig =
        serde_json::from_value(serde_json::json!({"folder": "policy"})).unwrap();
    assert_eq!(config, RegorusConfig::folder("policy"));
    assert_eq!(config.reason_rule, "data.ligand.authz.reason");
    assert!(!config.signing.is_required());
    assert!(serde_json::from_value::<RegorusConfig>(serde_json::json!({"folders": "x"})).is_err());
}

#[tokio::test]
async fn no_policy_and_closed_engine_fail_closed() {
    let empty = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
    assert!(
        empty
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await
            .is_err()
    );
    assert!(matches!(
        empty.evaluate_now(&request(CALLER, "GET", "/hello/{name}")),
        Err(EvalError::NoPolicy)
    ));

    let policy = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
    policy
        .reload(&bundle("rev-1", &[CALLER]).to_tar_gz().unwrap())
        .await
        .unwrap();
    policy.close().await.unwrap();
    assert!(
        policy
            .evaluate(&request(CALLER, "GET", "/hello/{name}"))
            .await
            .is_err()
    );
    assert!(matches!(
        policy.evaluate_now(&request(CALLER, "GET", "/hello/{name}")),
        Err(EvalError::Closed)
    ));
    assert!(matches!(
        policy
            .reload(&bundle("rev-2", &[CALLER]).to_tar_gz().unwrap())
            .await,
        Err(ligand_runtime::ProviderError::Closed)
    ));
}
