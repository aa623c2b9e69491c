//! The per-user development folder: one CA per trust domain shared by every process, and
//! client credentials for callers outside any service.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ligand_identity_agent::{CaError, DevDir};
use ligand_runtime::{SpiffeId, TrustBundles, TrustDomain};
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;

fn domain() -> TrustDomain {
    TrustDomain::new("ligand.local").unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn services_starting_at_once_share_one_ca() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevDir::new(dir.path().join("dev"));
    let roots: Vec<_> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| dev.ca(&domain()).unwrap().root().clone()))
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(roots.iter().all(|root| root == &roots[0]), "one trust root");
    assert_eq!(mode(&dir.path().join("dev")), 0o700);
    assert_eq!(mode(&dir.path().join("dev/ligand.local")), 0o700);
    assert_eq!(mode(&dir.path().join("dev/ligand.local/ca.key.pem")), 0o600);
}

#[test]
fn a_ca_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevDir::new(dir.path());
    dev.ca(&domain()).unwrap();
    let key = dir.path().join("ligand.local/ca.key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let error = dev.ca(&domain()).unwrap_err();
    assert!(matches!(error, CaError::KeyReadable { .. }), "{error:?}");
    assert!(error.to_string().contains("ca.key.pem"), "{error}");
}

#[test]
fn loopback_names_keep_the_svid_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevDir::new(dir.path()).ca(&domain()).unwrap();
    let id = SpiffeId::new("spiffe://ligand.local/service/hello").unwrap();
    let issued = ca.issue_for_loopback(&id, Duration::from_secs(60)).unwrap();
    let bundles = TrustBundles::new().with(domain(), vec![ca.root().clone()]);
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
fn caller_credentials_are_private_reused_and_renewed_with_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevDir::new(dir.path());
    let ca = dev.ca(&domain()).unwrap();
    let ttl = Duration::from_secs(24 * 3600);
    let first = dev.write_caller(&ca, "dev", ttl).unwrap();
    assert_eq!(
        first.spiffe_id.to_string(),
        "spiffe://ligand.local/user/dev"
    );
    assert_eq!(mode(&first.key), 0o600);
    assert_eq!(mode(&first.cert), 0o600);
    let cert = std::fs::read(&first.cert).unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&cert).unwrap();
    let bundles = TrustBundles::new().with(domain(), vec![ca.root().clone()]);
    let verified = ligand_runtime::tls::verify_svid(&der, &[], &bundles, UnixTime::now()).unwrap();
    assert_eq!(verified, first.spiffe_id);
    assert_eq!(
        std::fs::read_to_string(&first.bundle).unwrap(),
        ca.root_pem()
    );

    // Still valid for more than half its lifetime: kept.
    dev.write_caller(&ca, "dev", ttl).unwrap();
    assert_eq!(std::fs::read(&first.cert).unwrap(), cert);
    // Asked to last longer than twice what is left: renewed.
    dev.write_caller(&ca, "dev", 3 * ttl).unwrap();
    assert_ne!(std::fs::read(&first.cert).unwrap(), cert);

    // Another CA (the folder was reset): renewed, with the new bundle.
    let other = DevDir::new(tempfile::tempdir().unwrap().path())
        .ca(&domain())
        .unwrap();
    dev.write_caller(&other, "dev", ttl).unwrap();
    assert_eq!(
        std::fs::read_to_string(&first.bundle).unwrap(),
        other.root_pem()
    );
}

#[test]
fn caller_names_are_one_path_segment() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevDir::new(dir.path());
    let ca = dev.ca(&domain()).unwrap();
    for name in ["", "..", "a/b", "a b"] {
        let error = dev.write_caller(&ca, name, Duration::from_secs(60));
        assert!(
            matches!(error, Err(CaError::NotIssuable { .. })),
            "{name:?}: {error:?}"
        );
    }
}

#[test]
fn curl_lines_name_what_the_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevDir::new(dir.path().join("with space"));
    let ca = dev.ca(&domain()).unwrap();
    let creds = dev
        .write_caller(&ca, "dev", Duration::from_secs(60))
        .unwrap();
    let line = creds.curl_command("127.0.0.1:8443".parse().unwrap(), "/hello/world");
    assert!(line.starts_with("curl --cacert '"), "{line}");
    assert!(
        line.ends_with(" https://127.0.0.1:8443/hello/world"),
        "{line}"
    );
    let line = creds.curl_command("0.0.0.0:8443".parse().unwrap(), "/");
    assert!(line.ends_with(" https://127.0.0.1:8443/"), "{line}");
    let line = creds.curl_command("10.1.2.3:9000".parse().unwrap(), "x");
    assert!(
        line.ends_with(" --resolve localhost:9000:10.1.2.3 https://localhost:9000/x"),
        "{line}"
    );
}
