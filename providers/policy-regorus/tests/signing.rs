//! Signed bundles: ES256 and RS256 keys from configuration, and every way a bundle's signature
//! can fail, each leaving the previous policy in force.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{CALLER, INTRUDER, Keys, bundle, request, write_folder};
use ligand_opa_bundle::{Bundle, BundleFile, SignatureError};
use ligand_policy_regorus::{LoadError, RegorusConfig, RegorusPolicy, SigningConfig};
use ligand_runtime::PolicyEngine;

/// An engine verifying with `keys`, already running the policy of revision `rev-1` that
/// allows the caller.
async fn engine_with(keys: &Keys) -> RegorusPolicy {
    let config =
        RegorusConfig::awaiting_bundle().with_signing(SigningConfig::keys([keys.config.clone()]));
    let policy = RegorusPolicy::new(&config).unwrap();
    policy
        .reload(&keys.sign(bundle("rev-1", &[CALLER])))
        .await
        .unwrap();
    policy
}

/// The reload error's signature failure.
async fn rejected(policy: &RegorusPolicy, archive: &[u8]) -> SignatureError {
    let error = policy.reload(archive).await.expect_err("must be refused");
    let load = std::error::Error::source(&error)
        .and_then(|s| s.downcast_ref::<LoadError>())
        .expect("a LoadError");
    assert!(error.to_string().contains("rejected"), "{error}");
    match load {
        LoadError::Signature(signature) => signature.clone(),
        other => panic!("not a signature error: {other:?}"),
    }
}

/// The previous policy (rev-1, caller allowed) is still the one deciding.
async fn assert_previous_policy(policy: &RegorusPolicy) {
    let caller = policy
        .evaluate(&request(CALLER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    let intruder = policy
        .evaluate(&request(INTRUDER, "GET", "/hello/{name}"))
        .await
        .unwrap();
    assert!(caller.allowed);
    assert!(!intruder.allowed);
    assert_eq!(caller.policy_version.as_deref(), Some("rev-1"));
}

/// A bundle that would let the intruder in, for the failure cases.
fn takeover() -> Bundle {
    bundle("rev-2", &[INTRUDER])
}

#[tokio::test]
async fn es256_signed_bundle_loads() {
    let keys = Keys::es256("bundle-key");
    let policy = engine_with(&keys).await;
    assert_previous_policy(&policy).await;
    policy.reload(&keys.sign(takeover())).await.unwrap();
    assert_eq!(policy.policy_version().as_deref(), Some("rev-2"));
}

#[tokio::test]
async fn rs256_key_from_a_pem_file_verifies() {
    let keys = Keys::rs256("rsa-key");
    let policy = engine_with(&keys).await;
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn signed_bundle_file_loads_at_construction() {
    let keys = Keys::es256("k");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.tar.gz");
    std::fs::write(&path, keys.sign(bundle("rev-9", &[CALLER]))).unwrap();
    let config =
        RegorusConfig::bundle(&path).with_signing(SigningConfig::keys([keys.config.clone()]));
    assert_eq!(
        RegorusPolicy::new(&config)
            .unwrap()
            .policy_version()
            .as_deref(),
        Some("rev-9")
    );
    // Unsigned at construction: init fails.
    std::fs::write(&path, bundle("rev-9", &[CALLER]).to_tar_gz().unwrap()).unwrap();
    assert!(matches!(
        RegorusPolicy::new(&config),
        Err(LoadError::Signature(SignatureError::Unsigned))
    ));
}

#[tokio::test]
async fn unsigned_bundle_is_refused_when_keys_are_configured() {
    let keys = Keys::es256("k");
    let policy = engine_with(&keys).await;
    let unsigned = takeover().to_tar_gz().unwrap();
    assert_eq!(rejected(&policy, &unsigned).await, SignatureError::Unsigned);
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn tampered_file_is_refused() {
    let keys = Keys::es256("k");
    let policy = engine_with(&keys).await;
    // Signed as rev-1 with the caller, then the data is swapped for the intruder.
    let original = bundle("rev-1", &[CALLER]);
    let signatures = keys.signing.sign(&original, None).unwrap();
    let tampered = Bundle::new(vec![
        original.files()[0].clone(),
        BundleFile::new("authz/data.json", common::data(&[INTRUDER])),
    ])
    .with_revision("rev-1")
    .with_signatures(signatures);
    assert_eq!(
        rejected(&policy, &tampered.to_tar_gz().unwrap()).await,
        SignatureError::DigestMismatch("authz/data.json".into())
    );
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn added_file_is_refused() {
    let keys = Keys::es256("k");
    let policy = engine_with(&keys).await;
    let original = bundle("rev-1", &[CALLER]);
    let signatures = keys.signing.sign(&original, None).unwrap();
    let mut files = original.files().to_vec();
    files.push(BundleFile::new(
        "ligand/authz/backdoor.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow if input.peer.workload == \"spiffe://example.org/service/intruder\"\n",
    ));
    let added = Bundle::new(files)
        .with_revision("rev-1")
        .with_signatures(signatures);
    assert_eq!(
        rejected(&policy, &added.to_tar_gz().unwrap()).await,
        SignatureError::FileNotSigned("ligand/authz/backdoor.rego".into())
    );
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn signature_by_another_key_under_a_known_id_is_refused() {
    let keys = Keys::es256("k");
    let policy = engine_with(&keys).await;
    let impostor = Keys::es256("k");
    let error = rejected(&policy, &impostor.sign(takeover())).await;
    assert!(
        matches!(error, SignatureError::BadSignature { ref key, .. } if key == "k"),
        "{error:?}"
    );
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn rsa_signature_for_an_es256_key_is_refused() {
    let keys = Keys::es256("k");
    let policy = engine_with(&keys).await;
    let rsa = Keys::rs256("k");
    let error = rejected(&policy, &rsa.sign(takeover())).await;
    assert!(
        matches!(error, SignatureError::BadSignature { .. }),
        "{error:?}"
    );
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn unknown_key_id_is_refused() {
    let keys = Keys::es256("k");
    let policy = engine_with(&keys).await;
    let other = Keys::es256("someone-else");
    assert_eq!(
        rejected(&policy, &other.sign(takeover())).await,
        SignatureError::UnknownKey("someone-else".into())
    );
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn wrong_scope_is_refused() {
    let keys = Keys::es256("k");
    let config = RegorusConfig::awaiting_bundle()
        .with_signing(SigningConfig::keys([keys.config.clone()]).with_scope("accounts"));
    let policy = RegorusPolicy::new(&config).unwrap();
    let scoped = |scope: &str, b: Bundle| {
        let s = keys.signing.sign(&b, Some(scope)).unwrap();
        b.with_signatures(s).to_tar_gz().unwrap()
    };
    policy
        .reload(&scoped("accounts", bundle("rev-1", &[CALLER])))
        .await
        .unwrap();
    let error = rejected(&policy, &scoped("transfers", takeover())).await;
    assert!(
        matches!(error, SignatureError::ScopeMismatch { .. }),
        "{error:?}"
    );
    assert_previous_policy(&policy).await;
}

#[tokio::test]
async fn optional_signatures_accept_unsigned_but_still_check_signed_bundles() {
    let keys = Keys::es256("k");
    let mut signing = SigningConfig::keys([keys.config.clone()]);
    signing.required = Some(false);
    let policy =
        RegorusPolicy::new(&RegorusConfig::awaiting_bundle().with_signing(signing)).unwrap();
    policy
        .reload(&bundle("rev-1", &[CALLER]).to_tar_gz().unwrap())
        .await
        .unwrap();
    let error = rejected(&policy, &Keys::es256("k").sign(takeover())).await;
    assert!(
        matches!(error, SignatureError::BadSignature { .. }),
        "{error:?}"
    );
    assert_previous_policy(&policy).await;
}

#[test]
fn a_policy_folder_is_verified_like_a_bundle() {
    let keys = Keys::es256("k");
    let dir = tempfile::tempdir().unwrap();
    write_folder(
        dir.path(),
        &[
            ("ligand/authz/policy.rego", &common::policy("dev")),
            ("authz/data.json", &common::data(&[CALLER])),
        ],
    );
    let config =
        RegorusConfig::folder(dir.path()).with_signing(SigningConfig::keys([keys.config.clone()]));
    assert!(matches!(
        RegorusPolicy::new(&config),
        Err(LoadError::Signature(SignatureError::Unsigned))
    ));
}

#[test]
fn unusable_keys_are_configuration_errors() {
    let mut key = Keys::es256("k").config;
    key.pem = Some("not a key".into());
    let config = RegorusConfig::awaiting_bundle().with_signing(SigningConfig::keys([key.clone()]));
    assert!(matches!(
        RegorusPolicy::new(&config),
        Err(LoadError::Config(_))
    ));

    key.algorithm = "HS256".into();
    let config = RegorusConfig::awaiting_bundle().with_signing(SigningConfig::keys([key.clone()]));
    assert!(
        matches!(RegorusPolicy::new(&config), Err(LoadError::Config(m)) if m.contains("HS256"))
    );

    key.pem = None;
    let config = RegorusConfig::awaiting_bundle().with_signing(SigningConfig::keys([key]));
    assert!(
        matches!(RegorusPolicy::new(&config), Err(LoadError::Config(m)) if m.contains("exactly one"))
    );
}
