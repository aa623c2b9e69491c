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
    assert!(matches!(error, CaError::KeyReadable { .. }), "{error:?}");
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

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn state_directory_writable_by_others_is_refused() {
    for mode in [0o770, 0o702, 0o777, 0o1777] {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(domain(), dir.path()).unwrap();
        chmod(dir.path(), mode);
        let error = LocalCa::load_or_create(domain(), dir.path()).unwrap_err();
        assert!(
            matches!(error, CaError::Writable { ref path, .. } if path == dir.path()),
            "{mode:o}: {error:?}"
        );
        // Nor is a new CA created in such a directory.
        let fresh = tempfile::tempdir().unwrap();
        chmod(fresh.path(), mode);
        let error = LocalCa::load_or_create(domain(), fresh.path()).unwrap_err();
        assert!(matches!(error, CaError::Writable { .. }), "{error:?}");
        assert!(!fresh.path().join("ca.key.pem").exists());
    }
}

#[test]
fn key_or_certificate_writable_or_readable_by_others_is_refused() {
    for (file, mode) in [
        ("ca.key.pem", 0o640),
        ("ca.key.pem", 0o604),
        ("ca.key.pem", 0o620),
        ("ca.pem", 0o664),
        ("ca.pem", 0o646),
    ] {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(domain(), dir.path()).unwrap();
        let path = dir.path().join(file);
        chmod(&path, mode);
        let error = LocalCa::load_or_create(domain(), dir.path()).unwrap_err();
        let ok = match &error {
            CaError::Writable { path: p, .. } => *p == path && mode & 0o022 != 0,
            CaError::KeyReadable { path: p, .. } => *p == path && mode & 0o044 != 0,
            _ => false,
        };
        assert!(ok, "{file} {mode:o}: {error:?}");
    }
    // The certificate is public: readable by others is fine.
    let dir = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(domain(), dir.path()).unwrap();
    chmod(&dir.path().join("ca.pem"), 0o644);
    LocalCa::load_or_create(domain(), dir.path()).unwrap();
}

#[test]
fn symlinked_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(domain(), elsewhere.path()).unwrap();
    LocalCa::load_or_create(domain(), dir.path()).unwrap();
    let key = dir.path().join("ca.key.pem");
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("ca.key.pem"), &key).unwrap();
    std::fs::copy(elsewhere.path().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
    let error = LocalCa::load_or_create(domain(), dir.path()).unwrap_err();
    assert!(
        matches!(error, CaError::Symlink(ref p) if *p == key),
        "{error:?}"
    );
}

#[test]
fn files_owned_by_another_user_are_refused() {
    let own = rustix::process::geteuid().as_raw();
    let stranger = if own == 0 { 4242 } else { own + 1 };
    for file in ["", "ca.key.pem", "ca.pem"] {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(domain(), dir.path()).unwrap();
        let path = dir.path().join(file);
        if std::os::unix::fs::chown(&path, Some(stranger), None).is_err() {
            println!("skipped: changing a file's owner needs root (running as uid {own})");
            return;
        }
        let path = if file.is_empty() {
            dir.path().to_owned()
        } else {
            path
        };
        let error = LocalCa::load_or_create(domain(), dir.path()).unwrap_err();
        assert!(
            matches!(error, CaError::NotOwned { path: ref p, owner, .. } if *p == path && owner == stranger),
            "{file}: {error:?}"
        );
    }
}

#[test]
fn root_path_and_foreign_ids_are_not_issued() {
    let ca = LocalCa::ephemeral(domain()).unwrap();
    for id in ["spiffe://example.org", "spiffe://other.org/service/a"] {
        let error = ca
            .issue(&SpiffeId::new(id).unwrap(), Duration::from_secs(60))
            .unwrap_err();
        assert!(
            matches!(error, CaError::NotIssuable { .. }),
            "{id}: {error:?}"
        );
    }
}
