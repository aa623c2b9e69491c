//! Outbound calls end to end over real mTLS on loopback: a caller service reaches a callee
//! through the transport (static registry → pooled TLS 1.3 → exact SPIFFE ID), refusals come
//! back typed, every call is recorded, and shutdown drains calls in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ligand::prelude::*;
use ligand::provider::OutboundOutcome;
use ligand::testkit::{AllowList, FakeIdentity, RecordingTelemetry, ScriptedLimiter, TestCa};
use ligand::{CallError, ChainVersion, Config, ConfigBuilder, HttpBinding, SpiffeId};
use ligand_registry_static::StaticRegistry;
use serde::{Deserialize, Serialize};

const TRUST_DOMAIN: &str = "example.org";
const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";
const LEDGER: &str = "spiffe://example.org/service/ledger";
const IMPOSTOR: &str = "spiffe://example.org/service/impostor";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Account {
    id: String,
    peer: String,
    note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}

struct Accounts;

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, ctx: Ctx, Path(id): Path<String>) -> Json<Account> {
        Json(Account {
            id,
            peer: ctx.caller().principal().unwrap_or_default().to_owned(),
            note: None,
        })
    }

    #[post("/accounts/{id}/notes")]
    async fn note(
        &self,
        ctx: Ctx,
        Path(id): Path<String>,
        Json(note): Json<Note>,
    ) -> Json<Account> {
        Json(Account {
            id,
            peer: ctx.caller().principal().unwrap_or_default().to_owned(),
            note: Some(note.text),
        })
    }

    #[get("/slow")]
    async fn slow(&self) -> Json<()> {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Json(())
    }

    #[get("/missing")]
    async fn missing(&self) -> StatusCode {
        StatusCode::NOT_FOUND
    }

    #[get("/broken")]
    async fn broken(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    #[post("/broken")]
    async fn broken_post(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// Calls the ledger while serving: the chain and the Transaction Token go along.
    #[get("/accounts/{id}/ledger")]
    async fn ledger(&self, ctx: Ctx, Path(id): Path<String>) -> Result<Json<Seen>, String> {
        let seen = ctx
            .client::<LedgerApiClient>()
            .entry(&id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(seen))
    }

    /// Calls the ledger while serving and says which trace and span this request had.
    #[get("/traced")]
    async fn traced(&self, ctx: Ctx) -> Result<Json<Traced>, String> {
        let ledger = ctx
            .client::<LedgerApiClient>()
            .trace()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(Traced {
            trace_id: ctx.trace().trace_id().to_string(),
            span_id: ctx.trace().span_id().to_string(),
            ledger,
        }))
    }
}

/// The trace context a service saw.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TraceSeen {
    traceparent: Option<String>,
    tracestate: Option<String>,
    trace_id: String,
}

/// The accounts request's trace and span, and what the ledger saw of the call it made.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Traced {
    trace_id: String,
    span_id: String,
    ledger: TraceSeen,
}

#[ligand::client(service = "spiffe://example.org/service/accounts")]
trait AccountsApi {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Account, CallError>;

    /// The same account, keyed: under ring_hash one account's calls stay on one endpoint.
    #[get("/accounts/{id}")]
    async fn sticky(&self, #[hash_key] id: &str) -> Result<Account, CallError>;

    #[post("/accounts/{id}/notes")]
    async fn note(&self, id: &str, note: &Note) -> Result<Account, CallError>;

    #[get("/slow")]
    async fn slow(&self) -> Result<(), CallError>;

    #[get("/missing")]
    async fn missing(&self) -> Result<(), CallError>;

    #[get("/broken")]
    async fn broken(&self) -> Result<(), CallError>;

    #[post("/broken")]
    async fn broken_post(&self) -> Result<(), CallError>;

    #[get("/accounts/{id}/ledger")]
    async fn ledger(&self, id: &str) -> Result<Seen, CallError>;
}

/// What the ledger saw of a call: its chain (principal, verified), its peer and the
/// Transaction Token it received.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Seen {
    entry: String,
    chain: Vec<(String, bool)>,
    peer: String,
    txn: Option<String>,
}

#[ligand::client(service = "spiffe://example.org/service/ledger")]
trait LedgerApi {
    #[get("/entries/{id}")]
    async fn entry(&self, id: &str) -> Result<Seen, CallError>;

    #[get("/trace")]
    async fn trace(&self) -> Result<TraceSeen, CallError>;
}

struct Ledger;

#[ligand::service]
impl Ledger {
    #[get("/entries/{id}")]
    async fn entry(
        &self,
        ctx: Ctx,
        headers: http::HeaderMap,
        Path(id): Path<String>,
    ) -> Json<Seen> {
        Json(Seen {
            entry: id,
            chain: ctx
                .chain()
                .links()
                .iter()
                .map(|l| (l.principal().unwrap_or("").to_owned(), l.verified))
                .collect(),
            peer: ctx.caller().principal().unwrap_or_default().to_owned(),
            txn: headers
                .get("txn-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }

    #[get("/trace")]
    async fn trace(&self, ctx: Ctx, headers: http::HeaderMap) -> Json<TraceSeen> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Json(TraceSeen {
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            trace_id: ctx.trace().trace_id().to_string(),
        })
    }
}

/// One served service.
struct Running {
    server: Server,
    addr: SocketAddr,
    telemetry: Arc<RecordingTelemetry>,
    identity: Arc<FakeIdentity>,
}

async fn serve(
    ca: &TestCa,
    id: &str,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Running {
    serve_service(ca, id, Accounts, configure).await
}

/// `service` served as `id`, configured further by `configure`.
async fn serve_service<S: ligand::Service>(
    ca: &TestCa,
    id: &str,
    service: S,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Running {
    let identity = Arc::new(FakeIdentity::new(ca.context(ca.svid(id))));
    let telemetry = Arc::new(RecordingTelemetry::new());
    let config = configure(
        Config::builder()
            .identity(identity.clone())
            .telemetry(telemetry.clone())
            .binding(HttpBinding::new("127.0.0.1:0")),
    )
    .build();
    let server = ligand::init(config).await.expect("init");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(service).await }
    });
    let addr = server.local_addr().await.expect("listening");
    Running {
        server,
        addr,
        telemetry,
        identity,
    }
}

fn allow_gateway() -> AllowList {
    AllowList::new().allow(GATEWAY, "*", "*")
}

/// ledger ← accounts: the ledger, allowing accounts `GET route`, and accounts, allowing the
/// gateway and finding the ledger in its registry; `ledger` and `accounts` configure further.
async fn ledger_behind_accounts(
    ca: &TestCa,
    route: &str,
    ledger: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    accounts: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Running, Running) {
    let served = serve_service(ca, LEDGER, Ledger, |c| {
        ledger(c.policy(AllowList::new().allow(ACCOUNTS, "GET", route)))
    })
    .await;
    let ledger_addr = served.addr;
    let front = serve(ca, ACCOUNTS, |c| {
        accounts(
            c.policy(allow_gateway()).registry(
                StaticRegistry::new()
                    .service(LEDGER, [ledger_addr.to_string()])
                    .unwrap(),
            ),
        )
    })
    .await;
    (served, front)
}

/// The callee as ACCOUNTS, and a gateway whose registry lists it.
async fn pair(
    callee: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    caller: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Running, Running) {
    pair_on(&TestCa::new(TRUST_DOMAIN), callee, caller).await
}

async fn pair_on(
    ca: &TestCa,
    callee: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    caller: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Running, Running) {
    let accounts = serve(ca, ACCOUNTS, callee).await;
    let gateway = gateway_to(ca, [accounts.addr.to_string()], caller).await;
    (accounts, gateway)
}

/// A gateway whose registry lists `addresses` for ACCOUNTS, configured further by `caller`.
async fn gateway_to<const N: usize>(
    ca: &TestCa,
    addresses: [String; N],
    caller: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Running {
    let registry = StaticRegistry::new().service(ACCOUNTS, addresses).unwrap();
    serve(ca, GATEWAY, |c| {
        caller(c.policy(AllowList::new()).registry(registry))
    })
    .await
}

fn audit(running: &Running) -> &RecordingTelemetry {
    ligand::testkit::flush_audit_blocking(&running.server);
    &running.telemetry
}

#[tokio::test]
async fn calls_reach_the_peer_over_verified_mtls_and_are_recorded() {
    let (accounts, gateway) = pair(|c| c.policy(allow_gateway()), |c| c).await;
    let client = gateway.server.client::<AccountsApiClient>();

    let account = client.get("a/b c").await.unwrap();
    assert_eq!(
        account,
        Account {
            id: "a/b c".into(),
            peer: GATEWAY.into(),
            note: None
        }
    );
    let noted = client.note("x", &Note { text: "hi".into() }).await.unwrap();
    assert_eq!(noted.note.as_deref(), Some("hi"));

    let calls = audit(&gateway).outbound_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| c.outcome == OutboundOutcome::Success
        && c.status == Some(200)
        && &*c.target == ACCOUNTS
        && &*c.source == GATEWAY
        && *c.address == *accounts.addr.to_string()));
    assert_eq!(calls[1].method, http::Method::POST);
    // The callee decided both with the gateway as the verified peer.
    let decisions = audit(&accounts).decisions();
    assert_eq!(decisions.len(), 2);
}

#[tokio::test]
async fn a_server_presenting_another_identity_is_refused() {
    let ca = TestCa::new(TRUST_DOMAIN);
    // The registry lists the impostor's address under ACCOUNTS.
    let impostor = serve(&ca, IMPOSTOR, |c| c.policy(allow_gateway())).await;
    let gateway = gateway_to(&ca, [impostor.addr.to_string()], |c| c).await;

    let err = gateway
        .server
        .client::<AccountsApiClient>()
        .get("a")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::PeerIdentity { expected, reason, .. }
            if expected == ACCOUNTS && reason.contains(IMPOSTOR)),
        "{err}"
    );
    // Nothing reached the impostor's handlers or policy.
    assert!(audit(&impostor).decisions().is_empty());
    let calls = audit(&gateway).outbound_calls();
    assert_eq!(calls[0].outcome, OutboundOutcome::IdentityMismatch);
}

#[tokio::test]
async fn refusals_by_the_peer_are_typed() {
    let (accounts, gateway) = pair(|c| c.policy(AllowList::new()), |c| c).await;
    let err = gateway
        .server
        .client::<AccountsApiClient>()
        .get("a")
        .await
        .unwrap_err();
    let CallError::Denied {
        code,
        request_id,
        status,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (code.as_str(), *status),
        ("POLICY_DENIED", StatusCode::FORBIDDEN)
    );
    // The request ID is the peer's: its audit record carries the same one.
    let decisions = audit(&accounts).decisions();
    assert_eq!(decisions[0].request_id.as_str(), request_id);

    let (_accounts, gateway) = pair(
        |c| {
            c.policy(allow_gateway())
                .rate_limiter(ScriptedLimiter::budget(0, Duration::from_secs(7)))
        },
        |c| c,
    )
    .await;
    let err = gateway
        .server
        .client::<AccountsApiClient>()
        .get("a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{err}"
    );

    let (_accounts, gateway) = pair(|c| c.policy(allow_gateway()), |c| c).await;
    let err = gateway
        .server
        .client::<AccountsApiClient>()
        .missing()
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Status { status, .. } if status == StatusCode::NOT_FOUND),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_services_and_slow_peers_fail_typed() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let gateway = serve(&ca, GATEWAY, |c| {
        c.policy(AllowList::new()).registry(StaticRegistry::new())
    })
    .await;
    let err = gateway
        .server
        .client::<AccountsApiClient>()
        .get("a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::NoEndpoints { ref service } if service == ACCOUNTS),
        "{err}"
    );
    assert_eq!(
        audit(&gateway).outbound_calls()[0].outcome,
        OutboundOutcome::Refused
    );

    let (_accounts, gateway) = pair(
        |c| c.policy(allow_gateway()),
        |c| c.call_timeout(Duration::from_millis(100)),
    )
    .await;
    let err = gateway
        .server
        .client::<AccountsApiClient>()
        .slow()
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Timeout { after, .. } if after == Duration::from_millis(100)),
        "{err}"
    );
}

#[tokio::test]
async fn rotation_mid_traffic_fails_no_call() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let (accounts, gateway) = pair_on(
        &ca,
        |c| c.policy(allow_gateway()),
        // Every few calls a new connection, so handshakes happen across the rotations.
        |c| c.outbound_max_connection_age(Duration::from_millis(20)),
    )
    .await;
    let client = gateway.server.client::<AccountsApiClient>();
    let traffic = tokio::spawn(async move {
        let mut failures = Vec::new();
        for i in 0..200 {
            if let Err(e) = client.get(&i.to_string()).await {
                failures.push(e.to_string());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        failures
    });
    // Both sides rotate several times while the calls run (same CA, fresh keys).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        accounts.identity.rotate(ca.context(ca.svid(ACCOUNTS)));
        gateway.identity.rotate(ca.context(ca.svid(GATEWAY)));
    }
    let failures = traffic.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(audit(&gateway).outbound_calls().len(), 200);
}

#[tokio::test]
async fn shutdown_drains_calls_in_flight_then_refuses() {
    let (_accounts, gateway) = pair(|c| c.policy(allow_gateway()), |c| c).await;
    let client = gateway.server.client::<AccountsApiClient>();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.slow().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gateway.server.close().await;
    // The call that was running finished; new ones are refused.
    assert!(in_flight.await.unwrap().is_ok());
    let err = client.get("a").await.unwrap_err();
    assert!(matches!(err, CallError::Refused(_)), "{err}");
}

#[tokio::test]
async fn three_services_propagate_a_signed_chain_and_the_transaction_token() {
    let ca = TestCa::new(TRUST_DOMAIN);
    // ledger ← accounts ← gateway, each allowing only its own caller.
    let (_ledger, accounts) = ledger_behind_accounts(&ca, "/entries/{id}", |c| c, |c| c).await;
    let gateway = gateway_to(&ca, [accounts.addr.to_string()], |c| c).await;

    let seen = gateway
        .server
        .client::<AccountsApiClient>()
        .ledger("e1")
        .await
        .unwrap();
    assert_eq!(
        seen,
        Seen {
            entry: "e1".into(),
            // The gateway's link, signed by the gateway and verified by the ledger, then the
            // immediate peer from the handshake.
            chain: vec![(GATEWAY.into(), true), (ACCOUNTS.into(), true)],
            peer: ACCOUNTS.into(),
            txn: None,
        }
    );

    // A caller that is not a Ligand service sends a Transaction Token: it reaches the ledger
    // unchanged, and the caller (verified by mTLS only) is not in the ledger's chain.
    let external = ligand::testkit::PeerClient::new(
        &ca.context(ca.svid(GATEWAY)),
        Some(&SpiffeId::new(ACCOUNTS).unwrap()),
    )
    .unwrap();
    let response = external
        .send(
            accounts.addr,
            http::Method::GET,
            "/accounts/e2/ledger",
            &[("txn-token", "eyJhbGciOiJub25lIn0.e30.")],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let seen: Seen = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(seen.txn.as_deref(), Some("eyJhbGciOiJub25lIn0.e30."));
    assert_eq!(seen.chain, vec![(ACCOUNTS.to_owned(), true)]);
}

#[tokio::test]
async fn senders_signing_version_1_chains_reach_receivers_that_verify_version_2() {
    // A rolling upgrade: services signing version 1 (`[outbound] chain_version = 1`) next to
    // services signing version 2, in every order along ledger ← accounts ← gateway.
    for (at_gateway, at_accounts) in [
        (ChainVersion::V1, ChainVersion::V1),
        (ChainVersion::V1, ChainVersion::V2),
        (ChainVersion::V2, ChainVersion::V1),
    ] {
        let ca = TestCa::new(TRUST_DOMAIN);
        let (_ledger, accounts) = ledger_behind_accounts(
            &ca,
            "/entries/{id}",
            |c| c,
            |c| c.outbound_chain_version(at_accounts),
        )
        .await;
        let gateway = gateway_to(&ca, [accounts.addr.to_string()], |c| {
            c.outbound_chain_version(at_gateway)
        })
        .await;
        let seen = gateway
            .server
            .client::<AccountsApiClient>()
            .ledger("e1")
            .await
            .unwrap();
        assert_eq!(
            seen.chain,
            vec![(GATEWAY.into(), true), (ACCOUNTS.into(), true)],
            "{at_gateway:?} then {at_accounts:?}"
        );
    }
}

#[tokio::test]
async fn a_verified_transaction_token_reaches_the_second_hop_and_its_policy_input() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let issuer = ligand::testkit::TxnIssuer::new("txn-1");
    // ledger ← accounts ← an external caller, both services verifying Transaction Tokens.
    let (ledger, accounts) = ledger_behind_accounts(
        &ca,
        "/entries/{id}",
        |c| c.txn_token(issuer.config().require(true)),
        |c| c.txn_token(issuer.config()),
    )
    .await;

    let claims = issuer.claims(TRUST_DOMAIN, "alice@example.org");
    let token = issuer.sign(&claims);
    let external = ligand::testkit::PeerClient::new(
        &ca.context(ca.svid(GATEWAY)),
        Some(&SpiffeId::new(ACCOUNTS).unwrap()),
    )
    .unwrap();
    let response = external
        .send(
            accounts.addr,
            http::Method::GET,
            "/accounts/e3/ledger",
            &[(ligand::TXN_TOKEN_HEADER, &token)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let seen: Seen = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        seen.txn.as_deref(),
        Some(token.as_str()),
        "forwarded unchanged"
    );

    // Both hops evaluated the same verified claims.
    let first = &audit(&accounts).decisions()[0].input;
    ligand::testkit::flush_audit_blocking(&ledger.server);
    let second = &ledger.telemetry.decisions()[0].input;
    for input in [first, second] {
        let txn = input.txn.as_deref().expect("input.txn");
        assert_eq!(&*txn.sub, "alice@example.org");
        assert_eq!(&*txn.txn, claims["txn"].as_str().unwrap());
    }

    // The ledger requires a token: the first hop's call without one is refused there.
    let response = external
        .send(
            accounts.addr,
            http::Method::GET,
            "/accounts/e4/ledger",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    // The handler answers the call's error as text; the ledger evaluated nothing more.
    assert!(
        serde_json::from_slice::<Seen>(&response.body).is_err(),
        "{}",
        response.text()
    );
    ligand::testkit::flush_audit_blocking(&ledger.server);
    assert_eq!(ledger.telemetry.decisions().len(), 1);
}

/// A loopback address nothing listens on: connecting is refused at once.
fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_dead_endpoint_is_retried_around_then_ejected() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let accounts = serve(&ca, ACCOUNTS, |c| c.policy(allow_gateway())).await;
    let dead = dead_address();
    let gateway = gateway_to(&ca, [dead.to_string(), accounts.addr.to_string()], |c| c).await;
    let client = gateway.server.client::<AccountsApiClient>();
    for i in 0..40 {
        let account = client.get(&i.to_string()).await;
        assert!(account.is_ok(), "call {i}: {account:?}");
    }
    let calls = audit(&gateway).outbound_calls();
    assert_eq!(calls.len(), 40);
    assert!(
        calls
            .iter()
            .all(|c| c.outcome == OutboundOutcome::Success
                && *c.address == *accounts.addr.to_string())
    );
    // A connection refused is retried on the other endpoint; after five in a row the dead
    // endpoint is ejected and no call tries it any more.
    let retried = calls.iter().filter(|c| c.attempts == 2).count();
    assert!((1..=5).contains(&retried), "{retried} calls retried");
    assert!(calls.iter().all(|c| (1..=2).contains(&c.attempts)));
    assert!(calls.iter().rev().take(10).all(|c| c.attempts == 1));
}

#[tokio::test]
async fn server_errors_are_retried_for_idempotent_methods_only() {
    let (accounts, gateway) = pair(|c| c.policy(allow_gateway()), |c| c).await;
    let client = gateway.server.client::<AccountsApiClient>();
    let err = client.broken().await.unwrap_err();
    assert!(
        matches!(err, CallError::Status { status, .. } if status == StatusCode::INTERNAL_SERVER_ERROR),
        "{err}"
    );
    let err = client.broken_post().await.unwrap_err();
    assert!(matches!(err, CallError::Status { .. }), "{err}");
    let calls = audit(&gateway).outbound_calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.method.clone(), c.attempts))
            .collect::<Vec<_>>(),
        [(http::Method::GET, 3), (http::Method::POST, 1)],
        "GET tried three times in all, POST once"
    );
    // The callee saw exactly those four requests.
    assert_eq!(audit(&accounts).decisions().len(), 4);
}

#[tokio::test]
async fn under_ring_hash_a_keyed_call_stays_on_its_endpoint() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let mut addresses = Vec::new();
    let mut callees = Vec::new();
    for _ in 0..3 {
        let callee = serve(&ca, ACCOUNTS, |c| c.policy(allow_gateway())).await;
        addresses.push(callee.addr.to_string());
        callees.push(callee);
    }
    let mut resilience = ligand::ResilienceConfig::default();
    resilience.balancer.strategy = ligand::Strategy::RingHash;
    let gateway = gateway_to(&ca, [0, 1, 2].map(|i| addresses[i].clone()), |c| {
        c.outbound_resilience(resilience)
    })
    .await;
    let client = gateway.server.client::<AccountsApiClient>();
    let keys: Vec<String> = (0..24).map(|k| format!("account-{k}")).collect();
    for _ in 0..3 {
        for key in &keys {
            client.sticky(key).await.unwrap();
        }
    }

    let calls = audit(&gateway).outbound_calls();
    assert_eq!(calls.len(), 3 * keys.len());
    // Each key's three calls went to one endpoint...
    let by_key: Vec<&str> = calls[..keys.len()].iter().map(|c| &*c.address).collect();
    for round in calls.chunks(keys.len()) {
        let addresses: Vec<&str> = round.iter().map(|c| &*c.address).collect();
        assert_eq!(addresses, by_key);
    }
    // ...and the keys spread over the endpoints.
    let used: std::collections::BTreeSet<&str> = by_key.iter().copied().collect();
    assert!(used.len() >= 2, "{used:?}");
}

#[tokio::test]
async fn a_target_section_applies_to_calls_to_that_service_alone() {
    let mut resilience = ligand::ResilienceConfig::default();
    let mut own = ligand::TargetResilience::default();
    let mut retry = ligand::RetryConfig::default();
    retry.max_attempts = 1;
    own.retry = Some(retry);
    // Another service's section leaves calls to ACCOUNTS on the top-level default (3).
    resilience.targets.insert(IMPOSTOR.to_owned(), own.clone());
    let (_accounts, gateway) = pair(
        |c| c.policy(allow_gateway()),
        |c| c.outbound_resilience(resilience.clone()),
    )
    .await;
    gateway
        .server
        .client::<AccountsApiClient>()
        .broken()
        .await
        .unwrap_err();
    resilience.targets.insert(ACCOUNTS.to_owned(), own);
    let (_accounts, own_gateway) = pair(
        |c| c.policy(allow_gateway()),
        |c| c.outbound_resilience(resilience),
    )
    .await;
    own_gateway
        .server
        .client::<AccountsApiClient>()
        .broken()
        .await
        .unwrap_err();

    let attempts = |running: &Running| {
        audit(running)
            .outbound_calls()
            .iter()
            .map(|c| c.attempts)
            .collect::<Vec<_>>()
    };
    assert_eq!(attempts(&gateway), [3]);
    assert_eq!(attempts(&own_gateway), [1]);
}

#[tokio::test]
async fn the_circuit_opens_on_a_dead_service_and_calls_fail_fast() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let admin = ligand::AdminConfig::listen("127.0.0.1:0".parse().unwrap());
    let gateway = gateway_to(&ca, [dead_address().to_string()], |c| c.admin(admin)).await;
    let client = gateway.server.client::<AccountsApiClient>();
    let mut opened = None;
    for i in 0..10 {
        match client.get("a").await.unwrap_err() {
            CallError::CircuitOpen { .. } => {
                opened = Some(i);
                break;
            }
            CallError::Transport { .. } => {}
            other => panic!("call {i}: {other}"),
        }
    }
    // Ten consecutive failed attempts open it: three attempts per call, so by the fourth.
    let opened = opened.expect("the circuit opened");
    assert!(opened <= 3, "opened at call {opened}");
    // Now calls are refused without an attempt, and say when the next probe goes.
    let err = client.get("a").await.unwrap_err();
    assert!(
        matches!(err, CallError::CircuitOpen { retry_after: Some(d), .. } if d > Duration::ZERO),
        "{err}"
    );
    let calls = audit(&gateway).outbound_calls();
    let last = calls.last().unwrap();
    assert_eq!(
        (last.outcome, last.attempts, &*last.address),
        (OutboundOutcome::CircuitOpen, 0, "")
    );
    // The transition is on the admin listener's metrics.
    let metrics = scrape(gateway.server.admin_addr().unwrap()).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"ligand_outbound_circuit_transitions_total{to="open"} 1"#),
        "{metrics}"
    );
}

/// The admin listener's `/metrics` text, over one plain HTTP/1.1 request.
async fn scrape(admin: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[tokio::test]
async fn init_refuses_unusable_resilience_settings_naming_them() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let mut resilience = ligand::ResilienceConfig::default();
    resilience.retry.max_attempts = 0;
    let config = Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(GATEWAY))))
        .policy(AllowList::new())
        .telemetry(RecordingTelemetry::new())
        .binding(HttpBinding::new("127.0.0.1:0"))
        .outbound_resilience(resilience)
        .build();
    let Err(error) = ligand::init(config).await else {
        panic!("init accepted zero attempts");
    };
    assert!(
        matches!(&error, ligand::InitError::Config(message) if message.contains("max_attempts")),
        "{error}"
    );
}

/// The fields of a `traceparent`: version, trace ID, parent ID, flags.
fn traceparent_fields(header: &str) -> Vec<&str> {
    header.split('-').collect()
}

#[tokio::test]
async fn the_trace_context_crosses_two_services_over_mtls() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let (ledger, accounts) = ledger_behind_accounts(&ca, "/trace", |c| c, |c| c).await;
    let external = ligand::testkit::PeerClient::new(
        &ca.context(ca.svid(GATEWAY)),
        Some(&SpiffeId::new(ACCOUNTS).unwrap()),
    )
    .unwrap();
    let call = |headers: &'static [(&'static str, &'static str)]| {
        let external = &external;
        async move {
            let response = external
                .send(
                    accounts.addr,
                    http::Method::GET,
                    "/traced",
                    headers,
                    Vec::new(),
                )
                .await
                .unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            serde_json::from_slice::<Traced>(&response.body).unwrap()
        }
    };

    // A valid traceparent: the request joins the caller's trace, and the call its handler
    // makes carries the same trace ID with the request's span as parent, and the tracestate.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traced = call(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=opaque"),
    ])
    .await;
    assert_eq!(traced.trace_id, caller_trace);
    assert_ne!(traced.span_id, caller_span);
    let sent = traced.ledger.traceparent.as_deref().unwrap();
    let fields = traceparent_fields(sent);
    assert_eq!(fields[0], "00");
    assert_eq!(fields[1], caller_trace, "{sent}");
    assert_ne!(fields[2], caller_span, "a new parent ID: {sent}");
    assert_eq!(fields[2], traced.span_id, "the request's span: {sent}");
    assert_eq!(fields[3], "01", "the sampled flag is kept");
    assert_eq!(traced.ledger.trace_id, caller_trace);
    assert_eq!(traced.ledger.tracestate.as_deref(), Some("vendor=opaque"));

    // Malformed traceparents are ignored: a new trace, never an error to the caller, and the
    // tracestate that came with them is dropped.
    for headers in [
        &[
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=opaque"),
        ][..],
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        &[("traceparent", "garbage")],
    ] {
        let traced = call(headers).await;
        assert_ne!(traced.trace_id, caller_trace);
        assert_ne!(traced.trace_id, "00000000000000000000000000000000");
        let sent = traced.ledger.traceparent.as_deref().unwrap();
        assert_eq!(traceparent_fields(sent)[1], traced.trace_id, "{sent}");
        assert_eq!(traced.ledger.tracestate, None);
    }

    // A call made outside any request starts a trace of its own each time.
    let ledger_client = ligand::testkit::PeerClient::new(
        &ca.context(ca.svid(ACCOUNTS)),
        Some(&SpiffeId::new(LEDGER).unwrap()),
    )
    .unwrap();
    let response = ledger_client.get(ledger.addr, "/trace").await.unwrap();
    let seen: TraceSeen = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(seen.traceparent, None, "a plain client sends none");
    assert_eq!(seen.trace_id.len(), 32);
    let first = accounts
        .server
        .client::<LedgerApiClient>()
        .trace()
        .await
        .unwrap();
    let second = accounts
        .server
        .client::<LedgerApiClient>()
        .trace()
        .await
        .unwrap();
    let first_sent = first.traceparent.unwrap();
    let second_sent = second.traceparent.unwrap();
    assert_eq!(traceparent_fields(&first_sent)[1], first.trace_id);
    assert_ne!(
        traceparent_fields(&first_sent)[1],
        traceparent_fields(&second_sent)[1]
    );
}
