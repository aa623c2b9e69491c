//! X.509-SVID verification on its own, with property tests for the certificate parser, which
//! reads whatever a peer presents, and root path length constraints checked both in
//! `verify_svid` and in real handshakes over loopback.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::io;
use std::sync::Arc;

use ligand_runtime::testkit::{SvidSpec, TestCa, probe_client_config};
use ligand_runtime::tls::{IdentityState, PeerVerifier, SvidError, peer_spiffe_id, verify_svid};
use ligand_runtime::{SpiffeId, TrustBundles, TrustDomain, X509Context, X509Svid};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const ID: &str = "spiffe://example.org/service/a";
const SERVER: &str = "spiffe://example.org/service/server";
const CLIENT: &str = "spiffe://example.org/service/client";

#[test]
fn valid_svid_verifies_to_its_spiffe_id() {
    let ca = TestCa::new("example.org");
    let svid = ca.svid(ID);
    let id = verify_svid(&svid.cert_chain[0], &[], &ca.bundles(), UnixTime::now()).unwrap();
    assert_eq!(id.to_string(), ID);
}

#[test]
fn each_violation_has_its_own_error() {
    let ca = TestCa::new("example.org");
    let check = |spec: SvidSpec| {
        verify_svid(
            &ca.mint(spec).cert_chain[0],
            &[],
            &ca.bundles(),
            UnixTime::now(),
        )
    };
    assert_eq!(check(SvidSpec::new(ID).uris(&[])), Err(SvidError::NoUriSan));
    assert_eq!(
        check(SvidSpec::new(ID).uris(&[ID, "spiffe://example.org/b"])),
        Err(SvidError::MultipleUriSans(2))
    );
    let upper = check(SvidSpec::new(ID).uris(&["spiffe://Example.org/a"]));
    assert!(
        matches!(upper, Err(SvidError::InvalidSpiffeId(_))),
        "{upper:?}"
    );
    assert!(
        matches!(check(SvidSpec::new(ID).expired()), Err(SvidError::Chain(e)) if e.contains("Expired"))
    );

    let other = TestCa::new("other.example");
    let foreign = other.svid("spiffe://other.example/x");
    assert_eq!(
        verify_svid(&foreign.cert_chain[0], &[], &ca.bundles(), UnixTime::now()),
        Err(SvidError::UnknownTrustDomain("other.example".into()))
    );
    // A certificate naming our trust domain but signed by another CA fails the chain check.
    let impostor = TestCa::new("example.org").svid(ID);
    assert!(matches!(
        verify_svid(&impostor.cert_chain[0], &[], &ca.bundles(), UnixTime::now()),
        Err(SvidError::Chain(_))
    ));
    // A CA certificate is never a leaf.
    assert_eq!(peer_spiffe_id(&ca.root()), Err(SvidError::LeafIsCa));
}

#[test]
fn root_path_spiffe_id_is_not_an_svid() {
    let ca = TestCa::new("example.org");
    for root in ["spiffe://example.org", "spiffe://example.org/"] {
        let svid = ca.svid(root);
        let leaf = &svid.cert_chain[0];
        let refused = |outcome: Result<SpiffeId, SvidError>| {
            assert!(
                matches!(outcome, Err(SvidError::InvalidSpiffeId(_))),
                "{root}: {outcome:?}"
            );
        };
        refused(peer_spiffe_id(leaf));
        refused(verify_svid(leaf, &[], &ca.bundles(), UnixTime::now()));
    }
    // Nor does a workload start with one: its own SVID must be one its peers accept.
    let own = IdentityState::new(&ca.context(ca.svid("spiffe://example.org")), None);
    assert!(own.is_err(), "{own:?}");
}

// === root pathLenConstraint ===

/// A root CA and a line of intermediate CAs below it, each issued by the one above. Only the
/// root carries a pathLenConstraint, so the root's constraint is the one under test.
struct Hierarchy {
    domain: TrustDomain,
    /// Root first, each with the parameters and key that sign the next.
    cas: Vec<(CertificateParams, KeyPair, CertificateDer<'static>)>,
}

fn ca_params(name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ligand path length test");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Hierarchy {
    /// A root with `root_path_len` (none: no constraint) and `intermediates` CAs below it.
    fn new(root_path_len: Option<u8>, intermediates: usize) -> Self {
        let key = KeyPair::generate().unwrap();
        let constraints = root_path_len.map_or(BasicConstraints::Unconstrained, |n| {
            BasicConstraints::Constrained(n)
        });
        let params = ca_params("root", constraints);
        let root = params.self_signed(&key).unwrap().der().clone();
        let mut cas = vec![(params, key, root)];
        for n in 1..=intermediates {
            let key = KeyPair::generate().unwrap();
            let params = ca_params(
                &format!("intermediate {n}"),
                BasicConstraints::Unconstrained,
            );
            let (above, above_key, _) = cas.last().unwrap();
            let cert = params
                .signed_by(&key, &Issuer::from_params(above, above_key))
                .unwrap()
                .der()
                .clone();
            cas.push((params, key, cert));
        }
        Self {
            domain: TrustDomain::new("example.org").unwrap(),
            cas,
        }
    }

    fn bundles(&self) -> TrustBundles {
        TrustBundles::new().with(self.domain.clone(), vec![self.cas[0].2.clone()])
    }

    /// An SVID for `id` issued by the CA at `level` (0 is the root), its chain carrying the
    /// intermediates between it and the root, nearest first.
    fn svid_at(&self, level: usize, id: &str) -> X509Svid {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (issuer, issuer_key, _) = &self.cas[level];
        let leaf = params
            .signed_by(&key, &Issuer::from_params(issuer, issuer_key))
            .unwrap();
        let mut cert_chain = vec![leaf.der().clone()];
        cert_chain.extend(
            self.cas[1..=level]
                .iter()
                .rev()
                .map(|(_, _, der)| der.clone()),
        );
        X509Svid {
            spiffe_id: SpiffeId::new(id).unwrap(),
            cert_chain,
            private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// An SVID issued by the lowest CA.
    fn svid(&self, id: &str) -> X509Svid {
        self.svid_at(self.cas.len() - 1, id)
    }

    fn context(&self, svid: X509Svid) -> X509Context {
        X509Context {
            svids: vec![svid],
            bundles: self.bundles(),
        }
    }
}

fn exceeded(path_len: u32, intermediates: usize) -> Result<(), SvidError> {
    Err(SvidError::RootPathLenExceeded {
        path_len,
        intermediates,
    })
}

#[test]
fn root_path_len_bounds_the_intermediates() {
    // (root pathLenConstraint, intermediates below it, outcome)
    let cases = [
        (Some(0), 0, Ok(())),
        (Some(0), 1, exceeded(0, 1)),
        (Some(1), 1, Ok(())),
        (Some(1), 2, exceeded(1, 2)),
        (Some(2), 2, Ok(())),
        (None, 3, Ok(())),
    ];
    for (path_len, intermediates, expected) in cases {
        let hierarchy = Hierarchy::new(path_len, intermediates);
        let svid = hierarchy.svid(ID);
        let outcome = verify_svid(
            &svid.cert_chain[0],
            &svid.cert_chain[1..],
            &hierarchy.bundles(),
            UnixTime::now(),
        );
        assert_eq!(
            outcome.map(|id| assert_eq!(id.to_string(), ID)),
            expected,
            "root pathLen {path_len:?}, {intermediates} intermediates"
        );
        // A workload holding such an SVID does not start: no peer would accept it.
        let own = IdentityState::new(&hierarchy.context(svid), None);
        assert_eq!(own.is_ok(), expected.is_ok(), "{own:?}");
    }
}

#[test]
fn a_path_refused_for_its_root_does_not_hide_another() {
    // One intermediate CA (same name and key) issued by two roots of the bundle: a root with
    // pathLenConstraint 0, listed first, and an unconstrained one. The path through the first
    // is refused; the one through the second verifies.
    let strict_key = KeyPair::generate().unwrap();
    let strict = ca_params("strict root", BasicConstraints::Constrained(0));
    let strict_root = strict.self_signed(&strict_key).unwrap().der().clone();
    let open_key = KeyPair::generate().unwrap();
    let open = ca_params("open root", BasicConstraints::Unconstrained);
    let open_root = open.self_signed(&open_key).unwrap().der().clone();
    let key = KeyPair::generate().unwrap();
    let params = ca_params("intermediate", BasicConstraints::Unconstrained);
    let by_strict = params
        .signed_by(&key, &Issuer::from_params(&strict, &strict_key))
        .unwrap();
    let by_open = params
        .signed_by(&key, &Issuer::from_params(&open, &open_key))
        .unwrap();
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::URI(ID.try_into().unwrap())];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = leaf
        .signed_by(
            &KeyPair::generate().unwrap(),
            &Issuer::from_params(&params, &key),
        )
        .unwrap();
    let domain = TrustDomain::new("example.org").unwrap();

    let both = TrustBundles::new().with(domain.clone(), vec![strict_root.clone(), open_root]);
    let intermediates = [by_strict.der().clone(), by_open.der().clone()];
    let id = verify_svid(leaf.der(), &intermediates, &both, UnixTime::now()).unwrap();
    assert_eq!(id.to_string(), ID);

    let strict_only = TrustBundles::new().with(domain, vec![strict_root]);
    assert_eq!(
        verify_svid(leaf.der(), &intermediates, &strict_only, UnixTime::now()).map(drop),
        exceeded(0, 1)
    );
}

/// One TLS handshake over loopback: the server's and the client's outcomes.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (io::Result<()>, io::Result<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = async {
        let (tcp, _) = listener.accept().await?;
        TlsAcceptor::from(server).accept(tcp).await.map(drop)
    };
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("ligand.invalid").unwrap();
        TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map(drop)
    };
    tokio::join!(accept, connect)
}

/// A plain rustls server presenting `svid` and asking for no client certificate.
fn presenting_server(svid: &X509Svid) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(svid.cert_chain.clone(), svid.private_key.clone_key())
        .unwrap();
    Arc::new(config)
}

/// The SVID error behind a handshake refused for the peer's certificate.
fn svid_error(outcome: &io::Result<()>) -> Option<SvidError> {
    let error = outcome.as_ref().err()?.get_ref()?;
    match error.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<SvidError>().cloned()
        }
        _ => None,
    }
}

#[tokio::test]
async fn root_path_len_is_enforced_on_both_sides_of_a_handshake() {
    for (path_len, expected) in [(0, exceeded(0, 1)), (1, Ok(()))] {
        let hierarchy = Hierarchy::new(Some(path_len), 1);
        // The verifying side's own SVID comes straight from the root, which any pathLen allows.
        let verifying = |id| {
            let context = hierarchy.context(hierarchy.svid_at(0, id));
            Arc::new(IdentityState::new(&context, None).unwrap())
        };

        let peer = hierarchy.svid(CLIENT);
        let peer = probe_client_config(&[&rustls::version::TLS13], Some(&peer)).unwrap();
        let (server_side, _) = handshake(verifying(SERVER).server_config().unwrap(), peer).await;

        let peer = presenting_server(&hierarchy.svid(SERVER));
        let ours = verifying(CLIENT).client_config(PeerVerifier::AnyTrusted);
        let (_, client_side) = handshake(peer, ours.unwrap()).await;

        for (side, outcome) in [("server", server_side), ("client", client_side)] {
            match &expected {
                Ok(()) => outcome.unwrap(),
                Err(error) => assert_eq!(
                    svid_error(&outcome).as_ref(),
                    Some(error),
                    "{side} side, root pathLen {path_len}: {outcome:?}"
                ),
            }
        }
    }
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = peer_spiffe_id(&CertificateDer::from(bytes));
    }

    #[test]
    fn corrupted_certificates_never_verify(position in 0usize..4096, flip in 1u8..=255) {
        let ca = TestCa::new("example.org");
        let mut der = ca.svid(ID).cert_chain[0].to_vec();
        let at = position % der.len();
        der[at] ^= flip;
        let outcome = verify_svid(&CertificateDer::from(der), &[], &ca.bundles(), UnixTime::now());
        prop_assert!(outcome.is_err(), "a certificate with byte {} changed verified", at);
    }
}
