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
