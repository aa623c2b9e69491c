//! The signed chain's checks, each shown failing for the tampering it exists to catch, in
//! both wire-format versions.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderValue;
use proptest::prelude::*;
use spiffe::SpiffeId;

use super::token::{Claims, LinkClaims};
use super::*;
use crate::identity::X509Context;
use crate::testkit::{SvidKey, SvidSpec, TestCa, signed_chain, signed_chain_in, verified_peer};
use crate::tls::{IdentityState, VerifiedPeer};

const VERSIONS: [ChainVersion; 2] = [ChainVersion::V1, ChainVersion::V2];

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

fn peer(hop: &IdentityState) -> VerifiedPeer {
    verified_peer(hop)
}

/// A CA and the identities of the call path A → B → C → S, every hop signing `version`.
struct Path {
    ca: TestCa,
    a: IdentityState,
    b: IdentityState,
    c: IdentityState,
    s: IdentityState,
    version: ChainVersion,
}

impl Path {
    fn new() -> Self {
        Self::of(ChainVersion::default())
    }

    fn of(version: ChainVersion) -> Self {
        let ca = TestCa::new("example.org");
        let hop = |s: &str| identity(&ca.context(ca.svid(s)));
        Self {
            a: hop(A),
            b: hop(B),
            c: hop(C),
            s: hop(S),
            ca,
            version,
        }
    }

    /// A path for each version.
    fn each() -> impl Iterator<Item = Self> {
        VERSIONS.into_iter().map(Self::of)
    }

    /// The header C sends S.
    fn header(&self, now: SystemTime) -> HeaderValue {
        let v = self.version;
        signed_chain_in(&[(&self.a, v), (&self.b, v), (&self.c, v)], &id(S), now).unwrap()
    }

    /// S verifies `header` from C, uncached.
    fn verify(
        &self,
        header: &HeaderValue,
        now: SystemTime,
    ) -> Result<VerifiedChain, ChainRejection> {
        ChainVerifier::with_capacity(0).verify(&self.s, header, &peer(&self.c), now)
    }

    /// The hop whose SPIFFE ID is `iss`.
    fn hop(&self, iss: &str) -> &IdentityState {
        match iss {
            A => &self.a,
            B => &self.b,
            C => &self.c,
            _ => &self.s,
        }
    }

    /// The header of the compact JWS `tokens` in this order, each version 2 token but the
    /// last carrying its signer's certificates, as a forwarding hop attaches them.
    fn arrange(&self, tokens: &[String]) -> HeaderValue {
        let entries: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, jws)| {
                let claims = claims_of(jws);
                if i + 1 == tokens.len() || claims["v"] != 2 {
                    jws.clone()
                } else {
                    attached(jws, self.hop(claims["iss"].as_str().unwrap()))
                }
            })
            .collect();
        join(&entries)
    }

    /// A token signed by `signer` with exactly `claims`, in this path's version.
    fn sign(&self, signer: &IdentityState, mut claims: Claims) -> String {
        claims.v = self.version.number();
        sign_raw(signer, &claims)
    }

    /// The header the hops `signers` would send S, each signing its token with no check of the
    /// one before (as a forger would), forwarded tokens carrying their signer's certificates.
    fn forge(&self, signers: &[&IdentityState], now: SystemTime) -> HeaderValue {
        let mut jws: Vec<String> = Vec::new();
        let mut entries: Vec<String> = Vec::new();
        for (i, signer) in signers.iter().enumerate() {
            let aud = signers.get(i + 1).map_or(id(S), |n| n.spiffe_id());
            let mut own = claims(&signer.spiffe_id().to_string(), &aud.to_string(), now);
            own.prev = (i > 0).then(|| digest(&jws));
            let token = self.sign(signer, own);
            jws.push(token.clone());
            entries.push(
                if i + 1 < signers.len() && self.version == ChainVersion::V2 {
                    attached(&token, signer)
                } else {
                    token
                },
            );
        }
        join(&entries)
    }
}

/// The `prev` of a token on top of `jws`.
fn digest(jws: &[String]) -> String {
    URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(
        jws.join(",").as_bytes(),
    ))
}

/// `jws` with `hop`'s certificates attached.
fn attached(jws: &str, hop: &IdentityState) -> String {
    let mut entry = jws.to_owned();
    for cert in peer(hop).certificates() {
        entry.push(ATTACHMENT_SEPARATOR);
        entry.push_str(&URL_SAFE_NO_PAD.encode(cert.as_ref()));
    }
    entry
}

/// The compact JWS of a header entry, without attachments.
fn jws(entry: &str) -> String {
    entry.split(ATTACHMENT_SEPARATOR).next().unwrap().to_owned()
}

fn claims_of(jws: &str) -> serde_json::Value {
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
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
        v: ChainVersion::default().number(),
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
    for path in Path::each() {
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
}

#[test]
fn a_version_2_chain_names_signers_by_thumbprint_and_forwards_with_their_certificates() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    let t = tokens(&header);
    for (i, entry) in t.iter().enumerate() {
        let jose = jsonwebtoken::decode_header(jws(entry)).unwrap();
        assert!(
            jose.x5c.is_none(),
            "no certificate inside a version 2 token"
        );
        let signer = path.hop(claims_of(entry)["iss"].as_str().unwrap());
        assert_eq!(
            jose.x5t_s256.as_deref(),
            Some(token::thumbprint(&peer(signer).certificates()[0]).as_str())
        );
        let attachments = entry.matches(ATTACHMENT_SEPARATOR).count();
        assert_eq!(attachments, usize::from(i < 2), "{entry}");
    }
    // S forwards what C sent with C's certificates attached to C's token.
    let chain = path.verify(&header, now).unwrap();
    let expected = format!("{},{}", t[..2].join(","), attached(&t[2], &path.c));
    assert_eq!(chain.forwarded().unwrap().to_str().unwrap(), expected);
    // Version 1 forwards the header as received.
    let v1 = Path::of(ChainVersion::V1);
    let header = v1.header(now);
    assert_eq!(v1.verify(&header, now).unwrap().forwarded(), Some(&header));
}

#[test]
fn a_forwarded_version_2_token_carries_its_signers_intermediates() {
    // B's SVID comes from an intermediate CA: its entry carries the leaf and the
    // intermediate, and every hop below verifies it against the root alone.
    let path = Path::new();
    let intermediate = path.ca.intermediate();
    let b = identity(&intermediate.context(intermediate.svid(B)));
    assert_eq!(peer(&b).certificates().len(), 2);
    let now = SystemTime::now();
    let header = signed_chain_in(
        &[
            (&path.a, ChainVersion::V2),
            (&b, ChainVersion::V2),
            (&path.c, ChainVersion::V2),
        ],
        &id(S),
        now,
    )
    .unwrap();
    let t = tokens(&header);
    assert_eq!(t[1], attached(&jws(&t[1]), &b), "leaf, then intermediate");
    assert_eq!(t[1].matches(ATTACHMENT_SEPARATOR).count(), 2);
    assert_eq!(
        path.verify(&header, now).unwrap().links(),
        [verified(A), verified(B)]
    );
    // Without the intermediate the leaf does not chain to the root.
    let leaf_only = t[1].rsplit_once(ATTACHMENT_SEPARATOR).unwrap().0.to_owned();
    let cut = join(&[t[0].clone(), leaf_only, t[2].clone()]);
    assert_eq!(path.verify(&cut, now), Err(ChainRejection::UntrustedSigner));
}

#[test]
fn a_version_2_header_is_much_smaller_than_version_1() {
    let (v1, v2) = (Path::of(ChainVersion::V1), Path::of(ChainVersion::V2));
    let now = SystemTime::now();
    let one_hop = |path: &Path| {
        ChainSigner::new()
            .with_version(path.version)
            .header(&path.c, None, &id(S), now)
            .unwrap()
            .len()
    };
    let (small, large) = (one_hop(&v2), one_hop(&v1));
    assert!(small * 2 < large, "v2 {small} bytes, v1 {large} bytes");
    assert!(v2.header(now).len() < v1.header(now).len());
}

#[test]
fn every_mix_of_versions_verifies() {
    let path = Path::new();
    let now = SystemTime::now();
    for mix in 0..8u8 {
        let v = |bit: u8| VERSIONS[usize::from((mix >> bit) & 1)];
        let header = signed_chain_in(
            &[(&path.a, v(0)), (&path.b, v(1)), (&path.c, v(2))],
            &id(S),
            now,
        )
        .unwrap();
        let chain = path.verify(&header, now).unwrap();
        assert_eq!(chain.links(), [verified(A), verified(B)], "{mix:03b}");
        // And S can forward it, in either version, to a fourth hop.
        for version in VERSIONS {
            let to_t = ChainSigner::new()
                .with_version(version)
                .header(&path.s, Some(&chain), &id(A), now)
                .unwrap();
            let at_a = ChainVerifier::new()
                .verify(&path.a, &to_t, &peer(&path.s), now)
                .unwrap();
            assert_eq!(
                at_a.links(),
                [verified(A), verified(B), verified(C)],
                "{mix:03b} then {version:?}"
            );
        }
    }
}

#[test]
fn a_hop_signs_its_other_dimensions_in_its_link() {
    for path in Path::each() {
        let now = SystemTime::now();
        let alice = ChainSigner::new()
            .with_version(path.version)
            .with_link(&Link::default().with_user("alice@example.org"));
        let to_b = alice.header(&path.a, None, &id(B), now).unwrap();
        let at_b = ChainVerifier::new()
            .verify(&path.b, &to_b, &peer(&path.a), now)
            .unwrap();
        assert!(
            at_b.links().is_empty(),
            "the sending hop is the peer, not an upstream link"
        );
        let to_s = ChainSigner::new()
            .with_version(path.version)
            .header(&path.b, Some(&at_b), &id(S), now)
            .unwrap();
        let at_s = ChainVerifier::new()
            .verify(&path.s, &to_s, &peer(&path.b), now)
            .unwrap();
        let mut expected = verified(A);
        expected.user = Some("alice@example.org".into());
        assert_eq!(at_s.links(), [expected]);
    }
}

#[test]
fn a_changed_claim_breaks_the_signature() {
    for path in Path::each() {
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
        // The sending hop's own token too.
        let mut t = tokens(&path.header(now));
        t[2] = tamper(&t[2], |c| c["link"] = serde_json::json!({"user": "root"}));
        assert_eq!(
            path.verify(&join(&t), now),
            Err(ChainRejection::BadSignature)
        );
    }
}

#[test]
fn a_changed_version_breaks_the_signature() {
    // Downgrading a version 2 token to version 1 (or the reverse) changes signed bytes.
    for path in Path::each() {
        let now = SystemTime::now();
        let mut t = tokens(&path.header(now));
        let other = if path.version == ChainVersion::V1 {
            2
        } else {
            1
        };
        t[2] = tamper(&t[2], |c| c["v"] = serde_json::json!(other));
        assert!(path.verify(&join(&t), now).is_err());
    }
}

#[test]
fn a_flipped_signature_byte_is_refused() {
    for path in Path::each() {
        let now = SystemTime::now();
        let mut t = tokens(&path.header(now));
        let last = t[2].pop().unwrap();
        t[2].push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(
            path.verify(&join(&t), now),
            Err(ChainRejection::BadSignature | ChainRejection::Malformed)
        ));
    }
}

#[test]
fn reordered_removed_and_inserted_tokens_are_refused() {
    for path in Path::each() {
        let now = SystemTime::now();
        let t: Vec<String> = tokens(&path.header(now)).iter().map(|e| jws(e)).collect();
        let at = |order: &[usize]| {
            let picked: Vec<String> = order.iter().map(|&i| t[i].clone()).collect();
            path.verify(&path.arrange(&picked), now)
        };
        assert!(at(&[0, 1, 2]).is_ok(), "{:?}", path.version);
        assert_eq!(at(&[1, 0, 2]), Err(ChainRejection::Broken));
        assert_eq!(at(&[0, 2, 1]), Err(ChainRejection::Broken));
        assert_eq!(at(&[1, 2]), Err(ChainRejection::Broken));
        assert_eq!(at(&[0, 2]), Err(ChainRejection::Broken));
        assert_eq!(at(&[0, 0, 1, 2]), Err(ChainRejection::Broken));
        // Without its own token, the header is B's, and C did not sign it.
        assert_eq!(at(&[0, 1]), Err(ChainRejection::PeerMismatch));
    }
}

#[test]
fn a_token_whose_audience_is_not_the_next_signer_breaks_the_chain() {
    // A's token was for B, but C (not B) signs next: C replays A's token in its own chain.
    for path in Path::each() {
        let now = SystemTime::now();
        let a_to_b = jws(&tokens(&path.header(now))[0]);
        let mut own = claims(C, S, now);
        own.prev = Some(digest(std::slice::from_ref(&a_to_b)));
        let header = path.arrange(&[a_to_b, path.sign(&path.c, own)]);
        assert_eq!(path.verify(&header, now), Err(ChainRejection::Broken));
    }
}

#[test]
fn expired_and_future_chains_are_refused() {
    for path in Path::each() {
        let now = SystemTime::now();
        let header = path.header(now);
        let later =
            now + DEFAULT_CHAIN_TOKEN_LIFETIME + CHAIN_CLOCK_LEEWAY + Duration::from_secs(1);
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
}

#[test]
fn a_token_claiming_too_long_a_life_is_refused() {
    for path in Path::each() {
        let now = SystemTime::now();
        let mut long = claims(C, S, now);
        long.exp = long.iat + MAX_CHAIN_TOKEN_LIFETIME.as_secs() + 1;
        let header = join(&[path.sign(&path.c, long)]);
        assert_eq!(path.verify(&header, now), Err(ChainRejection::Malformed));
    }
}

#[test]
fn a_chain_sent_to_another_service_is_refused() {
    for path in Path::each() {
        let now = SystemTime::now();
        let header = path.header(now);
        let other = identity(
            &path
                .ca
                .context(path.ca.svid("spiffe://example.org/service/other")),
        );
        assert_eq!(
            ChainVerifier::new().verify(&other, &header, &peer(&path.c), now),
            Err(ChainRejection::WrongAudience)
        );
    }
}

#[test]
fn a_signer_from_a_trust_domain_outside_the_bundle_is_untrusted() {
    for path in Path::each() {
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
        let (b, c) = (trusting(B), trusting(C));
        let v = path.version;
        let header = signed_chain_in(&[(&a, v), (&b, v), (&c, v)], &id(S), now).unwrap();
        assert_eq!(
            ChainVerifier::new().verify(&path.s, &header, &peer(&c), now),
            Err(ChainRejection::UntrustedSigner)
        );
        // The same, forged straight to S.
        let forged = path.forge(&[&a, &path.b, &path.c], now);
        assert_eq!(
            path.verify(&forged, now),
            Err(ChainRejection::UntrustedSigner)
        );
    }
}

#[test]
fn a_certificate_from_another_ca_naming_a_trusted_id_is_untrusted() {
    for path in Path::each() {
        let now = SystemTime::now();
        // Same trust domain, same SPIFFE ID, a root the bundle does not hold.
        let impostor_ca = TestCa::new("example.org");
        let impostor_a = identity(&impostor_ca.context(impostor_ca.svid(A)));
        let forged = path.forge(&[&impostor_a, &path.b, &path.c], now);
        assert_eq!(
            path.verify(&forged, now),
            Err(ChainRejection::UntrustedSigner)
        );
        // As the sending hop: version 1 carries the impostor's certificate, which does not
        // verify; version 2 names it, and it is not the certificate of the peer.
        let impostor_c = identity(&impostor_ca.context(impostor_ca.svid(C)));
        let header = ChainSigner::new()
            .with_version(path.version)
            .header(&impostor_c, None, &id(S), now)
            .unwrap();
        assert_eq!(
            path.verify(&header, now),
            Err(match path.version {
                ChainVersion::V1 => ChainRejection::UntrustedSigner,
                _ => ChainRejection::PeerMismatch,
            })
        );
    }
}

#[test]
fn an_issuer_other_than_the_certificate_is_untrusted() {
    for path in Path::each() {
        let now = SystemTime::now();
        // A forwarded token: B's certificate, claiming to be A.
        let mut b_as_a = claims(A, C, now);
        b_as_a.prev = None;
        let first = path.sign(&path.b, b_as_a);
        let mut own = claims(C, S, now);
        own.prev = Some(digest(std::slice::from_ref(&first)));
        let second = path.sign(&path.c, own);
        let entry = match path.version {
            ChainVersion::V1 => first,
            _ => attached(&first, &path.b),
        };
        assert_eq!(
            path.verify(&join(&[entry, second]), now),
            Err(ChainRejection::UntrustedSigner)
        );
        // The sending hop's token: C's certificate, claiming to be B, from the peer B (version
        // 1: the certificate does not name the issuer; version 2: the token is not signed by
        // the peer's certificate).
        let header = join(&[path.sign(&path.c, claims(B, S, now))]);
        assert_eq!(
            ChainVerifier::new().verify(&path.s, &header, &peer(&path.b), now),
            Err(match path.version {
                ChainVersion::V1 => ChainRejection::UntrustedSigner,
                _ => ChainRejection::PeerMismatch,
            })
        );
        // And from the peer C, whose certificate it is, claiming B.
        assert_eq!(
            path.verify(&header, now),
            Err(match path.version {
                ChainVersion::V1 => ChainRejection::UntrustedSigner,
                _ => ChainRejection::PeerMismatch,
            })
        );
    }
}

#[test]
fn a_version_2_token_not_signed_with_the_peers_certificate_is_refused() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    // The peer is C, with another certificate (same SPIFFE ID, another key): the thumbprint
    // in C's token is not the peer's leaf.
    let c_again = identity(&path.ca.context(path.ca.svid(C)));
    assert_eq!(
        ChainVerifier::with_capacity(0).verify(&path.s, &header, &peer(&c_again), now),
        Err(ChainRejection::PeerMismatch)
    );
}

#[test]
fn attached_certificates_must_be_the_thumbprinted_ones() {
    let path = Path::new();
    let now = SystemTime::now();
    let t = tokens(&path.header(now));
    let with = |first: String| path.verify(&join(&[first, t[1].clone(), t[2].clone()]), now);
    // Another certificate of A (same SPIFFE ID, same CA, another key).
    let a_again = identity(&path.ca.context(path.ca.svid(A)));
    assert_eq!(
        with(attached(&jws(&t[0]), &a_again)),
        Err(ChainRejection::UntrustedSigner)
    );
    // B's certificate.
    assert_eq!(
        with(attached(&jws(&t[0]), &path.b)),
        Err(ChainRejection::UntrustedSigner)
    );
    // None: a forwarded version 2 token cannot be verified without them.
    assert_eq!(with(jws(&t[0])), Err(ChainRejection::Malformed));
    // The right one, then junk.
    for junk in ["", "!!", "AAAA", "a=", "A"] {
        assert_eq!(
            with(format!("{}{ATTACHMENT_SEPARATOR}{junk}", t[0])),
            Err(ChainRejection::Malformed),
            "{junk:?}"
        );
    }
    // More certificates than a chain has.
    let mut many = t[0].clone();
    for _ in 0..4 {
        many = format!("{many}{}", &t[0][jws(&t[0]).len()..]);
    }
    assert_eq!(with(many), Err(ChainRejection::Malformed));
}

#[test]
fn a_version_1_token_carries_no_attachment() {
    let path = Path::of(ChainVersion::V1);
    let now = SystemTime::now();
    let t = tokens(&path.header(now));
    let header = join(&[attached(&t[0], &path.a), t[1].clone(), t[2].clone()]);
    assert_eq!(path.verify(&header, now), Err(ChainRejection::Malformed));
}

#[test]
fn certificates_attached_to_the_sending_hops_token_are_refused() {
    // The sending hop's certificates are the handshake's: an attachment to its token would be
    // a second claim, so it is refused rather than ignored.
    for path in Path::each() {
        let now = SystemTime::now();
        let mut t = tokens(&path.header(now));
        t[2] = attached(&t[2], &path.c);
        assert_eq!(path.verify(&join(&t), now), Err(ChainRejection::Malformed));
    }
}

#[test]
fn a_version_2_token_carrying_x5c_or_no_thumbprint_is_malformed() {
    let path = Path::new();
    let now = SystemTime::now();
    let key = &path.c.current().signing;
    let x5c = vec![STANDARD.encode(peer(&path.c).certificates()[0].as_ref())];
    let with_x5c = key.sign_edited(&claims(C, S, now), |h| h.x5c = Some(x5c));
    let without_thumbprint = key.sign_edited(&claims(C, S, now), |h| h.x5t_s256 = None);
    for token in [with_x5c, without_thumbprint] {
        assert_eq!(
            path.verify(&join(&[token]), now),
            Err(ChainRejection::Malformed)
        );
    }
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
    for version in VERSIONS {
        let refs: Vec<(&IdentityState, ChainVersion)> =
            hops.iter().map(|hop| (hop, version)).collect();
        let header = signed_chain_in(&refs, &id(S), SystemTime::now()).unwrap();
        assert!(header.len() <= MAX_CHAIN_HEADER_LEN, "{}", header.len());
    }
}

#[test]
fn an_unknown_version_is_refused_as_such() {
    let path = Path::new();
    let now = SystemTime::now();
    let mut next = claims(C, S, now);
    next.v = 3;
    let header = join(&[sign_raw(&path.c, &next)]);
    assert_eq!(
        path.verify(&header, now),
        Err(ChainRejection::UnsupportedVersion)
    );
    // Also behind a forwarded entry with an attachment.
    let t = tokens(&path.header(now));
    let unknown = tamper(&t[0], |c| c["v"] = serde_json::json!(3));
    assert_eq!(
        path.verify(&join(&[unknown, t[1].clone(), t[2].clone()]), now),
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
        "~",
        "a.b.c~",
        "~~,~",
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
    for path in Path::each() {
        let now = SystemTime::now();
        let header = path.header(now);
        let verifier = ChainVerifier::new();
        let c = peer(&path.c);
        let first = verifier.verify(&path.s, &header, &c, now).unwrap();
        let hit = verifier
            .verify(&path.s, &header, &c, now + Duration::from_secs(1))
            .unwrap();
        assert!(first.ptr_eq(&hit), "the second verification is a cache hit");
        // Another connection from the same peer hits too.
        let again = verifier
            .verify(&path.s, &header, &peer(&path.c), now)
            .unwrap();
        assert!(first.ptr_eq(&again));
        let later =
            now + DEFAULT_CHAIN_TOKEN_LIFETIME + CHAIN_CLOCK_LEEWAY + Duration::from_secs(1);
        assert_eq!(
            verifier.verify(&path.s, &header, &c, later),
            Err(ChainRejection::Expired)
        );
        // The cache is per peer too: the same header from another peer is verified afresh.
        assert_eq!(
            verifier.verify(&path.s, &header, &peer(&path.b), now),
            Err(ChainRejection::PeerMismatch)
        );
    }
}

#[test]
fn the_verify_cache_is_keyed_on_the_peers_certificate() {
    let path = Path::new();
    let now = SystemTime::now();
    let header = path.header(now);
    let verifier = ChainVerifier::new();
    assert!(
        verifier
            .verify(&path.s, &header, &peer(&path.c), now)
            .is_ok()
    );
    // The same SPIFFE ID with another certificate did not sign the token: no cache hit.
    let c_again = identity(&path.ca.context(path.ca.svid(C)));
    assert_eq!(
        verifier.verify(&path.s, &header, &peer(&c_again), now),
        Err(ChainRejection::PeerMismatch)
    );
}

#[test]
fn a_rotation_makes_cached_verifications_unreachable() {
    for path in Path::each() {
        let now = SystemTime::now();
        let header = path.header(now);
        let verifier = ChainVerifier::new();
        let c = peer(&path.c);
        assert!(verifier.verify(&path.s, &header, &c, now).is_ok());
        // S's trust moves to a new CA that never signed A, B or C.
        let next = TestCa::new("example.org");
        let generation = path.s.generation();
        path.s.rotate(&next.context(next.svid(S))).unwrap();
        assert_ne!(path.s.generation(), generation);
        assert_eq!(
            verifier.verify(&path.s, &header, &c, now),
            Err(ChainRejection::UntrustedSigner)
        );
    }
}

#[test]
fn the_signer_reuses_its_token_until_half_its_life_and_after_rotation_signs_again() {
    for path in Path::each() {
        let now = SystemTime::now();
        let signer = ChainSigner::new().with_version(path.version);
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
}

#[test]
fn a_callers_memo_gives_the_header_the_cache_would_until_half_its_life_or_a_rotation() {
    for path in Path::each() {
        let now = SystemTime::now();
        let signer = ChainSigner::new().with_version(path.version);
        let memo = ChainMemo::default();
        let memo_header = |at: SystemTime| {
            signer
                .header_memo(&memo, &path.c.current(), None, &id(S), at)
                .unwrap()
        };
        let first = memo_header(now);
        assert_eq!(first, signer.header(&path.c, None, &id(S), now).unwrap());
        assert_eq!(memo_header(now + Duration::from_secs(60)), first);
        // Past half the token's life: signed again, as the cache would.
        let late = now + DEFAULT_CHAIN_TOKEN_LIFETIME / 2 + Duration::from_secs(1);
        let renewed = memo_header(late);
        assert_ne!(renewed, first);
        assert_eq!(renewed, signer.header(&path.c, None, &id(S), late).unwrap());
        assert!(path.verify(&renewed, late).is_ok());
        // A time before the kept token was issued (a clock stepped back) is not served.
        let early = now - Duration::from_secs(3600);
        assert_ne!(memo_header(early), renewed);
        // A rotation: the new SVID signs, never the kept header.
        let kept = memo_header(late);
        path.c.rotate(&path.ca.context(path.ca.svid(C))).unwrap();
        let rotated = memo_header(late);
        assert_ne!(rotated, kept, "a rotation signs with the new SVID");
        assert!(path.verify(&rotated, late).is_ok());
    }
}

#[test]
fn a_signer_without_a_cache_keeps_nothing_in_a_memo() {
    let path = Path::new();
    let now = SystemTime::now();
    let signer = ChainSigner::new().with_capacity(0);
    let memo = ChainMemo::default();
    let header = signer
        .header_memo(&memo, &path.c.current(), None, &id(S), now)
        .unwrap();
    assert!(path.verify(&header, now).is_ok());
    assert_eq!(format!("{memo:?}"), "ChainMemo { kept: false }");
    // A clone of a handle starts without its header.
    let cached = ChainSigner::new();
    cached
        .header_memo(&memo, &path.c.current(), None, &id(S), now)
        .unwrap();
    assert_eq!(format!("{memo:?}"), "ChainMemo { kept: true }");
    assert_eq!(format!("{:?}", memo.clone()), "ChainMemo { kept: false }");
}

#[test]
fn the_signer_caches_per_upstream_chain_as_forwarded() {
    let path = Path::new();
    let now = SystemTime::now();
    let signer = ChainSigner::new();
    let to_b = ChainSigner::new()
        .header(&path.a, None, &id(B), now)
        .unwrap();
    let at_b = ChainVerifier::new()
        .verify(&path.b, &to_b, &peer(&path.a), now)
        .unwrap();
    let first = signer.header(&path.b, Some(&at_b), &id(S), now).unwrap();
    let hit = signer.header(&path.b, Some(&at_b), &id(S), now).unwrap();
    assert_eq!(first, hit);
    assert!(
        first
            .to_str()
            .unwrap()
            .starts_with(at_b.forwarded().unwrap().to_str().unwrap()),
        "the upstream chain is forwarded with A's certificate"
    );
    let at_s = ChainVerifier::new()
        .verify(&path.s, &first, &peer(&path.b), now)
        .unwrap();
    assert_eq!(at_s.links(), [verified(A)]);
    // Another upstream chain (A signing again) is another entry.
    let later = now + Duration::from_secs(1);
    let to_b = ChainSigner::new()
        .header(&path.a, None, &id(B), later)
        .unwrap();
    let at_b2 = ChainVerifier::new()
        .verify(&path.b, &to_b, &peer(&path.a), later)
        .unwrap();
    assert_ne!(at_b2.forwarded(), at_b.forwarded());
    let second = signer.header(&path.b, Some(&at_b2), &id(S), later).unwrap();
    assert_ne!(first, second);
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
fn p384_ed25519_and_rsa_svids_sign_with_their_own_algorithms() {
    let path = Path::new();
    let now = SystemTime::now();
    for (key, alg) in [
        (SvidKey::EcdsaP384, jsonwebtoken::Algorithm::ES384),
        (SvidKey::Ed25519, jsonwebtoken::Algorithm::EdDSA),
        (SvidKey::Rsa2048, jsonwebtoken::Algorithm::PS256),
    ] {
        for version in VERSIONS {
            let b = identity(&path.ca.context(path.ca.mint(SvidSpec::new(B).key(key))));
            let signer = ChainSigner::new().with_version(version);
            let to_c = signer.header(&b, None, &id(C), now).unwrap();
            let header = jsonwebtoken::decode_header(to_c.to_str().unwrap()).unwrap();
            assert_eq!(header.alg, alg);
            let at_c = ChainVerifier::new()
                .verify(&path.c, &to_c, &peer(&b), now)
                .unwrap();
            let to_s = signer.header(&path.c, Some(&at_c), &id(S), now).unwrap();
            let expected = verified(B);
            assert_eq!(path.verify(&to_s, now).unwrap().links(), [expected]);
        }
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

type Fixture = (Path, HeaderValue, Vec<Link>, SystemTime);

/// One valid header per version (version 2's with attachments), its links and the path, made
/// once for every proptest case.
fn fixtures() -> &'static [Fixture; 2] {
    static FIXTURES: OnceLock<[Fixture; 2]> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        VERSIONS.map(|version| {
            let path = Path::of(version);
            let now = SystemTime::now();
            let header = path.header(now);
            let links = path.verify(&header, now).unwrap().links().to_vec();
            (path, header, links, now)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_verifier_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        version in 0..2usize,
    ) {
        let (path, _, _, now) = &fixtures()[version];
        if let Ok(header) = HeaderValue::from_bytes(&bytes) {
            prop_assert!(path.verify(&header, *now).is_err());
        }
    }

    #[test]
    fn arbitrary_entries_and_attachments_never_verify(
        parts in proptest::collection::vec(
            proptest::string::string_regex("[A-Za-z0-9_.~-]{0,64}").unwrap(), 1..6),
        version in 0..2usize,
    ) {
        let (path, header, _, now) = &fixtures()[version];
        // Arbitrary entries, alone and in front of (or after) a valid header.
        let junk = parts.join(",");
        for text in [junk.clone(), format!("{junk},{}", header.to_str().unwrap()),
                     format!("{},{junk}", header.to_str().unwrap())] {
            let value = HeaderValue::from_str(&text).unwrap();
            prop_assert!(path.verify(&value, *now).is_err());
        }
    }

    #[test]
    fn a_mutated_header_never_verifies_as_another_chain(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.,=~".to_vec())), 1..4),
        version in 0..2usize,
    ) {
        let (path, header, links, now) = &fixtures()[version];
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

    /// A verifier holding the valid header answers an edited header (the cache key hashes
    /// only a header's end, so most edits land on a header hashed like the cached one) exactly
    /// as a verifier without a cache does: a hit only for the very same bytes from the very
    /// same peer.
    #[test]
    fn the_cache_answers_an_edited_header_as_full_verification_does(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.,=~".to_vec())), 1..4),
        version in 0..2usize,
        other_peer in any::<bool>(),
    ) {
        let (path, header, _, now) = &fixtures()[version];
        let verifier = ChainVerifier::new();
        prop_assert!(verifier.verify(&path.s, header, &peer(&path.c), *now).is_ok());
        let mut bytes = header.as_bytes().to_vec();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let edited = HeaderValue::from_bytes(&bytes).unwrap();
        let sender = if other_peer { peer(&path.b) } else { peer(&path.c) };
        prop_assert_eq!(
            verifier.verify(&path.s, &edited, &sender, *now),
            ChainVerifier::with_capacity(0).verify(&path.s, &edited, &sender, *now)
        );
    }
}
