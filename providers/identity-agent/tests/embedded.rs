//! The embedded development identity as a `WorkloadIdentity`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use ligand_identity_agent::EmbeddedIdentity;
use ligand_runtime::{FetchWitRequest, ProviderError, SpiffeId, WorkloadIdentity};
use rustls_pki_types::UnixTime;

fn identity() -> EmbeddedIdentity {
    EmbeddedIdentity::new(SpiffeId::new("spiffe://example.org/service/a").unwrap())
        .unwrap()
        .with_x509_ttl(Duration::from_secs(10))
}

#[tokio::test]
async fn context_holds_a_verifiable_svid() {
    let identity = identity();
    let context = identity.fetch_x509_context().await.unwrap();
    let svid = &context.svids[0];
    let id = ligand_runtime::tls::verify_svid(
        &svid.cert_chain[0],
        &[],
        &context.bundles,
        UnixTime::now(),
    )
    .unwrap();
    assert_eq!(id, svid.spiffe_id);
}

#[tokio::test(start_paused = true)]
async fn watch_rotates_at_half_life() {
    let identity = identity();
    let mut rx = identity.watch_x509_context().await.unwrap();
    let first = rx.borrow_and_update().clone().unwrap();
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert!(!rx.has_changed().unwrap(), "no rotation before half-life");
    tokio::time::timeout(Duration::from_millis(200), rx.changed())
        .await
        .expect("rotated at half-life")
        .unwrap();
    let second = rx.borrow_and_update().clone().unwrap();
    assert_ne!(first.svids[0].cert_chain, second.svids[0].cert_chain);
    identity.close().await.unwrap();
    // After close the watch ends and fetches fail closed.
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx.changed().await.is_ok() {}
    })
    .await
    .unwrap();
    assert!(matches!(
        identity.fetch_x509_context().await,
        Err(ProviderError::Closed)
    ));
}

#[tokio::test]
async fn fetch_wit_binds_the_key_and_refuses_private_keys() {
    let identity = identity();
    let cnf = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    let wit = identity
        .fetch_wit(&FetchWitRequest {
            audience: "svc-b".into(),
            cnf_jwk: cnf.into(),
        })
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&wit.token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("wit+jwt"));
    let jwks = identity.jwt().jwks();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["svc-b"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&wit.token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(
        claims["cnf"]["jwk"]["x"],
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
    );

    let private = cnf.replace("\"kty\"", "\"d\":\"secret\",\"kty\"");
    let error = identity
        .fetch_wit(&FetchWitRequest {
            audience: "svc-b".into(),
            cnf_jwk: private,
        })
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Invalid(_)), "{error:?}");
}

/// A WIT issued by the embedded identity, with a WPT signed by the key it binds, passes the
/// runtime's WIMSE verifier configured with the authority's JWKS; a JWT-SVID from the same
/// keys does not pass as a WIT.
#[tokio::test]
async fn embedded_wits_verify_with_the_runtime_wimse_verifier() {
    use ligand_runtime::testkit::WorkloadKey;
    use ligand_runtime::{WIT_HEADER, WPT_HEADER, WimseConfig, WimseRejection, WimseVerifier};

    let identity = identity();
    let id = SpiffeId::new("spiffe://example.org/service/a").unwrap();
    let key = WorkloadKey::new();
    let wit = identity
        .fetch_wit(&FetchWitRequest {
            audience: String::new(),
            cnf_jwk: key.jwk().to_string(),
        })
        .await
        .unwrap()
        .token;
    let verifier =
        WimseVerifier::new(&WimseConfig::new(identity.jwt().jwks()).require(true)).unwrap();
    let aud = "https://b.example.org/x";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verify = |wit: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert(WIT_HEADER, wit.parse().unwrap());
        headers.insert(
            WPT_HEADER,
            key.sign(&key.claims(wit, aud, now, 30)).parse().unwrap(),
        );
        let verifier = verifier.clone();
        let id = id.clone();
        async move { verifier.verify(&headers, &aud.parse().unwrap(), &id).await }
    };
    let verified = verify(&wit).await.unwrap().unwrap();
    assert_eq!(verified.subject, id);

    let svid = identity
        .jwt()
        .issue_jwt_svid(&id, &["b".to_owned()], Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        verify(&svid.token).await.unwrap_err(),
        WimseRejection::WrongWitType
    );
}
