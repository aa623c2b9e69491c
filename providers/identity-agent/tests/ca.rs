//! The CA persisted to a state directory.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ligand_identity_agent::{CaError, LocalCa};
use ligand_runtime::{SpiffeId, TrustBundles, TrustDomain};
use rustls_pki_types::UnixTime;

fn domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

#[test]
fn persisted_ca_is_reloaded_with_private_key_0600() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = LocalCa::load_or_create(domain(), &state).unwrap();
    let key_mode = std::fs::metadata(state.join("ca.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let second = LocalCa::load_or_create(domain(), &state).unwrap();
    assert_eq!(first.root(), second.root(), "same trust root after restart");
    // SVIDs issued after the restart chain to the original root.
    let id = SpiffeId::new("spiffe://example.org/a").unwrap();
    let issued = second.issue(&id, Duration::from_secs(60)).unwrap();
    let bundles = TrustBundles::new().with(domain(), vec![first.root().clone()]);
    let verified = ligand_runtime::tls::verify_svid(
        &issued.svid.cert_chain[0],
        &[],
        &bundles,
        UnixTime::now(),
    )
    .unwrap();
    assert_eq!(verified, id);
}

#[test]
fn readable_private_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(domain(), dir.path()).unwrap();
    let key = dir.path().join("ca.key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = LocalCa::load_or_create(domain(), dir.path()).unwrap_err();
    assert!(matches!(error, CaError::Invalid { .. }), "{error:?}");
}

#[test]
fn mismatched_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(domain(), dir.path()).unwrap();
    LocalCa::load_or_create(domain(), other.path()).unwrap();
    std::fs::copy(other.path().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
    let error = LocalCa::load_or_create(domain(), dir.path()).unwrap_err();
    assert!(matches!(error, CaError::Invalid { .. }), "{error:?}");
}

#[test]
fn ttl_is_honoured_down_to_seconds() {
    let ca = LocalCa::ephemeral(domain()).unwrap();
    let id = SpiffeId::new("spiffe://example.org/a").unwrap();
    let issued = ca.issue(&id, Duration::from_secs(2)).unwrap();
    let lifetime = issued
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(lifetime <= Duration::from_secs(2) && lifetime > Duration::from_secs(1));
}
