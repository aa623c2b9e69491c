//! WIMSE WIT/WPT verification on inbound requests over real mTLS: a valid pair is admitted;
//! every broken one is refused with a typed code and a request ID before the policy and the
//! handler see the request.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{CALLER_ID, Fixture, TRUST_DOMAIN};
use http::Method;
use ligand_runtime::testkit::{
    AllowList, ManualClock, PeerResponse, TxnIssuer, WitIssuer, WorkloadKey, token_hash,
};
use ligand_runtime::{
    Clock, InMemoryReplayCache, TXN_TOKEN_HEADER, WIT_HEADER, WPT_HEADER, WimseConfig,
};
use serde_json::{Value, json};

/// The target URI the server rebuilds for `/hello/ada` from the test client (`Host:
/// ligand.invalid`).
const AUD: &str = "https://ligand.invalid/hello/ada";

struct Setup {
    f: Fixture,
    issuer: WitIssuer,
    key: WorkloadKey,
    clock: Arc<ManualClock>,
}

impl Setup {
    async fn start(configure: impl FnOnce(WimseConfig) -> WimseConfig) -> Self {
        Self::start_with(configure, |c| c).await
    }

    async fn start_with(
        configure: impl FnOnce(WimseConfig) -> WimseConfig,
        more: impl FnOnce(ligand_runtime::ConfigBuilder) -> ligand_runtime::ConfigBuilder,
    ) -> Self {
        let issuer = WitIssuer::new("wit-1");
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let config = configure(issuer.config().require(true).clock(clock.clone()));
        let f = Fixture::start(|c| {
            more(
                c.policy(AllowList::new().allow(CALLER_ID, "GET", "/hello/{name}"))
                    .wimse(config),
            )
        })
        .await;
        Self {
            f,
            issuer,
            key: WorkloadKey::new(),
            clock,
        }
    }

    /// WIT claims from `issuer` for `sub` binding the test key, issued at the test clock's
    /// now (not the system clock's, which runs on) and valid five minutes.
    fn wit_claims_from(&self, issuer: &WitIssuer, sub: &str) -> Value {
        let mut claims = issuer.claims(sub, &self.key.jwk());
        claims["iat"] = json!(self.clock.unix());
        claims["exp"] = json!(self.clock.unix() + 300);
        claims
    }

    fn wit(&self) -> String {
        self.issuer
            .sign(&self.wit_claims_from(&self.issuer, CALLER_ID))
    }

    fn wpt_claims(&self, wit: &str) -> Value {
        self.key.claims(wit, AUD, self.clock.unix(), 30)
    }

    /// A valid WIT and a valid WPT for `/hello/ada`.
    fn pair(&self) -> (String, String) {
        let wit = self.wit();
        let wpt = self.key.sign(&self.wpt_claims(&wit));
        (wit, wpt)
    }

    async fn get(&self, headers: &[(&str, &str)]) -> PeerResponse {
        self.f
            .caller(CALLER_ID)
            .send(self.f.addr, Method::GET, "/hello/ada", headers, Vec::new())
            .await
            .unwrap()
    }

    async fn send_pair(&self, wit: &str, wpt: &str) -> PeerResponse {
        self.get(&[(WIT_HEADER, wit), (WPT_HEADER, wpt)]).await
    }

    /// Expects `code` (and its status), a request ID, and that neither the policy nor the
    /// handler saw the request.
    async fn assert_refused(&self, response: PeerResponse, status: u16, code: &str) {
        assert_eq!(response.status, status, "{}", response.text());
        let body = response.json().unwrap();
        assert_eq!(body["error_code"], code, "{body}");
        assert_eq!(body["request_id"].as_str().unwrap().len(), 32, "{body}");
        assert_eq!(self.f.handler_calls(), 0);
        assert!(self.f.audit().await.decisions().is_empty());
    }
}

#[tokio::test]
async fn a_valid_pair_is_admitted() {
    let s = Setup::start(|c| c).await;
    let (wit, wpt) = s.pair();
    let response = s.send_pair(&wit, &wpt).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(s.f.handler_calls(), 1);
}

#[tokio::test]
async fn a_missing_wpt_is_refused_when_required() {
    let s = Setup::start(|c| c).await;
    let wit = s.wit();
    let response = s.get(&[(WIT_HEADER, &wit)]).await;
    s.assert_refused(response, 401, "WIMSE_MISSING").await;
    s.assert_refused(s.get(&[]).await, 401, "WIMSE_MISSING")
        .await;
}

#[tokio::test]
async fn without_require_a_request_without_headers_passes_but_a_bad_pair_does_not() {
    let s = Setup::start(|c| c.require(false)).await;
    assert_eq!(s.get(&[]).await.status, 200);
    let wit = s.wit();
    let response = s.get(&[(WIT_HEADER, &wit)]).await;
    assert_eq!(response.status, 401, "{}", response.text());
}

#[tokio::test]
async fn an_expired_wpt_is_refused() {
    let s = Setup::start(|c| c.leeway(Duration::ZERO)).await;
    let (wit, wpt) = s.pair();
    s.clock.advance(Duration::from_secs(31));
    let response = s.send_pair(&wit, &wpt).await;
    s.assert_refused(response, 401, "WIMSE_INVALID").await;
}

#[tokio::test]
async fn a_wpt_living_longer_than_allowed_is_refused() {
    let s = Setup::start(|c| c.leeway(Duration::ZERO)).await;
    let wit = s.wit();
    let claims = s.key.claims(&wit, AUD, s.clock.unix(), 3600);
    let response = s.send_pair(&wit, &s.key.sign(&claims)).await;
    s.assert_refused(response, 401, "WIMSE_INVALID").await;
}

#[tokio::test]
async fn a_replayed_wpt_is_refused() {
    let s = Setup::start(|c| c).await;
    let (wit, wpt) = s.pair();
    assert_eq!(s.send_pair(&wit, &wpt).await.status, 200);
    let response = s.send_pair(&wit, &wpt).await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(response.json().unwrap()["error_code"], "WIMSE_INVALID");
    assert_eq!(
        s.f.handler_calls(),
        1,
        "the replay never reached the handler"
    );
}

#[tokio::test]
async fn a_full_replay_cache_refuses_new_proofs_until_entries_expire() {
    let cache = Arc::new(InMemoryReplayCache::new(1));
    let s = Setup::start(|c| c.replay_cache(cache.clone()).leeway(Duration::ZERO)).await;
    let (wit, wpt) = s.pair();
    assert_eq!(s.send_pair(&wit, &wpt).await.status, 200);
    let (wit2, wpt2) = s.pair();
    let response = s.send_pair(&wit2, &wpt2).await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json().unwrap()["error_code"], "WIMSE_UNAVAILABLE");
    // Once the first proof has expired its entry goes, and a new proof is recorded.
    s.clock.advance(Duration::from_secs(31));
    let (wit3, wpt3) = s.pair();
    assert_eq!(s.send_pair(&wit3, &wpt3).await.status, 200);
}

#[tokio::test]
async fn a_wpt_for_another_uri_is_refused() {
    let s = Setup::start(|c| c).await;
    let wit = s.wit();
    for aud in [
        "https://ligand.invalid/hello/bob",
        "https://other.invalid/hello/ada",
        "http://ligand.invalid/hello/ada",
        "https://ligand.invalid/hello/ada/",
    ] {
        let claims = s.key.claims(&wit, aud, s.clock.unix(), 30);
        let response = s.send_pair(&wit, &s.key.sign(&claims)).await;
        s.assert_refused(response, 401, "WIMSE_INVALID").await;
    }
}

#[tokio::test]
async fn a_wpt_signed_by_another_key_than_cnf_jwk_is_refused() {
    let s = Setup::start(|c| c).await;
    let wit = s.wit();
    let other = WorkloadKey::new();
    let wpt = other.sign(&s.wpt_claims(&wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
}

#[tokio::test]
async fn a_wpt_bound_to_another_wit_is_refused() {
    let s = Setup::start(|c| c).await;
    let wit = s.wit();
    let other_wit = s.wit();
    let wpt = s.key.sign(&s.wpt_claims(&other_wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
}

#[tokio::test]
async fn a_wit_from_an_untrusted_issuer_is_refused() {
    let s = Setup::start(|c| c).await;
    // Same `kid`, another key: the signature does not verify. Another `kid`: unknown key.
    for rogue in [WitIssuer::new("wit-1"), WitIssuer::new("rogue")] {
        let wit = rogue.sign(&s.wit_claims_from(&rogue, CALLER_ID));
        let wpt = s.key.sign(&s.wpt_claims(&wit));
        s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
            .await;
    }
}

#[tokio::test]
async fn a_wit_whose_subject_is_not_the_mtls_peer_is_refused() {
    let s = Setup::start(|c| c).await;
    let wit = s
        .issuer
        .sign(&s.wit_claims_from(&s.issuer, "spiffe://example.org/service/someone-else"));
    let wpt = s.key.sign(&s.wpt_claims(&wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
    let not_spiffe = s.issuer.sign(&s.wit_claims_from(&s.issuer, "caller"));
    let wpt = s.key.sign(&s.wpt_claims(&not_spiffe));
    s.assert_refused(s.send_pair(&not_spiffe, &wpt).await, 401, "WIMSE_INVALID")
        .await;
}

#[tokio::test]
async fn tokens_of_another_type_are_refused() {
    let s = Setup::start(|c| c).await;
    let claims = s.wit_claims_from(&s.issuer, CALLER_ID);
    // A JWT-SVID (typ JWT or none) or a Transaction Token from a trusted key, as the WIT.
    for typ in [Some("JWT"), None, Some("txntoken+jwt"), Some("wpt+jwt")] {
        let wit = s.issuer.sign_with_typ(typ, &claims);
        let wpt = s.key.sign(&s.wpt_claims(&wit));
        s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
            .await;
    }
    // A Transaction Token's own issuer and key, as the WIT.
    let txn = TxnIssuer::new("wit-1").token(TRUST_DOMAIN, CALLER_ID);
    let wpt = s.key.sign(&s.wpt_claims(&txn));
    s.assert_refused(s.send_pair(&txn, &wpt).await, 401, "WIMSE_INVALID")
        .await;
    // The WIT presented as the WPT, and a WPT with a WIT's typ.
    let wit = s.wit();
    s.assert_refused(s.send_pair(&wit, &wit).await, 401, "WIMSE_INVALID")
        .await;
    let wpt = s.key.sign_with_typ(Some("wit+jwt"), &s.wpt_claims(&wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = Setup::start(|c| c).await;
    let unsigned = |typ: &str, claims: &Value| {
        let header = json!({"alg": "none", "typ": typ, "kid": "wit-1"});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let wit = unsigned("wit+jwt", &s.wit_claims_from(&s.issuer, CALLER_ID));
    let wpt = s.key.sign(&s.wpt_claims(&wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
    let wit = s.wit();
    let wpt = unsigned("wpt+jwt", &s.wpt_claims(&wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
}

#[tokio::test]
async fn a_txn_token_must_be_bound_by_tth() {
    let s = Setup::start(|c| c).await;
    let txn = TxnIssuer::new("txn-1").token(TRUST_DOMAIN, "user-42");
    let (wit, wpt) = s.pair();
    let response = s
        .get(&[
            (WIT_HEADER, &wit),
            (WPT_HEADER, &wpt),
            (TXN_TOKEN_HEADER, &txn),
        ])
        .await;
    s.assert_refused(response, 401, "WIMSE_INVALID").await;
    // Bound to another Transaction Token.
    let mut claims = s.wpt_claims(&wit);
    claims["tth"] = json!(token_hash("another token"));
    let wpt = s.key.sign(&claims);
    let response = s
        .get(&[
            (WIT_HEADER, &wit),
            (WPT_HEADER, &wpt),
            (TXN_TOKEN_HEADER, &txn),
        ])
        .await;
    s.assert_refused(response, 401, "WIMSE_INVALID").await;
    // Bound to this one: admitted (no Transaction Token verifier is configured).
    let mut claims = s.wpt_claims(&wit);
    claims["tth"] = json!(token_hash(&txn));
    let wpt = s.key.sign(&claims);
    let response = s
        .get(&[
            (WIT_HEADER, &wit),
            (WPT_HEADER, &wpt),
            (TXN_TOKEN_HEADER, &txn),
        ])
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn an_authorization_header_must_be_bound_by_ath() {
    let s = Setup::start(|c| c).await;
    let (wit, wpt) = s.pair();
    let response = s
        .get(&[
            (WIT_HEADER, &wit),
            (WPT_HEADER, &wpt),
            ("authorization", "Bearer abc"),
        ])
        .await;
    s.assert_refused(response, 401, "WIMSE_INVALID").await;
    let mut claims = s.wpt_claims(&wit);
    claims["ath"] = json!(token_hash("abc"));
    let wpt = s.key.sign(&claims);
    let response = s
        .get(&[
            (WIT_HEADER, &wit),
            (WPT_HEADER, &wpt),
            ("authorization", "Bearer abc"),
        ])
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn an_expired_wit_is_refused() {
    let s = Setup::start(|c| c.leeway(Duration::ZERO)).await;
    let wit = s.wit();
    // The WIT lives five minutes; a WPT signed after that is fresh, its WIT is not.
    s.clock.advance(Duration::from_secs(301));
    let wpt = s.key.sign(&s.wpt_claims(&wit));
    s.assert_refused(s.send_pair(&wit, &wpt).await, 401, "WIMSE_INVALID")
        .await;
}

#[tokio::test]
async fn repeated_or_garbage_headers_are_malformed() {
    let s = Setup::start(|c| c).await;
    let (wit, wpt) = s.pair();
    let response = s
        .get(&[(WIT_HEADER, &wit), (WIT_HEADER, &wit), (WPT_HEADER, &wpt)])
        .await;
    s.assert_refused(response, 400, "WIMSE_MALFORMED").await;
    let response = s.send_pair("not.a.jwt", &wpt).await;
    s.assert_refused(response, 400, "WIMSE_MALFORMED").await;
    let _ = Clock::now(&*s.clock);
}
