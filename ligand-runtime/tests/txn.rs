//! Transaction Tokens on an internal hop, over mTLS: a verified token's claims reach the
//! policy (`input.txn`) and the handler (`Ctx::txn`); a refused one never reaches either.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{CALLER_ID, Fixture, TRUST_DOMAIN};
use http::Method;
use ligand_runtime::testkit::{AllowList, PolicyFn, TEST_TXN_ISSUER, TxnIssuer};
use ligand_runtime::{EvalResponse, TXN_TOKEN_HEADER, TxnClaims};
use serde_json::json;

fn allow_hello() -> AllowList {
    AllowList::new().allow(CALLER_ID, "GET", "/hello/{name}")
}

async fn get(f: &Fixture, headers: &[(&str, &str)]) -> ligand_runtime::testkit::PeerResponse {
    f.caller(CALLER_ID)
        .send(f.addr, Method::GET, "/hello/ada", headers, Vec::new())
        .await
        .unwrap()
}

/// Expects `status` and `code`, with a request ID, and that neither the policy nor the
/// handler saw the request.
async fn assert_refused(f: &Fixture, headers: &[(&str, &str)], status: u16, code: &str) {
    let response = get(f, headers).await;
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json().unwrap();
    assert_eq!(body["error_code"], code, "{body}");
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32, "{body}");
    assert_eq!(f.handler_calls(), 0);
    assert!(f.audit().await.decisions().is_empty());
}

#[tokio::test]
async fn a_verified_token_reaches_the_policy_input_and_the_handler() {
    let issuer = TxnIssuer::new("txn-1");
    let f = Fixture::start(|c| c.policy(allow_hello()).txn_token(issuer.config())).await;
    let claims = issuer.claims(TRUST_DOMAIN, "user-42");
    let token = issuer.sign(&claims);
    let response = get(&f, &[(TXN_TOKEN_HEADER, &token)]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().ends_with("|txn=user-42"),
        "{}",
        response.text()
    );
    let input = &f.audit().await.decisions()[0].input;
    let txn: &TxnClaims = input.txn.as_deref().expect("input.txn");
    assert_eq!(&*txn.txn, claims["txn"].as_str().unwrap());
    assert_eq!(&*txn.sub, "user-42");
    assert_eq!(txn.iss.as_deref(), Some(TEST_TXN_ISSUER));
    let json = serde_json::to_value(&**input).unwrap();
    assert_eq!(json["txn"]["sub"], "user-42");
    assert_eq!(json["txn"]["scope"], "read");
}

#[tokio::test]
async fn a_policy_can_decide_on_the_transaction_claims() {
    let issuer = TxnIssuer::new("txn-1");
    let policy = PolicyFn::new(|input| {
        let allowed = input.txn.as_ref().is_some_and(|t| &*t.sub == "user-42");
        async move { Ok(EvalResponse::decided(allowed)) }
    });
    let f = Fixture::start(|c| c.policy(policy).txn_token(issuer.config())).await;
    let allowed = issuer.token(TRUST_DOMAIN, "user-42");
    assert_eq!(get(&f, &[(TXN_TOKEN_HEADER, &allowed)]).await.status, 200);
    let denied = issuer.token(TRUST_DOMAIN, "user-7");
    assert_eq!(get(&f, &[(TXN_TOKEN_HEADER, &denied)]).await.status, 403);
    assert_eq!(get(&f, &[]).await.status, 403, "no token, no input.txn");
}

#[tokio::test]
async fn an_invalid_token_is_refused_before_policy() {
    let issuer = TxnIssuer::new("txn-1");
    let f = Fixture::start(|c| c.policy(allow_hello()).txn_token(issuer.config())).await;
    let other_domain = issuer.token("other.example", "user-42");
    assert_refused(
        &f,
        &[(TXN_TOKEN_HEADER, &other_domain)],
        401,
        "TXN_TOKEN_INVALID",
    )
    .await;
    let forger = TxnIssuer::new("txn-1");
    let forged = forger.token(TRUST_DOMAIN, "admin");
    assert_refused(&f, &[(TXN_TOKEN_HEADER, &forged)], 401, "TXN_TOKEN_INVALID").await;
    let mut expired = issuer.claims(TRUST_DOMAIN, "user-42");
    expired["exp"] = json!(1_000);
    let expired = issuer.sign(&expired);
    assert_refused(
        &f,
        &[(TXN_TOKEN_HEADER, &expired)],
        401,
        "TXN_TOKEN_INVALID",
    )
    .await;
    assert_refused(
        &f,
        &[(TXN_TOKEN_HEADER, "not-a-jwt")],
        400,
        "TXN_TOKEN_MALFORMED",
    )
    .await;
    let valid = issuer.token(TRUST_DOMAIN, "user-42");
    assert_refused(
        &f,
        &[(TXN_TOKEN_HEADER, &valid), (TXN_TOKEN_HEADER, &valid)],
        400,
        "TXN_TOKEN_MALFORMED",
    )
    .await;
}

#[tokio::test]
async fn a_missing_token_is_allowed_unless_required() {
    let issuer = TxnIssuer::new("txn-1");
    let f = Fixture::start(|c| c.policy(allow_hello()).txn_token(issuer.config())).await;
    let response = get(&f, &[]).await;
    assert_eq!(response.status, 200);
    assert!(f.audit().await.decisions()[0].input.txn.is_none());

    let f = Fixture::start(|c| {
        c.policy(allow_hello())
            .txn_token(issuer.config().require(true))
    })
    .await;
    assert_refused(&f, &[], 401, "TXN_TOKEN_MISSING").await;
}

#[tokio::test]
async fn without_a_verifier_a_token_is_neither_checked_nor_shown_to_policy() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let response = get(&f, &[(TXN_TOKEN_HEADER, "anything")]).await;
    assert_eq!(response.status, 200);
    assert!(f.audit().await.decisions()[0].input.txn.is_none());
}

#[tokio::test]
async fn a_trust_boundary_mints_verifies_and_enforces_on_the_claims() {
    use ligand_runtime::testkit::{FakeIdentity, TestCa};
    use ligand_runtime::{
        Action, InboundRequest, Link, Resource, SubjectTokenConfig, TxnMintRequest, TxnMinter,
        TxnTokenConfig,
    };
    // The identity provider's key and an access token it issued.
    let idp = TxnIssuer::new("idp-1");
    let now = std::time::SystemTime::now();
    let unix = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some("idp-1".to_owned());
    let access = json!({
        "iss": "https://idp.example", "aud": "https://api.example.org", "sub": "alice",
        "iat": unix, "exp": unix + 600, "scope": "read write",
    });
    // TxnIssuer signs with typ txntoken+jwt; an access token is signed here with its key.
    let idp_pem = idp.pem();
    let access = jsonwebtoken::encode(
        &header,
        &access,
        &jsonwebtoken::EncodingKey::from_ec_pem(idp_pem.as_bytes()).unwrap(),
    )
    .unwrap();

    // The gateway's minter, with a Transaction Token Service key of its own.
    let tts_pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let minter = TxnMinter::new(
        SubjectTokenConfig::new(
            idp.jwks(),
            ["https://idp.example"],
            "https://api.example.org",
        ),
        tts_pem.as_bytes(),
        "ES256",
        "tts-1",
        TRUST_DOMAIN,
        common::SERVER_ID,
    )
    .unwrap();
    let minted = minter
        .mint(&access, &TxnMintRequest::new().scope("read"), now)
        .unwrap();

    let ca = TestCa::new(TRUST_DOMAIN);
    let policy = PolicyFn::new(|input| {
        let allowed = input
            .txn
            .as_ref()
            .is_some_and(|t| &*t.sub == "alice" && t.scope.as_deref() == Some("read"));
        async move { Ok(EvalResponse::decided(allowed)) }
    });
    let server = ligand_runtime::init_trust_boundary(
        ligand_runtime::Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(common::SERVER_ID))))
            .policy(policy)
            .txn_token(TxnTokenConfig::new(minter.jwks().unwrap()))
            .build(),
    )
    .await
    .unwrap();
    let claims = server.verify_txn_token(&minted.token).unwrap();
    let request = InboundRequest::new(
        Link::default().with_user("alice"),
        Resource::http_path("/hello/{name}"),
        Action::new("GET"),
    );
    let enforced = server
        .enforce(request.clone().with_txn(claims))
        .await
        .unwrap();
    assert_eq!(
        enforced.input.txn.as_ref().unwrap().txn.as_ref(),
        minted.txn
    );
    assert!(server.enforce(request).await.is_err(), "no claims, denied");
    // The access token itself is not a Transaction Token.
    assert!(server.verify_txn_token(&access).is_err());
    server.close().await;
}
