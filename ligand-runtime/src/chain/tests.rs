//! The signed chain's checks, each shown failing for the tampering it exists to catch.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use proptest::prelude::*;
use spiffe::SpiffeId;

use super::token::{Claims, LinkClaims, VERSION};
use super::*;
use crate::identity::X509Context;
use crate::testkit::{SvidKey, SvidSpec, TestCa, signed_chain};
use crate::tls::IdentityState;

const A: &str = "spiffe://example.org/service/a";
const B: &str = "spiffe://example.org/service/b";
const C: &str = "spiffe://example.org/service/c";
const S: &str = "spiffe://example.org/service/s";

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn identity(context: &X509Context) -> IdentityState {
    IdentityState::new(context, None).unwrap()
}

/// A CA and the identities of the call path A → B → C → S.
struct Path {
    ca: TestCa,
    a: IdentityState,
    b: IdentityState,
    c: IdentityState,
    s: IdentityState,
}

impl Path {
    fn new() -> Self {
        let ca = TestCa::new("example.org");
        let hop = |s: &str| identity(&ca.context(ca.svid(s)));
        Self {
            a: hop(A),
            b: hop(B),
            c: hop(C),
            s: hop(S),
            ca,
        }
    }

    /// The header C sends S.
    fn header(&self, now: SystemTime) -> HeaderValue {
        signed_chain(&[&self.a, &self.b, &self.c], &id(S), now).unwrap()
    }

    /// S verifies `header` from C, uncached.
    fn verify(
        &self,
        header: &HeaderValue,
        now: SystemTime,
    ) -> Result<VerifiedChain, ChainRejection> {
        ChainVerifier::with_capacity(0).verify(&self.s, header, &id(C), now)
    }
}

fn tokens(header: &HeaderValue) -> Vec<String> {
    header
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn join(tokens: &[String]) -> HeaderValue {
    HeaderValue::from_str(&tokens.join(",")).unwrap()
}

/// `token` with its claims changed by `edit`, the signature kept.
fn tamper(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// A token signed by `signer` with exactly `claims`.
fn sign_raw(signer: &IdentityState, claims: &Claims) -> String {
    signer.current().signing.sign(claims).unwrap()
}

fn claims(iss: &str, aud: &str, now: SystemTime) -> Claims {
    Claims {
        v: VERSION,
        iss: iss.to_owned(),
        aud: aud.to_owned(),
        iat: secs(now),
        exp: secs(now) + 300,
        prev: None,
        link: LinkClaims::default(),
    }
}

fn verified(workload: &str) -> Link {
    let mut link = Link::workload(workload);
    link.verified = true;
    link
}

#[test]
fn principal_follows_documented_order() {
    let link = Link {
        device: Some("tpm:1".into()),
        external_party: Some("partner".into()),
        user: Some("alice".into()),
        ..Link::default()
    };
    assert_eq!(link.principal(), Some("alice"));
    assert_eq!(
        Link {
            host: Some("h".into()),
            ..Link::default()
        }
        .principal(),
        Some("h")
    );
    assert_eq!(Link::default().principal(), None);
    assert!(!link.verified, "a link built by hand is not verified");
}

#[test]
fn a_three_hop_chain_verifies_with_every_upstream_link_signed() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    assert_eq!(tokens(&header).len(), 3);
    let chain = path.verify(&header, now).unwrap();
    assert_eq!(chain.links(), [verified(A), verified(B)]);
    assert_eq!(chain.header(), Some(&header));
    let input = serde_json::to_value(chain.to_chain()).unwrap();
    assert_eq!(
        input[0],
        serde_json::json!({"workload": A, "verified": true})
    );
}

#[test]
fn a_hop_signs_its_other_dimensions_in_its_link() {
    let path = Path::new();
    let now = SystemTime::now();
    let alice = ChainSigner::new().with_link(&Link::default().with_user("alice@example.org"));
    let to_b = alice.header(&path.a, None, &id(B), now).unwrap();
    let at_b = ChainVerifier::new()
        .verify(&path.b, &to_b, &id(A), now)
        .unwrap();
    assert!(
        at_b.links().is_empty(),
        "the sending hop is the peer, not an upstream link"
    );
    let to_s = ChainSigner::new()
        .header(&path.b, Some(&at_b), &id(S), now)
        .unwrap();
    let at_s = ChainVerifier::new()
        .verify(&path.s, &to_s, &id(B), now)
        .unwrap();
    let mut expected = verified(A);
    expected.user = Some("alice@example.org".into());
    assert_eq!(at_s.links(), [expected]);
}

#[test]
fn a_changed_claim_breaks_the_signature() {
    let path = Path::new();
    let now = SystemTime::now();
    let mut t = tokens(&path.header(now));
    t[0] = tamper(&t[0], |c| c["iss"] = serde_json::json!(B));
    assert_eq!(
        path.verify(&join(&t), now),
        Err(ChainRejection::BadSignature)
    );
    let mut t = tokens(&path.header(now));
    t[1] = tamper(&t[1], |c| c["link"] = serde_json::json!({"user": "root"}));
    assert_eq!(
        path.verify(&join(&t), now),
        Err(ChainRejection::BadSignature)
    );
}

#[test]
fn a_flipped_signature_byte_is_refused() {
    let path = Path::new();
    let now = SystemTime::now();
    let mut t = tokens(&path.header(now));
    let last = t[2].pop().unwrap();
    t[2].push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(
        path.verify(&join(&t), now),
        Err(ChainRejection::BadSignature | ChainRejection::Malformed)
    ));
}

#[test]
fn reordered_removed_and_inserted_tokens_are_refused() {
    let path = Path::new();
    let now = SystemTime::now();
    let t = tokens(&path.header(now));
    let swapped = [t[1].clone(), t[0].clone(), t[2].clone()];
    assert_eq!(
        path.verify(&join(&swapped), now),
        Err(ChainRejection::Broken)
    );
    let swapped = [t[0].clone(), t[2].clone(), t[1].clone()];
    assert_eq!(
        path.verify(&join(&swapped), now),
        Err(ChainRejection::Broken)
    );
    assert_eq!(
        path.verify(&join(&t[1..]), now),
        Err(ChainRejection::Broken)
    );
    assert_eq!(
        path.verify(&join(&[t[0].clone(), t[2].clone()]), now),
        Err(ChainRejection::Broken)
    );
    let doubled = [t[0].clone(), t[0].clone(), t[1].clone(), t[2].clone()];
    assert_eq!(
        path.verify(&join(&doubled), now),
        Err(ChainRejection::Broken)
    );
    // Without its own token, the header is B's, and C did not sign it.
    assert_eq!(
        path.verify(&join(&t[..2]), now),
        Err(ChainRejection::PeerMismatch)
    );
}

#[test]
fn a_token_whose_audience_is_not_the_next_signer_breaks_the_chain() {
    // A's token was for B, but C (not B) signs next: C replays A's token in its own chain.
    let path = Path::new();
    let now = SystemTime::now();
    let a_to_b = tokens(&path.header(now))[0].clone();
    let digest = URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(a_to_b.as_bytes()));
    let mut own = claims(C, S, now);
    own.prev = Some(digest);
    let header = join(&[a_to_b, sign_raw(&path.c, &own)]);
    assert_eq!(path.verify(&header, now), Err(ChainRejection::Broken));
}

#[test]
fn expired_and_future_chains_are_refused() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    let later = now + DEFAULT_CHAIN_TOKEN_LIFETIME + CHAIN_CLOCK_LEEWAY + Duration::from_secs(1);
    assert_eq!(path.verify(&header, later), Err(ChainRejection::Expired));
    let within_leeway =
        now + DEFAULT_CHAIN_TOKEN_LIFETIME + CHAIN_CLOCK_LEEWAY - Duration::from_secs(1);
    assert!(path.verify(&header, within_leeway).is_ok());
    let earlier = now - CHAIN_CLOCK_LEEWAY - Duration::from_secs(2);
    assert_eq!(
        path.verify(&header, earlier),
        Err(ChainRejection::NotYetValid)
    );
}

#[test]
fn a_token_claiming_too_long_a_life_is_refused() {
    let path = Path::new();
    let now = SystemTime::now();
    let mut long = claims(C, S, now);
    long.exp = long.iat + MAX_CHAIN_TOKEN_LIFETIME.as_secs() + 1;
    let header = join(&[sign_raw(&path.c, &long)]);
    assert_eq!(path.verify(&header, now), Err(ChainRejection::Malformed));
}

#[test]
fn a_chain_sent_to_another_service_is_refused() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    let other = identity(
        &path
            .ca
            .context(path.ca.svid("spiffe://example.org/service/other")),
    );
    assert_eq!(
        ChainVerifier::new().verify(&other, &header, &id(C), now),
        Err(ChainRejection::WrongAudience)
    );
}

#[test]
fn a_signer_from_a_trust_domain_outside_the_bundle_is_untrusted() {
    let path = Path::new();
    let partner = TestCa::new("partner.org");
    let now = SystemTime::now();
    let a = identity(&partner.context(partner.svid("spiffe://partner.org/service/a")));
    // B and C trust the partner; S does not.
    let trusting = |hop: &str| {
        identity(&X509Context {
            svids: vec![path.ca.svid(hop)],
            bundles: path
                .ca
                .bundles()
                .with(partner.trust_domain().clone(), vec![partner.root()]),
        })
    };
    let header = signed_chain(&[&a, &trusting(B), &trusting(C)], &id(S), now).unwrap();
    assert_eq!(
        path.verify(&header, now),
        Err(ChainRejection::UntrustedSigner)
    );
}

#[test]
fn a_certificate_from_another_ca_naming_a_trusted_id_is_untrusted() {
    let path = Path::new();
    let now = SystemTime::now();
    // Same trust domain, same SPIFFE ID, a root the bundle does not hold.
    let impostor_ca = TestCa::new("example.org");
    let impostor = identity(&impostor_ca.context(impostor_ca.svid(C)));
    let header = ChainSigner::new()
        .header(&impostor, None, &id(S), now)
        .unwrap();
    assert_eq!(
        path.verify(&header, now),
        Err(ChainRejection::UntrustedSigner)
    );
}

#[test]
fn an_issuer_other_than_the_certificate_is_untrusted() {
    let path = Path::new();
    let now = SystemTime::now();
    // C's certificate, claiming to be B.
    let header = join(&[sign_raw(&path.c, &claims(B, S, now))]);
    assert_eq!(
        ChainVerifier::new().verify(&path.s, &header, &id(B), now),
        Err(ChainRejection::UntrustedSigner)
    );
}

#[test]
fn oversized_and_overlong_headers_are_refused_before_any_work() {
    let path = Path::new();
    let now = SystemTime::now();
    let big = HeaderValue::from_str(&"a".repeat(MAX_CHAIN_HEADER_LEN + 1)).unwrap();
    assert_eq!(path.verify(&big, now), Err(ChainRejection::TooLarge));
    let many = HeaderValue::from_str(&vec!["a.b.c"; MAX_CHAIN_LINKS + 1].join(",")).unwrap();
    assert_eq!(path.verify(&many, now), Err(ChainRejection::TooManyLinks));
}

#[test]
fn a_header_of_ten_hops_fits() {
    let ca = TestCa::new("example.org");
    let hops: Vec<IdentityState> = (0..10)
        .map(|i| identity(&ca.context(ca.svid(&format!("spiffe://example.org/service/hop-{i}")))))
        .collect();
    let refs: Vec<&IdentityState> = hops.iter().collect();
    let header = signed_chain(&refs, &id(S), SystemTime::now()).unwrap();
    assert!(header.len() <= MAX_CHAIN_HEADER_LEN, "{}", header.len());
}

#[test]
fn an_unknown_version_is_refused_as_such() {
    let path = Path::new();
    let now = SystemTime::now();
    let mut next = claims(C, S, now);
    next.v = VERSION + 1;
    let header = join(&[sign_raw(&path.c, &next)]);
    assert_eq!(
        path.verify(&header, now),
        Err(ChainRejection::UnsupportedVersion)
    );
}

#[test]
fn the_old_json_header_and_garbage_are_malformed() {
    let path = Path::new();
    let now = SystemTime::now();
    for bad in [
        r#"[{"workload":"spiffe://example.org/service/admin"}]"#,
        "",
        "a.b.c",
        "..",
        ",",
    ] {
        let header = HeaderValue::from_str(bad).unwrap();
        assert_eq!(
            path.verify(&header, now),
            Err(ChainRejection::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn a_cache_hit_checks_expiry_again() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    let verifier = ChainVerifier::new();
    let first = verifier.verify(&path.s, &header, &id(C), now).unwrap();
    let hit = verifier
        .verify(&path.s, &header, &id(C), now + Duration::from_secs(1))
        .unwrap();
    assert!(first.ptr_eq(&hit), "the second verification is a cache hit");
    let later = now + DEFAULT_CHAIN_TOKEN_LIFETIME + CHAIN_CLOCK_LEEWAY + Duration::from_secs(1);
    assert_eq!(
        verifier.verify(&path.s, &header, &id(C), later),
        Err(ChainRejection::Expired)
    );
    // The cache is per peer too: the same header from another peer is verified afresh.
    assert_eq!(
        verifier.verify(&path.s, &header, &id(B), now),
        Err(ChainRejection::PeerMismatch)
    );
}

#[test]
fn a_rotation_makes_cached_verifications_unreachable() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    let verifier = ChainVerifier::new();
    assert!(verifier.verify(&path.s, &header, &id(C), now).is_ok());
    // S's trust moves to a new CA that never signed A, B or C.
    let next = TestCa::new("example.org");
    let generation = path.s.generation();
    path.s.rotate(&next.context(next.svid(S))).unwrap();
    assert_ne!(path.s.generation(), generation);
    assert_eq!(
        verifier.verify(&path.s, &header, &id(C), now),
        Err(ChainRejection::UntrustedSigner)
    );
}

#[test]
fn the_signer_reuses_its_token_until_half_its_life_and_after_rotation_signs_again() {
    let path = Path::new();
    let now = SystemTime::now();
    let signer = ChainSigner::new();
    let first = signer.header(&path.c, None, &id(S), now).unwrap();
    let again = signer
        .header(&path.c, None, &id(S), now + Duration::from_secs(60))
        .unwrap();
    assert_eq!(first, again);
    let other = signer.header(&path.c, None, &id(B), now).unwrap();
    assert_ne!(first, other, "one token per audience");
    let late = now + DEFAULT_CHAIN_TOKEN_LIFETIME / 2 + Duration::from_secs(1);
    let renewed = signer.header(&path.c, None, &id(S), late).unwrap();
    assert_ne!(first, renewed);
    assert!(path.verify(&renewed, late).is_ok());
    path.c.rotate(&path.ca.context(path.ca.svid(C))).unwrap();
    let rotated = signer.header(&path.c, None, &id(S), late).unwrap();
    assert_ne!(renewed, rotated, "a rotation signs with the new SVID");
    assert!(path.verify(&rotated, late).is_ok());
}

#[test]
fn the_signer_refuses_to_grow_a_chain_past_the_limits() {
    let ca = TestCa::new("example.org");
    let hops: Vec<IdentityState> = (0..MAX_CHAIN_LINKS + 1)
        .map(|i| identity(&ca.context(ca.svid(&format!("spiffe://example.org/h{i}")))))
        .collect();
    let refs: Vec<&IdentityState> = hops.iter().collect();
    let error = signed_chain(&refs, &id(S), SystemTime::now()).unwrap_err();
    let error = error.downcast::<ChainError>().unwrap();
    assert!(
        matches!(
            *error,
            ChainError::TooLarge { .. } | ChainError::TooManyLinks { .. }
        ),
        "{error}"
    );
}

#[test]
fn p384_and_ed25519_svids_sign_with_their_own_algorithms() {
    let path = Path::new();
    let now = SystemTime::now();
    for (key, alg) in [
        (SvidKey::EcdsaP384, jsonwebtoken::Algorithm::ES384),
        (SvidKey::Ed25519, jsonwebtoken::Algorithm::EdDSA),
    ] {
        let b = identity(&path.ca.context(path.ca.mint(SvidSpec::new(B).key(key))));
        let to_c = ChainSigner::new().header(&b, None, &id(C), now).unwrap();
        let header = jsonwebtoken::decode_header(to_c.to_str().unwrap()).unwrap();
        assert_eq!(header.alg, alg);
        let at_c = ChainVerifier::new()
            .verify(&path.c, &to_c, &id(B), now)
            .unwrap();
        let to_s = ChainSigner::new()
            .header(&path.c, Some(&at_c), &id(S), now)
            .unwrap();
        let expected = verified(B);
        assert_eq!(path.verify(&to_s, now).unwrap().links(), [expected]);
    }
}

#[test]
fn an_svid_key_the_chain_cannot_sign_with_fails_init_with_a_clear_message() {
    use rustls_pki_types::PrivateKeyDer;
    // The same P-256 key, as SEC1 rather than PKCS#8: rustls takes it, jsonwebtoken does not.
    let ca = TestCa::new("example.org");
    let mut svid = ca.svid(S);
    let PrivateKeyDer::Pkcs8(pkcs8) = &svid.private_key else {
        panic!("testkit keys are PKCS#8");
    };
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8.secret_pkcs8_der()).unwrap();
    let sec1 = info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec();
    svid.private_key = PrivateKeyDer::Sec1(sec1.into());
    let error = IdentityState::new(&ca.context(svid), None).unwrap_err();
    assert!(
        matches!(&error, crate::InitError::Tls(crate::tls::TlsError::PrivateKey(m)) if m.contains("PKCS#8")),
        "{error:?}"
    );
}

/// One valid header, its links and the path, made once for every proptest case.
fn fixture() -> &'static (Path, HeaderValue, Vec<Link>, SystemTime) {
    static FIXTURE: OnceLock<(Path, HeaderValue, Vec<Link>, SystemTime)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = Path::new();
        let now = SystemTime::now();
        let header = path.header(now);
        let links = path.verify(&header, now).unwrap().links().to_vec();
        (path, header, links, now)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_verifier_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (path, _, _, now) = fixture();
        if let Ok(header) = HeaderValue::from_bytes(&bytes) {
            prop_assert!(path.verify(&header, *now).is_err());
        }
    }

    #[test]
    fn a_mutated_header_never_verifies_as_another_chain(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.,=".to_vec())), 1..4),
    ) {
        let (path, header, links, now) = fixture();
        let mut bytes = header.as_bytes().to_vec();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let mutated = HeaderValue::from_bytes(&bytes).unwrap();
        if let Ok(chain) = path.verify(&mutated, *now) {
            // Only an edit that decodes to the same signed bytes (a base64 character whose
            // extra bits are ignored) may still verify, and then as the same chain.
            prop_assert_eq!(chain.links(), links.as_slice());
        }
    }
}
