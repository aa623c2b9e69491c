use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

const DOMAIN: &str = "bank.example";
const ISSUER: &str = "https://txn.bank.example";
/// The tests' "now": 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW as u64)
}

/// A signing key generated for the test, with its public JWK under `kid`.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl TestKey {
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        Self::new(kid, Algorithm::ES256, encoding)
    }

    fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let encoding = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
        // jsonwebtoken derives no JWK from a PKCS#8 Ed25519 key; the raw public key is `x`.
        let jwk = serde_json::from_value(json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        }))
        .unwrap();
        Self::with_jwk(kid, Algorithm::EdDSA, encoding, jwk)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        Self::with_jwk(kid, alg, encoding, jwk)
    }

    fn with_jwk(kid: &str, alg: Algorithm, encoding: EncodingKey, mut jwk: Jwk) -> Self {
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.typ = Some(TXN_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": DOMAIN,
        "iat": NOW - 10,
        "exp": NOW + 300,
        "txn": "97053963-771d-49cc-a4e3-20aad399c312",
        "sub": "user-42",
        "scope": "accounts.read transfers.write",
        "req_wl": "spiffe://bank.example/service/gateway",
        "tctx": {"amount": 100},
        "rctx": {"req_ip": "203.0.113.7"},
    })
}

fn config(keys: &[&TestKey]) -> TxnTokenConfig {
    TxnTokenConfig::new(JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .issuers([ISSUER])
}

fn verifier(key: &TestKey) -> TxnVerifier {
    TxnVerifier::new(&config(&[key]), DOMAIN).unwrap()
}

fn with(claims: Value, name: &str, value: Value) -> Value {
    let mut claims = claims;
    claims[name] = value;
    claims
}

fn without(claims: Value, name: &str) -> Value {
    let mut claims = claims;
    claims.as_object_mut().unwrap().remove(name);
    claims
}

/// A token with the given header and payload JSON and a junk signature.
fn raw(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(b"signature")
    )
}

#[test]
fn a_valid_token_yields_every_claim() {
    let key = TestKey::es256("k1");
    let verified = verifier(&key).verify(&key.sign(&claims()), now()).unwrap();
    let claims_json = serde_json::to_value(&verified).unwrap();
    let claims = verified;
    assert_eq!(&*claims.txn, "97053963-771d-49cc-a4e3-20aad399c312");
    assert_eq!(&*claims.sub, "user-42");
    assert_eq!(
        claims.scope.as_deref(),
        Some("accounts.read transfers.write")
    );
    assert_eq!(
        claims.req_wl.as_deref(),
        Some("spiffe://bank.example/service/gateway")
    );
    assert_eq!(claims.iss.as_deref(), Some(ISSUER));
    assert_eq!((claims.iat, claims.exp), (NOW - 10, NOW + 300));
    assert_eq!(claims.tctx, Some(json!({"amount": 100})));
    assert_eq!(claims.rctx, Some(json!({"req_ip": "203.0.113.7"})));
    assert_eq!(claims_json, without(self::claims(), "aud"));
}

#[test]
fn eddsa_verifies_and_optional_claims_stay_absent() {
    let key = TestKey::ed25519("ed");
    let minimal = json!({"aud": DOMAIN, "iat": NOW, "exp": NOW + 60, "txn": "t", "sub": "s"});
    let verifier = TxnVerifier::new(&config(&[&key]).issuers::<_, String>([]), DOMAIN).unwrap();
    let claims = verifier.verify(&key.sign(&minimal), now()).unwrap();
    assert_eq!(*claims, TxnClaims::new("t", "s", NOW, NOW + 60));
    assert_eq!(
        serde_json::to_value(&claims).unwrap(),
        json!({"txn": "t", "sub": "s", "iat": NOW, "exp": NOW + 60})
    );
}

#[test]
fn typ_is_compared_as_a_media_type() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    for typ in [
        "TxnToken+JWT",
        "application/txntoken+jwt",
        "Application/TXNTOKEN+jwt",
    ] {
        let mut header = key.header();
        header.typ = Some(typ.to_owned());
        assert!(
            verifier
                .verify(&key.sign_with(header, &claims()), now())
                .is_ok(),
            "{typ}"
        );
    }
}

#[test]
fn a_token_of_another_type_is_refused() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    // A JWT-SVID, a WIT, an access token, no typ at all: each is another kind of token even
    // when signed by a trusted key with the right claims.
    for typ in [
        Some("JWT"),
        Some("wit+jwt"),
        Some("at+jwt"),
        Some("txntoken"),
        None,
    ] {
        let mut header = key.header();
        header.typ = typ.map(str::to_owned);
        assert_eq!(
            verifier.verify(&key.sign_with(header, &claims()), now()),
            Err(TxnRejection::WrongType),
            "{typ:?}"
        );
    }
}

#[test]
fn an_expired_token_is_refused_after_the_leeway() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    let token = key.sign(&with(claims(), "exp", json!(NOW - 10)));
    assert!(
        verifier.verify(&token, now()).is_ok(),
        "within the 30 s leeway"
    );
    let token = key.sign(&with(claims(), "exp", json!(NOW - 30)));
    assert_eq!(verifier.verify(&token, now()), Err(TxnRejection::Expired));
    let strict = TxnVerifier::new(&config(&[&key]).leeway(Duration::ZERO), DOMAIN).unwrap();
    let token = key.sign(&with(claims(), "exp", json!(NOW)));
    assert_eq!(strict.verify(&token, now()), Err(TxnRejection::Expired));
}

#[test]
fn a_verified_token_is_reused_only_inside_its_time_window() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    let at = |offset: i64| UNIX_EPOCH + Duration::from_secs((NOW + offset) as u64);
    // Valid from nbf (NOW + 10) to exp (NOW + 300), 30 s of leeway either side.
    let token = key.sign(&with(claims(), "nbf", json!(NOW + 10)));
    let first = verifier.verify(&token, at(0)).unwrap();
    let again = verifier.verify(&token, at(329)).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second check is a cache hit"
    );
    // The cached entry answers no differently than a fresh check would.
    assert_eq!(verifier.verify(&token, at(330)), Err(TxnRejection::Expired));
    assert_eq!(
        verifier.verify(&token, at(-21)),
        Err(TxnRejection::NotYetValid),
        "nbf - leeway bounds the window, not iat"
    );
    assert!(verifier.verify(&token, at(-20)).is_ok());
    // Only the exact bytes hit: a token with a flipped signature bit is checked and refused.
    let mut forged = token.into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        verifier.verify(&forged, at(0)),
        Err(TxnRejection::BadSignature)
    );
}

#[test]
fn a_token_from_the_future_is_refused() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    let token = key.sign(&with(claims(), "iat", json!(NOW + 20)));
    assert!(verifier.verify(&token, now()).is_ok(), "within the leeway");
    let token = key.sign(&with(claims(), "iat", json!(NOW + 31)));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TxnRejection::NotYetValid)
    );
    let token = key.sign(&with(claims(), "nbf", json!(NOW + 3600)));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TxnRejection::NotYetValid)
    );
}

#[test]
fn a_token_for_another_trust_domain_is_refused() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    for aud in [
        json!("other.example"),
        json!("spiffe://bank.example"),
        json!([DOMAIN, "other.example"]),
        json!([]),
    ] {
        let token = key.sign(&with(claims(), "aud", aud.clone()));
        assert_eq!(
            verifier.verify(&token, now()),
            Err(TxnRejection::WrongAudience),
            "{aud}"
        );
    }
    let token = key.sign(&with(claims(), "aud", json!([DOMAIN])));
    assert!(verifier.verify(&token, now()).is_ok());
    let token = key.sign(&with(claims(), "aud", json!(7)));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TxnRejection::InvalidClaim("aud"))
    );
}

#[test]
fn an_untrusted_or_absent_issuer_is_refused_when_issuers_are_listed() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    let token = key.sign(&with(claims(), "iss", json!("https://evil.example")));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TxnRejection::UntrustedIssuer)
    );
    let token = key.sign(&without(claims(), "iss"));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TxnRejection::UntrustedIssuer)
    );
}

#[test]
fn every_required_claim_is_required() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    for name in ["exp", "iat", "aud", "txn", "sub"] {
        let token = key.sign(&without(claims(), name));
        assert_eq!(
            verifier.verify(&token, now()),
            Err(TxnRejection::MissingClaim(name)),
            "{name}"
        );
    }
    let token = key.sign(&with(claims(), "sub", json!("")));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TxnRejection::MissingClaim("sub"))
    );
    for (name, value) in [
        ("exp", json!("tomorrow")),
        ("sub", json!(42)),
        ("scope", json!(["a"])),
        ("tctx", json!("x")),
        ("rctx", json!(1)),
    ] {
        let token = key.sign(&with(claims(), name, value));
        assert_eq!(
            verifier.verify(&token, now()),
            Err(TxnRejection::InvalidClaim(name)),
            "{name}"
        );
    }
}

#[test]
fn a_bad_signature_is_refused() {
    let key = TestKey::es256("k1");
    let impostor = TestKey::es256("k1");
    assert_eq!(
        verifier(&key).verify(&impostor.sign(&claims()), now()),
        Err(TxnRejection::BadSignature)
    );
    // A payload swapped under a valid header and signature.
    let token = key.sign(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("admin")).to_string());
    parts[1] = &forged;
    assert_eq!(
        verifier(&key).verify(&parts.join("."), now()),
        Err(TxnRejection::BadSignature)
    );
}

#[test]
fn an_unknown_or_absent_kid_is_refused() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    let mut header = key.header();
    header.kid = Some("k2".to_owned());
    assert_eq!(
        verifier.verify(&key.sign_with(header, &claims()), now()),
        Err(TxnRejection::UnknownKey)
    );
    let mut header = key.header();
    header.kid = None;
    assert_eq!(
        verifier.verify(&key.sign_with(header, &claims()), now()),
        Err(TxnRejection::UnknownKey)
    );
}

#[test]
fn alg_none_is_refused() {
    let key = TestKey::es256("k1");
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": TXN_TOKEN_TYP, "kid": "k1"});
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert_eq!(
            verifier(&key).verify(&token, now()),
            Err(TxnRejection::DisallowedAlgorithm),
            "{alg}"
        );
    }
}

#[test]
fn hmac_keyed_with_the_public_key_is_refused() {
    // The classic confusion: sign HS256 with the verifier's public key as the secret.
    let key = TestKey::es256("k1");
    let public = serde_json::to_vec(&key.jwk).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(TXN_TOKEN_TYP.to_owned());
    header.kid = Some("k1".to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    assert_eq!(
        verifier(&key).verify(&token, now()),
        Err(TxnRejection::DisallowedAlgorithm)
    );
}

#[test]
fn an_algorithm_that_does_not_fit_the_key_is_refused() {
    let ec = TestKey::es256("ec");
    let ed = TestKey::ed25519("ed");
    let verifier = TxnVerifier::new(&config(&[&ec, &ed]), DOMAIN).unwrap();
    // An EdDSA token naming the EC key.
    let mut header = ed.header();
    header.kid = Some("ec".to_owned());
    assert_eq!(
        verifier.verify(&ed.sign_with(header, &claims()), now()),
        Err(TxnRejection::KeyMismatch)
    );
    // ES384 on a P-256 key.
    let header = json!({"alg": "ES384", "typ": TXN_TOKEN_TYP, "kid": "ec"});
    assert_eq!(
        verifier.verify(&raw(&header, &claims()), now()),
        Err(TxnRejection::KeyMismatch)
    );
}

#[test]
fn an_algorithm_off_the_allow_list_is_refused() {
    let key = TestKey::es256("k1");
    let config = config(&[&key]).algorithms(["EdDSA"]).unwrap();
    let verifier = TxnVerifier::new(&config, DOMAIN).unwrap();
    assert_eq!(
        verifier.verify(&key.sign(&claims()), now()),
        Err(TxnRejection::DisallowedAlgorithm)
    );
}

#[test]
fn symmetric_algorithms_and_keys_are_refused_at_configuration() {
    for alg in ["HS256", "none", "RSA-OAEP", "ES999"] {
        assert!(matches!(
            TxnTokenConfig::new(JwkSet { keys: vec![] }).algorithms([alg]),
            Err(TxnConfigError::Algorithm(_))
        ));
    }
    let oct = br#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#;
    let config = TxnTokenConfig::from_jwks_json(oct).unwrap();
    assert!(matches!(
        TxnVerifier::new(&config, DOMAIN),
        Err(TxnConfigError::NotAPublicKey(kid)) if kid == "s"
    ));
    let mut key = TestKey::es256("k1");
    key.jwk.common.key_id = None;
    assert!(matches!(
        TxnVerifier::new(&config_of(&key), DOMAIN),
        Err(TxnConfigError::KeyWithoutKid)
    ));
    assert!(matches!(
        TxnVerifier::new(&TxnTokenConfig::new(JwkSet { keys: vec![] }), DOMAIN),
        Err(TxnConfigError::NoKeys)
    ));
    let twice = TestKey::es256("k1");
    let other = TestKey::es256("k1");
    assert!(matches!(
        TxnVerifier::new(&self::config(&[&twice, &other]), DOMAIN),
        Err(TxnConfigError::DuplicateKid(kid)) if kid == "k1"
    ));
    for usage in ["enc", "jwt-svid"] {
        let mut key = TestKey::es256("k1");
        key.jwk.common.public_key_use = Some(serde_json::from_value(json!(usage)).unwrap());
        assert!(matches!(
            TxnVerifier::new(&config_of(&key), DOMAIN),
            Err(TxnConfigError::NotASigningKey(_))
        ));
    }
    let mut signing = TestKey::es256("k1");
    signing.jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    assert!(TxnVerifier::new(&config_of(&signing), DOMAIN).is_ok());
}

fn config_of(key: &TestKey) -> TxnTokenConfig {
    TxnTokenConfig::new(JwkSet {
        keys: vec![key.jwk.clone()],
    })
}

#[test]
fn malformed_values_are_refused_as_malformed() {
    let key = TestKey::es256("k1");
    let verifier = verifier(&key);
    let token = key.sign(&claims());
    let too_long = format!("{token}{}", "A".repeat(MAX_TXN_TOKEN_LEN));
    for value in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        too_long.as_str(),
        &token[..token.len() / 2],
    ] {
        assert!(
            matches!(
                verifier.verify(value, now()),
                Err(TxnRejection::Malformed | TxnRejection::BadSignature)
            ),
            "{value}"
        );
    }
    // A header that is not JSON, and a payload that is not an object.
    assert_eq!(
        verifier.verify("bm90anNvbg.e30.c2ln", now()),
        Err(TxnRejection::Malformed)
    );
    let header = http::HeaderValue::from_bytes(b"\xffabc").unwrap();
    assert_eq!(
        verifier.verify_header(&header, now()),
        Err(TxnRejection::Malformed)
    );
    // `crit` names extensions this verifier does not know.
    let mut header = key.header();
    header.crit = Some(vec!["exp".to_owned()]);
    assert_eq!(
        verifier.verify(&key.sign_with(header, &claims()), now()),
        Err(TxnRejection::Malformed)
    );
}

#[test]
fn rejections_map_to_stable_codes() {
    assert_eq!(TxnRejection::Missing.code(), "TXN_TOKEN_MISSING");
    assert_eq!(TxnRejection::Malformed.code(), "TXN_TOKEN_MALFORMED");
    assert_eq!(
        TxnRejection::Malformed.status(),
        http::StatusCode::BAD_REQUEST
    );
    for rejection in [
        TxnRejection::WrongType,
        TxnRejection::BadSignature,
        TxnRejection::Expired,
        TxnRejection::MissingClaim("sub"),
    ] {
        assert_eq!(rejection.code(), "TXN_TOKEN_INVALID");
        assert_eq!(rejection.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(rejection.public_message(), "transaction token rejected");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_header_bytes_never_panic_and_always_deny(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let key = TestKey::es256("k1");
        let verifier = verifier(&key);
        if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
            prop_assert!(verifier.verify_header(&value, now()).is_err());
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert!(verifier.verify(text, now()).is_err());
        }
    }

    #[test]
    fn arbitrary_segments_never_panic_and_always_deny(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        signature in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let key = TestKey::es256("k1");
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        );
        prop_assert!(verifier(&key).verify(&token, now()).is_err());
    }
}

// === Minting (the inline Context Service) ===

const IDP: &str = "https://idp.example";
const API: &str = "https://api.bank.example";
const GATEWAY: &str = "spiffe://bank.example/service/gateway";

fn access_token_claims() -> Value {
    json!({
        "iss": IDP,
        "aud": [API, "https://other.example"],
        "iat": NOW - 60,
        "exp": NOW + 3600,
        "sub": "alice",
        "scope": "accounts.read transfers.write",
        "client_id": "web",
    })
}

fn access_token(idp: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(idp.alg);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(idp.kid.clone());
    jsonwebtoken::encode(&header, claims, &idp.encoding).unwrap()
}

/// A minter trusting `idp`, signing with a fresh P-256 key (its PEM returned too).
fn minter(idp: &TestKey) -> (TxnMinter, String) {
    let subject = SubjectTokenConfig::new(
        JwkSet {
            keys: vec![idp.jwk.clone()],
        },
        [IDP],
        API,
    );
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let minter = TxnMinter::new(subject, pem.as_bytes(), "ES256", "tts-1", DOMAIN, GATEWAY)
        .unwrap()
        .issuer(ISSUER);
    (minter, pem)
}

#[test]
fn a_minted_token_verifies_with_the_verifier() {
    let idp = TestKey::es256("idp-1");
    let (minter, _) = minter(&idp);
    let mut rctx = Map::new();
    rctx.insert("req_ip".into(), json!("203.0.113.7"));
    let request = TxnMintRequest::new().scope("accounts.read").rctx(rctx);
    let subject = access_token(&idp, &access_token_claims());
    let minted = minter.mint(&subject, &request, now()).unwrap();
    assert_eq!(
        minted.expires_at,
        now() + DEFAULT_TXN_LIFETIME,
        "short-lived, well inside the access token's hour"
    );
    let config = TxnTokenConfig::new(minter.jwks().unwrap()).issuers([ISSUER]);
    let verifier = TxnVerifier::new(&config, DOMAIN).unwrap();
    let claims = verifier.verify(&minted.token, now()).unwrap();
    assert_eq!(&*claims.txn, minted.txn);
    assert_eq!(
        *claims, minted.claims,
        "the minter reports what a verifier reads"
    );
    assert_eq!(&*claims.sub, "alice");
    assert_eq!(claims.scope.as_deref(), Some("accounts.read"));
    assert_eq!(claims.req_wl.as_deref(), Some(GATEWAY));
    assert_eq!(claims.rctx, Some(json!({"req_ip": "203.0.113.7"})));
    assert_eq!(claims.tctx, None);
    assert_eq!((claims.iat, claims.exp), (NOW, NOW + 300));
    // Each exchange is its own transaction.
    let again = minter.mint(&subject, &request, now()).unwrap();
    assert_ne!(again.txn, minted.txn);
}

#[test]
fn a_minted_token_verifies_with_another_jwt_library() {
    use jwt_simple::prelude::{
        ECDSAP256PublicKeyLike as _, ES256KeyPair, HashSet, VerificationOptions,
    };
    #[derive(serde::Deserialize)]
    struct Txn {
        txn: String,
        scope: String,
        req_wl: String,
    }
    let idp = TestKey::es256("idp-1");
    let (minter, pem) = minter(&idp);
    // jwt-simple reads the system clock: mint now, with an access token valid now.
    let real_now = SystemTime::now();
    let unix_now = real_now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let subject = access_token(
        &idp,
        &with(
            with(access_token_claims(), "iat", json!(unix_now)),
            "exp",
            json!(unix_now + 3600),
        ),
    );
    let minted = minter
        .mint(&subject, &TxnMintRequest::new(), real_now)
        .unwrap();
    let public = ES256KeyPair::from_pem(&pem).unwrap().public_key();
    let metadata = jwt_simple::token::Token::decode_metadata(&minted.token).unwrap();
    assert_eq!(metadata.algorithm(), "ES256");
    assert_eq!(metadata.signature_type(), Some(TXN_TOKEN_TYP));
    assert_eq!(metadata.key_id(), Some("tts-1"));
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_iter([ISSUER.to_owned()])),
        allowed_audiences: Some(HashSet::from_iter([DOMAIN.to_owned()])),
        required_key_id: Some("tts-1".to_owned()),
        ..VerificationOptions::default()
    };
    let claims = public
        .verify_token::<Txn>(&minted.token, Some(options))
        .unwrap();
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    assert_eq!(claims.custom.txn, minted.txn);
    assert_eq!(claims.custom.scope, "accounts.read transfers.write");
    assert_eq!(claims.custom.req_wl, GATEWAY);
    // And a token signed by another key does not verify there either.
    let other = ES256KeyPair::generate().public_key();
    assert!(other.verify_token::<Txn>(&minted.token, None).is_err());
}

#[test]
fn minting_refuses_an_unacceptable_subject_token() {
    let idp = TestKey::es256("idp-1");
    let (minter, _) = minter(&idp);
    let mint = |token: &str| minter.mint(token, &TxnMintRequest::new(), now());
    let refused = |token: &str| match mint(token) {
        Err(MintError::SubjectToken(rejection)) => rejection,
        other => panic!("{other:?}"),
    };
    let claims = access_token_claims;
    assert_eq!(
        refused(&access_token(
            &idp,
            &with(claims(), "exp", json!(NOW - 3600))
        )),
        TxnRejection::Expired
    );
    assert_eq!(
        refused(&access_token(
            &idp,
            &with(claims(), "aud", json!("https://elsewhere.example"))
        )),
        TxnRejection::WrongAudience
    );
    assert_eq!(
        refused(&access_token(
            &idp,
            &with(claims(), "iss", json!("https://evil.example"))
        )),
        TxnRejection::UntrustedIssuer
    );
    assert_eq!(
        refused(&access_token(&idp, &without(claims(), "sub"))),
        TxnRejection::MissingClaim("sub")
    );
    let stranger = TestKey::es256("idp-1");
    assert_eq!(
        refused(&access_token(&stranger, &claims())),
        TxnRejection::BadSignature
    );
    // A Transaction Token is not an access token, even from the identity provider's key.
    assert_eq!(refused(&idp.sign(&claims())), TxnRejection::WrongType);
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert_eq!(refused(&none), TxnRejection::DisallowedAlgorithm);
    let public = serde_json::to_vec(&idp.jwk).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some("idp-1".to_owned());
    let hmac = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&hmac), TxnRejection::DisallowedAlgorithm);
}

#[test]
fn minting_never_widens_the_scope_or_outlives_the_subject_token() {
    let idp = TestKey::es256("idp-1");
    let (minter, _) = minter(&idp);
    let subject = access_token(&idp, &access_token_claims());
    let wider = TxnMintRequest::new().scope("accounts.read admin");
    assert!(matches!(
        minter.mint(&subject, &wider, now()),
        Err(MintError::ScopeNotGranted(scope)) if scope == "admin"
    ));
    let short = access_token(&idp, &with(access_token_claims(), "exp", json!(NOW + 20)));
    let minted = minter.mint(&short, &TxnMintRequest::new(), now()).unwrap();
    assert_eq!(minted.expires_at, now() + Duration::from_secs(20));
}

#[test]
fn a_minter_refuses_symmetric_signing_algorithms() {
    let idp = TestKey::es256("idp-1");
    let subject = SubjectTokenConfig::new(
        JwkSet {
            keys: vec![idp.jwk.clone()],
        },
        [IDP],
        API,
    );
    for alg in ["HS256", "none"] {
        assert!(matches!(
            TxnMinter::new(subject.clone(), b"secret", alg, "k", DOMAIN, GATEWAY),
            Err(TxnConfigError::Algorithm(_))
        ));
    }
}
