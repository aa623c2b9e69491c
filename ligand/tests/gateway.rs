//! Gateways end to end over real TLS on loopback: an external caller without a client
//! certificate presents an access token; the gateway validates it, mints a Transaction Token,
//! enforces with the caller as a `user` link, hides the credential from the handler, and its
//! calls carry the minted token to internal services that verify it. Every refusal of the
//! access token answers 401 before the limiter, the policy and the handler.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ligand::prelude::*;
use ligand::testkit::{
    AllowList, FakeIdentity, PeerClient, RecordingTelemetry, ScriptedLimiter, TestCa, TxnIssuer,
};
use ligand::{
    CallError, Config, GatewayConfig, HttpBinding, SpiffeId, SubjectTokenConfig, TxnMinter,
    TxnTokenConfig,
};
use ligand_registry_static::StaticRegistry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const TRUST_DOMAIN: &str = "example.org";
const GATEWAY: &str = "spiffe://example.org/service/gateway";
const LEDGER: &str = "spiffe://example.org/service/ledger";
const IDP: &str = "https://idp.example";
const API: &str = "https://api.example.org";
const TTS: &str = "https://gateway.example.org";
const STS_PATH: &str = "/token";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// RFC 7517 appendix A.1's RSA public key: an RSA key the gateway trusts, for the HMAC
/// confusion attack (its public JWK used as an HS256 secret).
const RSA_JWK: &str = r#"{"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","e":"AQAB",
"n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#;

/// What the gateway's handler saw.
#[derive(Debug, Serialize, Deserialize)]
struct Me {
    sub: Option<String>,
    scope: Option<String>,
    req_wl: Option<String>,
    rctx: Option<Value>,
    user: Option<String>,
    peer: Option<String>,
    authorization: bool,
    txn_header: bool,
    chain_header: bool,
}

/// What the ledger saw of a call from the gateway.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    peer: String,
    txn_sub: Option<String>,
    txn_token: Option<String>,
}

struct Edge;

#[ligand::service(gateway)]
impl Edge {
    #[get("/me")]
    async fn me(&self, ctx: Ctx, headers: http::HeaderMap) -> Json<Me> {
        let txn = ctx.txn();
        Json(Me {
            sub: txn.map(|t| t.sub.to_string()),
            scope: txn.and_then(|t| t.scope.as_deref().map(str::to_owned)),
            req_wl: txn.and_then(|t| t.req_wl.as_deref().map(str::to_owned)),
            rctx: txn.and_then(|t| t.rctx.clone()),
            user: ctx.caller().user.as_deref().map(str::to_owned),
            peer: ctx.peer().map(ToString::to_string),
            authorization: headers.contains_key("authorization"),
            txn_header: headers.contains_key("txn-token"),
            chain_header: headers.contains_key(ligand::CHAIN_HEADER),
        })
    }

    #[get("/ledger/{id}")]
    async fn ledger(&self, ctx: Ctx, Path(id): Path<String>) -> Result<Json<Seen>, String> {
        let seen = ctx
            .client::<LedgerApiClient>()
            .entry(&id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(seen))
    }
}

#[ligand::client(service = "spiffe://example.org/service/ledger")]
trait LedgerApi {
    #[get("/entries/{id}")]
    async fn entry(&self, id: &str) -> Result<Seen, CallError>;
}

struct Ledger;

#[ligand::service]
impl Ledger {
    #[get("/entries/{id}")]
    async fn entry(&self, ctx: Ctx, headers: http::HeaderMap) -> Json<Seen> {
        Json(Seen {
            peer: ctx.caller().principal().unwrap_or_default().to_owned(),
            txn_sub: ctx.txn().map(|t| t.sub.to_string()),
            txn_token: headers
                .get("txn-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}

struct World {
    ca: TestCa,
    idp: TxnIssuer,
    tts: TxnIssuer,
    gateway: Server,
    gateway_addr: SocketAddr,
    gateway_audit: Arc<RecordingTelemetry>,
    ledger: Server,
    ledger_audit: Arc<RecordingTelemetry>,
}

impl World {
    /// A ledger verifying Transaction Tokens (required), and a gateway in front of it whose
    /// policy lets `alice` (a user, by the access token's `sub`) read `/me` and the ledger.
    async fn start() -> World {
        // A budget of five requests per subject: enough for every test but the one that
        // exhausts it.
        Self::start_with(ScriptedLimiter::budget(
            5,
            std::time::Duration::from_secs(7),
        ))
        .await
    }

    /// The same, with `limiter` as the gateway's rate limiter.
    async fn start_with(limiter: ScriptedLimiter) -> World {
        let ca = TestCa::new(TRUST_DOMAIN);
        let idp = TxnIssuer::new("idp-1");
        let tts = TxnIssuer::new("tts-1");
        let mut jwks = idp.jwks();
        jwks.keys.push(serde_json::from_str(RSA_JWK).unwrap());
        let minter = TxnMinter::new(
            SubjectTokenConfig::new(jwks, [IDP], API),
            tts.pem().as_bytes(),
            "ES256",
            "tts-1",
            TRUST_DOMAIN,
            GATEWAY,
        )
        .unwrap()
        .issuer(TTS);

        let ledger_audit = Arc::new(RecordingTelemetry::new());
        let ledger = ligand::init(
            Config::builder()
                .identity(FakeIdentity::new(ca.context(ca.svid(LEDGER))))
                .telemetry(ledger_audit.clone())
                .binding(HttpBinding::new("127.0.0.1:0"))
                .policy(AllowList::new().allow(GATEWAY, "GET", "/entries/{id}"))
                .txn_token(
                    TxnTokenConfig::new(minter.jwks().unwrap())
                        .issuers([TTS])
                        .require(true),
                )
                .build(),
        )
        .await
        .unwrap();
        tokio::spawn({
            let ledger = ledger.clone();
            async move { ledger.serve(Ledger).await }
        });
        let ledger_addr = ledger.local_addr().await.unwrap();

        let gateway_audit = Arc::new(RecordingTelemetry::new());
        let gateway = ligand::init_trust_boundary(
            Config::builder()
                .identity(FakeIdentity::new(ca.context(ca.svid(GATEWAY))))
                .telemetry(gateway_audit.clone())
                .rate_limiter(limiter)
                .policy(
                    AllowList::new()
                        .allow("alice", "GET", "/me")
                        .allow("alice", "GET", "/ledger/{id}")
                        .allow("alice", ligand::TOKEN_EXCHANGE_ACTION, STS_PATH)
                        .allow("dave", ligand::TOKEN_EXCHANGE_ACTION, STS_PATH),
                )
                .registry(
                    StaticRegistry::new()
                        .service(LEDGER, [ledger_addr.to_string()])
                        .unwrap(),
                )
                .gateway(GatewayConfig::new("127.0.0.1:0", minter).sts_path(STS_PATH))
                .build(),
        )
        .await
        .unwrap();
        tokio::spawn({
            let gateway = gateway.clone();
            async move { gateway.serve(Edge).await }
        });
        let gateway_addr = gateway.gateway_addr().await.unwrap();
        World {
            ca,
            idp,
            tts,
            gateway,
            gateway_addr,
            gateway_audit,
            ledger,
            ledger_audit,
        }
    }

    /// An external caller: no client certificate, the gateway's SVID verified.
    fn client(&self) -> PeerClient {
        let any = self
            .ca
            .context(self.ca.svid("spiffe://example.org/browser"));
        PeerClient::without_certificate(&any, &SpiffeId::new(GATEWAY).unwrap()).unwrap()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> ligand::testkit::PeerResponse {
        self.client()
            .send(
                self.gateway_addr,
                http::Method::GET,
                path,
                headers,
                Vec::new(),
            )
            .await
            .unwrap()
    }

    fn access_claims(&self, sub: &str) -> Value {
        let now = unix_now();
        json!({"iss": IDP, "aud": API, "sub": sub, "iat": now, "exp": now + 600, "scope": "read"})
    }

    fn access_token(&self, sub: &str) -> String {
        self.idp.sign_access_token(&self.access_claims(sub))
    }

    fn gateway_audit(&self) -> &RecordingTelemetry {
        ligand::testkit::flush_audit_blocking(&self.gateway);
        &self.gateway_audit
    }

    fn ledger_audit(&self) -> &RecordingTelemetry {
        ligand::testkit::flush_audit_blocking(&self.ledger);
        &self.ledger_audit
    }

    /// `POST`s `body` to the token-exchange endpoint with `content_type`.
    async fn exchange_raw(
        &self,
        content_type: &str,
        body: Vec<u8>,
    ) -> ligand::testkit::PeerResponse {
        self.client()
            .send(
                self.gateway_addr,
                http::Method::POST,
                STS_PATH,
                &[("content-type", content_type)],
                body,
            )
            .await
            .unwrap()
    }

    /// `POST`s `params` form-encoded to the token-exchange endpoint.
    async fn exchange(&self, params: &[(&str, &str)]) -> ligand::testkit::PeerResponse {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.exchange_raw("application/x-www-form-urlencoded", body.into_bytes())
            .await
    }

    /// A well-formed exchange of `subject_token`, with `extra` parameters.
    async fn exchange_token(
        &self,
        subject_token: &str,
        extra: &[(&str, &str)],
    ) -> ligand::testkit::PeerResponse {
        let mut params = vec![
            ("grant_type", ligand::TOKEN_EXCHANGE_GRANT),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ];
        params.extend_from_slice(extra);
        self.exchange(&params).await
    }

    /// `response` is a refused exchange: `status`, RFC 6749 `error`, our `error_code`, a
    /// request ID, not cached.
    fn assert_exchange_refused(
        &self,
        response: &ligand::testkit::PeerResponse,
        status: u16,
        error: &str,
        code: &str,
    ) {
        assert_eq!(response.status, status, "{}", response.text());
        let body = response.json().unwrap();
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["error_code"], code, "{body}");
        assert_eq!(body["request_id"].as_str().unwrap().len(), 32, "{body}");
        assert_eq!(response.headers["cache-control"], "no-store");
        assert!(body.get("access_token").is_none());
    }

    /// `token` as a bearer credential is refused with 401 and `code`, before the policy.
    async fn assert_refused(&self, authorization: Option<&str>, code: &str) {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let response = self.get("/me", &headers).await;
        assert_eq!(
            response.status,
            401,
            "{authorization:?}: {}",
            response.text()
        );
        let body = response.json().unwrap();
        assert_eq!(body["error_code"], code, "{authorization:?}: {body}");
        assert_eq!(body["request_id"].as_str().unwrap().len(), 32, "{body}");
        let challenge = response.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(
            self.gateway_audit().decisions().is_empty(),
            "refused before the policy"
        );
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_valid_access_token_reaches_the_handler_as_a_user_with_txn_claims_and_no_credential() {
    let w = World::start().await;
    let token = w.access_token("alice");
    let response = w
        .get(
            "/me",
            &[
                ("authorization", &bearer(&token)),
                // Forged by the caller: never reaches the handler, never trusted.
                ("txn-token", "forged"),
                (ligand::CHAIN_HEADER, "forged"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let me: Me = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(me.sub.as_deref(), Some("alice"));
    assert_eq!(me.scope.as_deref(), Some("read"));
    assert_eq!(me.req_wl.as_deref(), Some(GATEWAY));
    assert_eq!(me.rctx, Some(json!({"req_ip": "127.0.0.1"})));
    assert_eq!(me.user.as_deref(), Some("alice"));
    assert_eq!(me.peer, None, "an external caller has no SPIFFE ID");
    assert!(!me.authorization, "Authorization is stripped");
    assert!(
        !me.txn_header && !me.chain_header,
        "caller token headers are stripped"
    );

    let decisions = w.gateway_audit().decisions();
    assert_eq!(decisions.len(), 1);
    let input = serde_json::to_value(&*decisions[0].input).unwrap();
    assert_eq!(input["peer"]["user"], "alice");
    assert_eq!(input["peer"]["verified"], true);
    assert!(input["peer"].get("workload").is_none());
    // The limiter keys on this principal: the IdP-vouched `sub`, never a caller's string.
    assert_eq!(decisions[0].input.peer.principal(), Some("alice"));
    assert_eq!(input["txn"]["sub"], "alice");
    assert_eq!(input["txn"]["req_wl"], GATEWAY);
    assert_eq!(input["txn"]["iss"], TTS);
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn the_policy_still_decides_for_an_authenticated_caller() {
    let w = World::start().await;
    let response = w
        .get("/me", &[("authorization", &bearer(&w.access_token("bob")))])
        .await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json().unwrap()["error_code"], "POLICY_DENIED");
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn every_bad_access_token_is_refused_with_401() {
    let w = World::start().await;
    w.assert_refused(None, "ACCESS_TOKEN_MISSING").await;
    w.assert_refused(Some("Basic YWxpY2U6c2VjcmV0"), "INVALID_TOKEN")
        .await;
    w.assert_refused(Some("Bearer not-a-jwt"), "INVALID_TOKEN")
        .await;

    let mut expired = w.access_claims("alice");
    expired["iat"] = json!(unix_now() - 7200);
    expired["exp"] = json!(unix_now() - 3600);
    let expired = w.idp.sign_access_token(&expired);
    w.assert_refused(Some(&bearer(&expired)), "INVALID_TOKEN")
        .await;

    let mut wrong_aud = w.access_claims("alice");
    wrong_aud["aud"] = json!("https://other.example.org");
    let wrong_aud = w.idp.sign_access_token(&wrong_aud);
    w.assert_refused(Some(&bearer(&wrong_aud)), "INVALID_TOKEN")
        .await;

    let mut wrong_iss = w.access_claims("alice");
    wrong_iss["iss"] = json!("https://evil.example");
    let wrong_iss = w.idp.sign_access_token(&wrong_iss);
    w.assert_refused(Some(&bearer(&wrong_iss)), "INVALID_TOKEN")
        .await;

    // Same kid, another key: the signature does not verify.
    let forger = TxnIssuer::new("idp-1");
    let forged = forger.sign_access_token(&w.access_claims("alice"));
    w.assert_refused(Some(&bearer(&forged)), "INVALID_TOKEN")
        .await;

    // alg none, unsigned.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"idp-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(w.access_claims("alice").to_string());
    let none = format!("{header}.{payload}.");
    w.assert_refused(Some(&bearer(&none)), "INVALID_TOKEN")
        .await;

    // HMAC/public-key confusion: HS256 keyed with the trusted RSA public key.
    {
        use jwt_simple::prelude::*;
        let key = HS256Key::from_bytes(RSA_JWK.as_bytes()).with_key_id("rsa-1");
        let claims = Claims::create(Duration::from_mins(10))
            .with_issuer(IDP)
            .with_audience(API)
            .with_subject("alice");
        let confused = key.authenticate(claims).unwrap();
        w.assert_refused(Some(&bearer(&confused)), "INVALID_TOKEN")
            .await;
    }

    // A Transaction Token is not an access token, even one of a trusted key.
    let txn = w.idp.token(TRUST_DOMAIN, "alice");
    w.assert_refused(Some(&bearer(&txn)), "INVALID_TOKEN").await;

    // Two Authorization lines: ambiguous, refused.
    let token = w.access_token("alice");
    let response = w
        .get(
            "/me",
            &[
                ("authorization", &bearer(&token)),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.json().unwrap()["error_code"], "INVALID_TOKEN");
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn the_minted_token_travels_to_internal_services_that_verify_it() {
    let w = World::start().await;
    let response = w
        .get(
            "/ledger/7",
            &[("authorization", &bearer(&w.access_token("alice")))],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen: Seen = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        seen.peer, GATEWAY,
        "the internal hop sees the gateway's mTLS identity"
    );
    assert_eq!(
        seen.txn_sub.as_deref(),
        Some("alice"),
        "and the verified claims"
    );
    let token = seen.txn_token.expect("Txn-Token forwarded");
    let decisions = w.ledger_audit().decisions();
    assert_eq!(
        decisions[0].input.txn.as_ref().unwrap().sub.as_ref(),
        "alice"
    );

    // Verified with a second, independent JWT library against the TTS public key.
    use jwt_simple::prelude::*;
    #[derive(Serialize, Deserialize)]
    struct Txn {
        txn: String,
        req_wl: String,
        scope: String,
    }
    let metadata = jwt_simple::token::Token::decode_metadata(&token).unwrap();
    assert_eq!(metadata.signature_type(), Some("txntoken+jwt"));
    assert_eq!(metadata.key_id(), Some("tts-1"));
    let public = ES256KeyPair::from_pem(&w.tts.pem()).unwrap().public_key();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_iter([TTS.to_owned()])),
        allowed_audiences: Some(HashSet::from_iter([TRUST_DOMAIN.to_owned()])),
        ..VerificationOptions::default()
    };
    let claims = public.verify_token::<Txn>(&token, Some(options)).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    assert_eq!(claims.custom.req_wl, GATEWAY);
    assert_eq!(claims.custom.scope, "read");
    assert!(!claims.custom.txn.is_empty());
    // The IdP's key did not sign it.
    let idp = ES256KeyPair::from_pem(&w.idp.pem()).unwrap().public_key();
    assert!(idp.verify_token::<Txn>(&token, None).is_err());
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn the_gateway_listener_does_not_ask_for_a_client_certificate_and_mtls_routes_stay_closed() {
    let w = World::start().await;
    // A workload with an SVID calling the gateway listener is still just an external
    // caller: no access token, no entry.
    let workload = PeerClient::new(
        &w.ca.context(w.ca.svid(LEDGER)),
        Some(&SpiffeId::new(GATEWAY).unwrap()),
    )
    .unwrap();
    let response = workload.get(w.gateway_addr, "/me").await.unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json().unwrap()["error_code"],
        "ACCESS_TOKEN_MISSING"
    );
    // Unknown routes are refused and audited with the caller's address.
    let response = w.get("/nope", &[]).await;
    assert_eq!(response.status, 404);
    let decisions = w.gateway_audit().decisions();
    assert_eq!(
        decisions[0].input.peer.external_party.as_deref(),
        Some("127.0.0.1")
    );
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn a_gateway_service_without_a_gateway_configuration_is_not_served() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let server = ligand::init(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(GATEWAY))))
            .binding(HttpBinding::new("127.0.0.1:0"))
            .policy(AllowList::new())
            .build(),
    )
    .await
    .unwrap();
    let error = server.serve(Edge).await.unwrap_err();
    assert!(matches!(error, ligand::ServeError::NoGateway), "{error}");
    server.close().await;
}

// === the token-exchange endpoint (RFC 8693) ===

#[tokio::test]
async fn an_access_token_is_exchanged_for_a_transaction_token_the_policy_allowed() {
    let w = World::start().await;
    let mut claims = w.access_claims("alice");
    claims["scope"] = json!("read write");
    let subject = w.idp.sign_access_token(&claims);
    let response = w
        .exchange_token(
            &subject,
            &[
                ("requested_token_type", ligand::TXN_TOKEN_TYPE),
                ("audience", TRUST_DOMAIN),
                ("scope", "read"),
                ("resource", "https://api.example.org/ledger"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["cache-control"], "no-store");
    let body = response.json().unwrap();
    assert_eq!(body["issued_token_type"], ligand::TXN_TOKEN_TYPE);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["scope"], "read", "narrowed, so said");
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(expires_in > 0 && expires_in <= 300, "{body}");
    let token = body["access_token"].as_str().unwrap();

    // Verified with an independent JWT library against the TTS public key.
    use jwt_simple::prelude::*;
    #[derive(Serialize, Deserialize)]
    struct Txn {
        txn: String,
        req_wl: String,
        scope: String,
        tctx: Value,
        rctx: Value,
    }
    let metadata = jwt_simple::token::Token::decode_metadata(token).unwrap();
    assert_eq!(metadata.signature_type(), Some("txntoken+jwt"));
    assert_eq!(metadata.key_id(), Some("tts-1"));
    let public = ES256KeyPair::from_pem(&w.tts.pem()).unwrap().public_key();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_iter([TTS.to_owned()])),
        allowed_audiences: Some(HashSet::from_iter([TRUST_DOMAIN.to_owned()])),
        ..VerificationOptions::default()
    };
    let verified = public.verify_token::<Txn>(token, Some(options)).unwrap();
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    assert_eq!(verified.custom.req_wl, GATEWAY);
    assert_eq!(verified.custom.scope, "read");
    assert_eq!(
        verified.custom.tctx,
        json!({"resource": "https://api.example.org/ledger"})
    );
    assert_eq!(verified.custom.rctx, json!({"req_ip": "127.0.0.1"}));
    assert!(!verified.custom.txn.is_empty());

    // One decision, through the pipeline: the subject as a user, the exchange as the action.
    let decisions = w.gateway_audit().decisions();
    assert_eq!(decisions.len(), 1);
    let input = serde_json::to_value(&*decisions[0].input).unwrap();
    assert_eq!(input["peer"]["user"], "alice");
    assert_eq!(input["action"]["name"], "token_exchange");
    assert_eq!(input["resource"]["value"], STS_PATH);
    assert_eq!(input["txn"]["scope"], "read");
    assert_eq!(
        input["txn"]["tctx"]["resource"],
        "https://api.example.org/ledger"
    );
    assert_eq!(w.gateway_audit().rate_limits().len(), 1, "rate limited too");

    // Without a scope asked for, the subject token's whole scope, and no `scope` echoed.
    let response = w.exchange_token(&subject, &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.json().unwrap().get("scope").is_none());
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn every_malformed_exchange_is_refused_before_the_policy() {
    let w = World::start().await;
    let subject = w.access_token("alice");

    let wrong_grant = w
        .exchange(&[
            ("grant_type", "client_credentials"),
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .await;
    w.assert_exchange_refused(
        &wrong_grant,
        400,
        "unsupported_grant_type",
        "INVALID_REQUEST",
    );

    let no_grant = w
        .exchange(&[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .await;
    w.assert_exchange_refused(&no_grant, 400, "invalid_request", "INVALID_REQUEST");

    let no_subject = w
        .exchange(&[
            ("grant_type", ligand::TOKEN_EXCHANGE_GRANT),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .await;
    w.assert_exchange_refused(&no_subject, 400, "invalid_request", "INVALID_REQUEST");

    let no_subject_type = w
        .exchange(&[
            ("grant_type", ligand::TOKEN_EXCHANGE_GRANT),
            ("subject_token", &subject),
        ])
        .await;
    w.assert_exchange_refused(&no_subject_type, 400, "invalid_request", "INVALID_REQUEST");

    let saml = w
        .exchange(&[
            ("grant_type", ligand::TOKEN_EXCHANGE_GRANT),
            ("subject_token", &subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ])
        .await;
    w.assert_exchange_refused(&saml, 400, "unsupported_token_type", "INVALID_REQUEST");

    let wants_id_token = w
        .exchange_token(
            &subject,
            &[(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            )],
        )
        .await;
    w.assert_exchange_refused(&wants_id_token, 400, "invalid_request", "INVALID_REQUEST");

    let other_audience = w
        .exchange_token(&subject, &[("audience", "https://elsewhere.example")])
        .await;
    w.assert_exchange_refused(&other_audience, 400, "invalid_target", "INVALID_REQUEST");

    let more_scope = w.exchange_token(&subject, &[("scope", "admin")]).await;
    w.assert_exchange_refused(&more_scope, 400, "invalid_scope", "INVALID_REQUEST");

    let twice = w
        .exchange_token(&subject, &[("subject_token", &subject)])
        .await;
    w.assert_exchange_refused(&twice, 400, "invalid_request", "INVALID_REQUEST");

    let actor = w
        .exchange_token(&subject, &[("actor_token", &subject)])
        .await;
    w.assert_exchange_refused(&actor, 400, "invalid_request", "INVALID_REQUEST");

    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", ligand::TOKEN_EXCHANGE_GRANT),
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .finish();
    let json_body = w
        .exchange_raw("application/json", form.clone().into_bytes())
        .await;
    w.assert_exchange_refused(&json_body, 400, "invalid_request", "INVALID_REQUEST");
    let too_large = w
        .exchange_raw(
            "application/x-www-form-urlencoded",
            format!("{form}&padding={}", "a".repeat(70 * 1024)).into_bytes(),
        )
        .await;
    w.assert_exchange_refused(&too_large, 400, "invalid_request", "INVALID_REQUEST");

    // Only POST.
    let get = w.get(STS_PATH, &[]).await;
    assert_eq!(get.status, 405);

    assert!(
        w.gateway_audit().decisions().is_empty(),
        "refused before the policy"
    );
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn a_bad_subject_token_is_an_invalid_grant_and_an_unknown_issuer_is_named() {
    let w = World::start().await;
    // Same kid, another key: the signature does not verify.
    let forged = TxnIssuer::new("idp-1").sign_access_token(&w.access_claims("alice"));
    let response = w.exchange_token(&forged, &[]).await;
    w.assert_exchange_refused(&response, 400, "invalid_grant", "INVALID_TOKEN");

    let mut expired = w.access_claims("alice");
    expired["iat"] = json!(unix_now() - 7200);
    expired["exp"] = json!(unix_now() - 3600);
    let response = w
        .exchange_token(&w.idp.sign_access_token(&expired), &[])
        .await;
    w.assert_exchange_refused(&response, 400, "invalid_grant", "INVALID_TOKEN");

    let response = w.exchange_token("not-a-jwt", &[]).await;
    w.assert_exchange_refused(&response, 400, "invalid_grant", "INVALID_TOKEN");

    // A Transaction Token is not an access token, even of the identity provider's key.
    let mut txn = w.idp.claims(TRUST_DOMAIN, "alice");
    txn["iss"] = json!(IDP);
    txn["aud"] = json!(API);
    let response = w.exchange_token(&w.idp.sign(&txn), &[]).await;
    w.assert_exchange_refused(&response, 400, "invalid_grant", "INVALID_TOKEN");

    // An issuer off the allow-list, validly signed or not: named, before any key is tried.
    let mut stranger = w.access_claims("alice");
    stranger["iss"] = json!("https://evil.example");
    for token in [
        w.idp.sign_access_token(&stranger),
        TxnIssuer::new("evil-1").sign_access_token(&stranger),
    ] {
        let response = w.exchange_token(&token, &[]).await;
        w.assert_exchange_refused(&response, 400, "invalid_grant", "ISSUER_NOT_ALLOWED");
    }
    // A forged token naming an allowed issuer gains nothing from it.
    let response = w.exchange_token(&forged, &[]).await;
    w.assert_exchange_refused(&response, 400, "invalid_grant", "INVALID_TOKEN");

    assert!(w.gateway_audit().decisions().is_empty());
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn the_policy_decides_every_exchange_and_the_limiter_counts_them() {
    let w = World::start().await;
    // bob's access token is valid, but the policy does not let bob exchange it.
    let response = w.exchange_token(&w.access_token("bob"), &[]).await;
    w.assert_exchange_refused(&response, 403, "access_denied", "POLICY_DENIED");
    let decisions = w.gateway_audit().decisions();
    assert_eq!(decisions.len(), 1, "the denial is audited once");
    assert_eq!(decisions[0].input.peer.principal(), Some("bob"));
    assert_eq!(decisions[0].input.action.name, "token_exchange");

    // dave may exchange, five times; the sixth is rate limited, with Retry-After.
    let subject = w.access_token("dave");
    for _ in 0..5 {
        let response = w.exchange_token(&subject, &[]).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let response = w.exchange_token(&subject, &[]).await;
    w.assert_exchange_refused(&response, 429, "temporarily_unavailable", "RATE_LIMITED");
    assert_eq!(response.headers["retry-after"], "7");
    assert_eq!(
        w.gateway_audit().decisions().len(),
        6,
        "the limited exchange never reached the policy"
    );
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn an_exchange_fails_closed_when_the_limiter_fails() {
    let w = World::start_with(ScriptedLimiter::failing()).await;
    let response = w.exchange_token(&w.access_token("alice"), &[]).await;
    w.assert_exchange_refused(
        &response,
        503,
        "temporarily_unavailable",
        "RATE_LIMITER_UNAVAILABLE",
    );
    assert!(
        w.gateway_audit().decisions().is_empty(),
        "never reached the policy"
    );
    w.gateway.close().await;
    w.ledger.close().await;
}

#[tokio::test]
async fn a_gateway_with_a_non_literal_sts_path_is_not_served() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let idp = TxnIssuer::new("idp-1");
    let tts = TxnIssuer::new("tts-1");
    let minter = TxnMinter::new(
        SubjectTokenConfig::new(idp.jwks(), [IDP], API),
        tts.pem().as_bytes(),
        "ES256",
        "tts-1",
        TRUST_DOMAIN,
        GATEWAY,
    )
    .unwrap();
    let server = ligand::init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(GATEWAY))))
            .policy(AllowList::new())
            .gateway(GatewayConfig::new("127.0.0.1:0", minter).sts_path("/token/{id}"))
            .build(),
    )
    .await
    .unwrap();
    let error = server.serve(Edge).await.unwrap_err();
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("sts_path"), "{error}: {cause}");
    server.close().await;
}
