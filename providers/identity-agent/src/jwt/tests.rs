#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use jsonwebtoken::jwk::AlgorithmParameters;

use super::*;

fn authority(algorithm: JwtAlgorithm) -> JwtAuthority {
    JwtAuthority::new(
        TrustDomain::new("example.org").unwrap(),
        "http://127.0.0.1:1",
        algorithm,
    )
    .unwrap()
}

fn id() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/service/a").unwrap()
}

#[test]
fn es256_and_rs256_tokens_validate() {
    for algorithm in [JwtAlgorithm::Es256, JwtAlgorithm::Rs256] {
        let jwt = authority(algorithm);
        let svid = jwt
            .issue_jwt_svid(&id(), &["svc-b".into()], Duration::from_secs(3600))
            .unwrap();
        let header = jsonwebtoken::decode_header(&svid.token).unwrap();
        assert_eq!(header.alg, algorithm.jose());
        assert_eq!(header.kid, Some(jwt.current_kid()));
        let valid = jwt.validate_jwt_svid(&svid.token, "svc-b").unwrap();
        assert_eq!(valid.spiffe_id, id());
        assert!(valid.claims.contains_key("iat"));
        let jwks = jwt.jwks();
        assert_eq!(jwks.keys.len(), 1);
        let expected_rsa = algorithm == JwtAlgorithm::Rs256;
        assert_eq!(
            matches!(jwks.keys[0].algorithm, AlgorithmParameters::RSA(_)),
            expected_rsa
        );
    }
}

#[test]
fn wrong_audience_unknown_key_and_tampering_are_denied() {
    let jwt = authority(JwtAlgorithm::Es256);
    let svid = jwt
        .issue_jwt_svid(&id(), &["svc-b".into()], Duration::from_secs(3600))
        .unwrap();
    assert!(matches!(
        jwt.validate_jwt_svid(&svid.token, "svc-c"),
        Err(JwtError::Invalid(_))
    ));
    assert!(matches!(
        jwt.validate_jwt_svid(&svid.token, ""),
        Err(JwtError::NoAudience)
    ));
    let other = authority(JwtAlgorithm::Es256);
    assert!(matches!(
        other.validate_jwt_svid(&svid.token, "svc-b"),
        Err(JwtError::UnknownKey)
    ));
    // Flip one character in the middle of the signature.
    let mut tampered = svid.token.clone().into_bytes();
    let at = svid.token.rfind('.').unwrap() + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(jwt.validate_jwt_svid(&tampered, "svc-b").is_err());
    assert!(jwt.validate_jwt_svid("not.a.jwt", "svc-b").is_err());
    assert!(matches!(
        jwt.issue_jwt_svid(&id(), &[], Duration::from_secs(3600)),
        Err(JwtError::NoAudience)
    ));
}

#[test]
fn rotation_keeps_retired_keys_until_their_tokens_expire() {
    let jwt = authority(JwtAlgorithm::Es256);
    let changes = jwt.subscribe();
    let old = jwt
        .issue_jwt_svid(&id(), &["a".into()], Duration::from_secs(600))
        .unwrap();
    let old_kid = jwt.current_kid();
    jwt.rotate().unwrap();
    assert!(changes.has_changed().unwrap());
    assert_ne!(jwt.current_kid(), old_kid);
    let kids: Vec<_> = jwt
        .jwks()
        .keys
        .into_iter()
        .filter_map(|k| k.common.key_id)
        .collect();
    assert!(kids.contains(&old_kid), "retired key still published");
    assert_eq!(
        jwt.validate_jwt_svid(&old.token, "a").unwrap().spiffe_id,
        id()
    );

    // A key that never signed anything has no live tokens: it is dropped at the next rotation.
    let unused = jwt.current_kid();
    jwt.rotate().unwrap();
    let kids: Vec<_> = jwt
        .jwks()
        .keys
        .into_iter()
        .filter_map(|k| k.common.key_id)
        .collect();
    assert!(!kids.contains(&unused));
    assert!(kids.contains(&old_kid));
}

#[test]
fn spiffe_bundle_marks_keys_for_jwt_svids() {
    let jwt = authority(JwtAlgorithm::Es256);
    let bundle: Value = serde_json::from_slice(&jwt.spiffe_bundle()).unwrap();
    assert_eq!(bundle["keys"][0]["use"], "jwt-svid");
    assert_eq!(bundle["keys"][0]["kid"], jwt.current_kid());
}

#[test]
fn wit_binds_the_public_key() {
    let jwt = authority(JwtAlgorithm::Es256);
    let holder = rcgen::KeyPair::generate().unwrap();
    let cnf = Jwk::from_encoding_key(
        &EncodingKey::from_ec_der(&holder.serialize_der()),
        Algorithm::ES256,
    )
    .unwrap();
    let request = FetchWitRequest {
        audience: "svc-b".into(),
        cnf_jwk: serde_json::to_string(&cnf).unwrap(),
    };
    let wit = jwt
        .issue_wit(&id(), &request, Duration::from_secs(3600))
        .unwrap();
    let header = jsonwebtoken::decode_header(&wit.token).unwrap();
    assert_eq!(header.typ.as_deref(), Some(WIT_TYP));
    let key = DecodingKey::from_jwk(&jwt.jwks().keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["svc-b"]);
    let claims = jsonwebtoken::decode::<Value>(&wit.token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], id().to_string());
    assert_eq!(claims["cnf"]["jwk"], serde_json::to_value(&cnf).unwrap());
    assert!(claims["jti"].is_string());
}

/// A token signed by `jwt`'s current key, with `typ` set to `typ` (absent for `None`), that
/// is otherwise a valid JWT-SVID for `svc-b`.
fn signed_with_typ(jwt: &JwtAuthority, typ: Option<&str>) -> String {
    let (iat, exp) = JwtAuthority::expiry(Duration::from_secs(600));
    let claims = json!({"sub": id().to_string(), "aud": ["svc-b"], "iat": iat, "exp": unix(exp)});
    let mut header = Header::new(Algorithm::ES256);
    header.typ = typ.map(str::to_owned);
    jwt.sign(header, &claims, exp).unwrap()
}

#[test]
fn jwt_svid_typ_must_be_absent_jwt_or_jose() {
    let jwt = authority(JwtAlgorithm::Es256);
    for typ in [None, Some("JWT"), Some("JOSE")] {
        let token = signed_with_typ(&jwt, typ);
        assert!(jwt.validate_jwt_svid(&token, "svc-b").is_ok(), "{typ:?}");
    }
    for typ in ["wit+jwt", "at+jwt", "jwt", "JWT+x", ""] {
        let token = signed_with_typ(&jwt, Some(typ));
        assert!(
            matches!(
                jwt.validate_jwt_svid(&token, "svc-b"),
                Err(JwtError::WrongType(ref t)) if t == typ
            ),
            "{typ} accepted as a JWT-SVID"
        );
    }
}

#[test]
fn wit_is_not_accepted_as_jwt_svid() {
    let jwt = authority(JwtAlgorithm::Es256);
    let holder = rcgen::KeyPair::generate().unwrap();
    let cnf = Jwk::from_encoding_key(
        &EncodingKey::from_ec_der(&holder.serialize_der()),
        Algorithm::ES256,
    )
    .unwrap();
    let request = FetchWitRequest {
        audience: "svc-b".into(),
        cnf_jwk: serde_json::to_string(&cnf).unwrap(),
    };
    let wit = jwt
        .issue_wit(&id(), &request, Duration::from_secs(3600))
        .unwrap();
    assert!(matches!(
        jwt.validate_jwt_svid(&wit.token, "svc-b"),
        Err(JwtError::WrongType(_))
    ));
}

#[test]
fn wit_refuses_private_or_malformed_keys() {
    let jwt = authority(JwtAlgorithm::Es256);
    for cnf in [
        r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret"}"#,
        r#"{"kty":"oct","k":"c2VjcmV0"}"#,
        r#"["not","an","object"]"#,
        r#"{"no":"kty"}"#,
        "not json",
    ] {
        let request = FetchWitRequest {
            audience: "svc".into(),
            cnf_jwk: cnf.into(),
        };
        assert!(
            matches!(
                jwt.issue_wit(&id(), &request, Duration::from_secs(3600)),
                Err(JwtError::InvalidCnf(_))
            ),
            "{cnf} accepted"
        );
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn shared() -> &'static JwtAuthority {
        static JWT: std::sync::OnceLock<JwtAuthority> = std::sync::OnceLock::new();
        JWT.get_or_init(|| authority(JwtAlgorithm::Es256))
    }

    proptest! {
        /// Untrusted tokens never panic the validator and never validate.
        #[test]
        fn arbitrary_tokens_are_rejected(token in "\\PC{0,300}", audience in "[a-z]{1,8}") {
            prop_assert!(shared().validate_jwt_svid(&token, &audience).is_err());
        }

        /// Three base64url segments (the shape of a JWS) that were not signed by the
        /// authority are rejected.
        #[test]
        fn forged_jws_shapes_are_rejected(
            h in "[A-Za-z0-9_-]{0,60}",
            p in "[A-Za-z0-9_-]{0,120}",
            s in "[A-Za-z0-9_-]{0,90}",
        ) {
            let token = format!("{h}.{p}.{s}");
            prop_assert!(shared().validate_jwt_svid(&token, "svc").is_err());
        }

        /// Untrusted cnf keys never panic, and anything with a private member is refused.
        #[test]
        fn cnf_parsing_never_accepts_private_keys(json in "\\PC{0,200}", member in prop::sample::select(PRIVATE_JWK_MEMBERS.to_vec())) {
            let _ = public_jwk(&json);
            let private = format!(r#"{{"kty":"EC","crv":"P-256","x":"a","y":"b","{member}":"x"}}"#);
            prop_assert!(matches!(public_jwk(&private), Err(JwtError::InvalidCnf(_))));
        }
    }
}
