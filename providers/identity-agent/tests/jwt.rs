//! JWT-SVIDs from the Workload API, verified with `jsonwebtoken` against the JWKS fetched
//! over HTTP from the agent's OIDC endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{Fixture, WORKLOAD_ID, entry, http_get_json, uid, with_header};
use futures_util::StreamExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use ligand_identity_agent::Selector;
use ligand_identity_agent::proto::{JwtsvidRequest, ValidateJwtsvidRequest};
use tonic::Code;

async fn fixture(jwt_ttl: Duration) -> Fixture {
    Fixture::start(vec![entry(vec![Selector::Uid(uid())]).jwt_ttl(jwt_ttl)]).await
}

async fn jwks(fixture: &Fixture) -> JwkSet {
    let discovery = http_get_json(
        fixture.agent.oidc_addr(),
        "/.well-known/openid-configuration",
    )
    .await;
    let issuer = format!("http://{}", fixture.agent.oidc_addr());
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/keys").as_str());
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"][0],
        "ES256"
    );
    serde_json::from_value(http_get_json(fixture.agent.oidc_addr(), "/keys").await).unwrap()
}

/// Verifies `token` for `audience` against `jwks` with no leeway.
fn verify(
    jwks: &JwkSet,
    token: &str,
    audience: &str,
) -> jsonwebtoken::errors::Result<serde_json::Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.as_deref().expect("kid header");
    let jwk = jwks.find(kid).expect("kid published in the JWKS");
    let mut validation = Validation::new(header.alg);
    validation.leeway = 0;
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "sub", "aud", "iat"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)
        .map(|data| data.claims)
}

#[tokio::test]
async fn jwt_svid_verifies_against_the_published_jwks() {
    let fixture = fixture(Duration::from_secs(300)).await;
    let client = fixture.spiffe_client().await;
    let token = client.fetch_jwt_token(["svc-b"], None).await.unwrap();
    let jwks = jwks(&fixture).await;
    let claims = verify(&jwks, &token, "svc-b").unwrap();
    assert_eq!(claims["sub"], WORKLOAD_ID);
    assert_eq!(
        claims["iss"],
        format!("http://{}", fixture.agent.oidc_addr()).as_str()
    );
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 300);

    let wrong = verify(&jwks, &token, "svc-c").unwrap_err();
    assert_eq!(
        wrong.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );

    // The agent validates it too, and refuses the wrong audience.
    let validated = client.validate_jwt_token("svc-b", &token).await.unwrap();
    assert_eq!(validated.spiffe_id().to_string(), WORKLOAD_ID);
    assert!(client.validate_jwt_token("svc-c", &token).await.is_err());
}

#[tokio::test]
async fn expired_jwt_svid_is_rejected() {
    let fixture = fixture(Duration::from_secs(1)).await;
    let token = fixture
        .spiffe_client()
        .await
        .fetch_jwt_token(["svc-b"], None)
        .await
        .unwrap();
    let jwks = jwks(&fixture).await;
    verify(&jwks, &token, "svc-b").unwrap();
    // `exp` is wall-clock seconds, which paused tokio time cannot advance: wait out the
    // one-second lifetime (bounded: at most 2.1 s).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let error = verify(&jwks, &token, "svc-b").unwrap_err();
    assert_eq!(
        error.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
    let status = fixture
        .raw_client()
        .await
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "svc-b".into(),
            svid: token,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn retired_key_still_verifies_its_tokens() {
    let fixture = fixture(Duration::from_secs(300)).await;
    let client = fixture.spiffe_client().await;
    let old = client.fetch_jwt_token(["svc-b"], None).await.unwrap();
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();

    let mut bundles = client.stream_jwt_bundles().await.unwrap();
    let first = bundles.next().await.unwrap().unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    assert_eq!(first.get(&td).unwrap().jwt_authorities().count(), 1);

    fixture.agent.jwt().rotate().unwrap();
    let new = client.fetch_jwt_token(["svc-b"], None).await.unwrap();
    let new_kid = jsonwebtoken::decode_header(&new).unwrap().kid.unwrap();
    assert_ne!(old_kid, new_kid);

    let jwks = jwks(&fixture).await;
    assert!(jwks.find(&old_kid).is_some() && jwks.find(&new_kid).is_some());
    verify(&jwks, &old, "svc-b").unwrap();
    verify(&jwks, &new, "svc-b").unwrap();
    assert!(client.validate_jwt_token("svc-b", &old).await.is_ok());

    // The bundle stream pushes the new key set.
    let pushed = tokio::time::timeout(Duration::from_secs(5), bundles.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let bundle = pushed.get(&td).unwrap();
    assert!(bundle.find_jwt_authority(&old_kid).is_some());
    assert!(bundle.find_jwt_authority(&new_kid).is_some());
}

#[tokio::test]
async fn jwt_requests_without_audience_or_for_another_id_are_refused() {
    let fixture = fixture(Duration::from_secs(300)).await;
    let mut raw = fixture.raw_client().await;
    let status = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: "spiffe://example.org/someone-else".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = raw
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "garbage".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
