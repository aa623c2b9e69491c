//! X.509-SVID verification on its own, with property tests for the certificate parser, which
//! reads whatever a peer presents.
#![allow(clippy::unwrap_used, reason = "tests")]

use ligand_runtime::testkit::{SvidSpec, TestCa};
use ligand_runtime::tls::{SvidError, peer_spiffe_id, verify_svid};
use proptest::prelude::*;
use rustls_pki_types::{CertificateDer, UnixTime};

const ID: &str = "spiffe://example.org/service/a";

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
