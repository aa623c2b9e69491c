//! The `ligand-bundle-server` binary as a real process: PEM identity files, a policy
//! repository, a loopback port, one mTLS fetch, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ligand_runtime::testkit::PeerClient;
use ligand_runtime::{SpiffeId, TrustBundles, X509Context, X509Svid};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

struct Leaf {
    pem: String,
    key_pem: String,
    svid: X509Svid,
}

fn ca() -> (CertificateParams, KeyPair, rcgen::Certificate) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert)
}

fn leaf(ca: &(CertificateParams, KeyPair, rcgen::Certificate), id: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.0, &ca.1))
        .unwrap();
    Leaf {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        svid: X509Svid {
            spiffe_id: SpiffeId::new(id).unwrap(),
            cert_chain: vec![cert.der().clone()],
            private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        },
    }
}

fn write(root: &Path, path: &str, body: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

#[tokio::test]
async fn the_binary_serves_a_bundle_over_mtls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca = ca();
    let server = leaf(&ca, "spiffe://example.org/ligand/bundle-server");
    let client = leaf(&ca, "spiffe://example.org/service/accounts");
    write(root, "pki/svid.pem", &server.pem);
    write(root, "pki/svid.key", &server.key_pem);
    write(root, "pki/bundle.pem", &ca.2.pem());
    write(
        root,
        "pki/signing.key",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    write(
        root,
        "repo/services/accounts/ligand/authz/policy.rego",
        "package ligand.authz\n\ndefault allow := false\n",
    );

    // A free loopback port: bind, read, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let p = |rel: &str| root.join(rel).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ligand-bundle-server"))
        .args(["--policy-repo", &p("repo")])
        .args(["--listen", &addr.to_string()])
        .args(["--signing-key", &p("pki/signing.key")])
        .args(["--svid-cert", &p("pki/svid.pem")])
        .args(["--svid-key", &p("pki/svid.key")])
        .args(["--bundle", &p("pki/bundle.pem")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let context = X509Context {
        svids: vec![client.svid],
        bundles: TrustBundles::new().with(
            spiffe::TrustDomain::new("example.org").unwrap(),
            vec![ca.2.der().clone()],
        ),
    };
    let expected = SpiffeId::new("spiffe://example.org/ligand/bundle-server").unwrap();
    let peer = PeerClient::new(&context, Some(&expected)).unwrap();
    // Bounded wait for the process to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        match peer.get(addr, "/bundles/accounts").await {
            Ok(response) => break response,
            Err(error) => {
                assert!(Instant::now() < deadline, "binary never answered: {error}");
                assert!(child.try_wait().unwrap().is_none(), "binary exited early");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(response.status, 200);
    assert!(response.headers.contains_key("etag"));

    // SIGTERM: the process stops cleanly, within a bound.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "binary did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_ligand-bundle-server"))
        .args([
            "--policy-repo",
            "/nonexistent",
            "--signing-key",
            "/nonexistent",
        ])
        .args([
            "--svid-cert",
            "/nonexistent/svid.pem",
            "--svid-key",
            "/x",
            "--bundle",
            "/x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read \"/nonexistent/svid.pem\""),
        "{stderr}"
    );
}
