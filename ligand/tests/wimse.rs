//! WIMSE workload-to-workload authentication end to end over real mTLS: a caller whose
//! identity source issues WITs sends a WIT and a fresh WPT on every call, and a callee that
//! requires them verifies both, the Transaction Token binding (`tth`) included.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;

use ligand::prelude::*;
use ligand::testkit::{AllowList, FakeIdentity, TestCa, TxnIssuer, WitIssuer};
use ligand::{CallError, Config, ConfigBuilder, HttpBinding, SpiffeId};
use ligand_registry_static::StaticRegistry;
use serde::{Deserialize, Serialize};

const TRUST_DOMAIN: &str = "example.org";
const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";
const LEDGER: &str = "spiffe://example.org/service/ledger";

/// What a service saw of a request's WIMSE headers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Seen {
    peer: String,
    wit: Option<String>,
    wpt: Option<String>,
    txn: Option<String>,
    /// The subject of the verified WIT, as `Ctx::workload` gives it.
    workload: Option<String>,
}

fn seen(ctx: &Ctx, headers: &http::HeaderMap) -> Seen {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Seen {
        peer: ctx.caller().principal().unwrap_or_default().to_owned(),
        wit: get(ligand::WIT_HEADER),
        wpt: get(ligand::WPT_HEADER),
        txn: get(ligand::TXN_TOKEN_HEADER),
        workload: ctx.workload().map(|w| w.subject.to_string()),
    }
}

struct Accounts;

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, ctx: Ctx, headers: http::HeaderMap) -> Json<Seen> {
        Json(seen(&ctx, &headers))
    }

    /// Calls the ledger while serving: the Transaction Token goes along, bound by the WPT.
    #[get("/accounts/{id}/ledger")]
    async fn ledger(&self, ctx: Ctx, Path(id): Path<String>) -> Result<Json<Seen>, String> {
        let seen = ctx
            .client::<LedgerApiClient>()
            .entry(&id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(seen))
    }
}

#[ligand::client(service = "spiffe://example.org/service/accounts")]
trait AccountsApi {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Seen, CallError>;
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
        Json(seen(&ctx, &headers))
    }
}

async fn start<S: ligand::Service>(
    ca: &TestCa,
    id: &str,
    wits: Option<&Arc<WitIssuer>>,
    service: S,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Server, SocketAddr) {
    let mut identity = FakeIdentity::new(ca.context(ca.svid(id)));
    if let Some(issuer) = wits {
        identity = identity.with_wits(issuer.clone());
    }
    let config = configure(
        Config::builder()
            .identity(Arc::new(identity))
            .binding(HttpBinding::new("127.0.0.1:0")),
    )
    .build();
    let server = ligand::init(config).await.expect("init");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(service).await }
    });
    let addr = server.local_addr().await.expect("listening");
    (server, addr)
}

fn claims(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let mut decode = || {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (decode(), decode())
}

#[tokio::test]
async fn calls_carry_a_wit_and_a_fresh_wpt_the_callee_verifies() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let issuer = Arc::new(WitIssuer::new("wit-1"));
    let (_accounts, accounts_addr) = start(&ca, ACCOUNTS, None, Accounts, |c| {
        c.policy(AllowList::new().allow(GATEWAY, "*", "*"))
            .wimse(issuer.config().require(true))
    })
    .await;
    let registry = StaticRegistry::new()
        .service(ACCOUNTS, [accounts_addr.to_string()])
        .unwrap();
    let (gateway, _) = start(&ca, GATEWAY, Some(&issuer), Accounts, |c| {
        c.policy(AllowList::new()).registry(registry)
    })
    .await;

    let client = gateway.client::<AccountsApiClient>();
    let first = client.get("a").await.unwrap();
    let second = client.get("a").await.unwrap();
    assert_eq!(first.peer, GATEWAY);
    assert_eq!(first.workload.as_deref(), Some(GATEWAY));
    // One WIT, cached; a new WPT per call.
    assert_eq!(first.wit, second.wit);
    assert_ne!(first.wpt, second.wpt);
    let (header, wit) = claims(first.wit.as_deref().unwrap());
    assert_eq!(header["typ"], "wit+jwt");
    assert_eq!(wit["sub"], GATEWAY);
    let (header, wpt) = claims(first.wpt.as_deref().unwrap());
    assert_eq!(header["typ"], "wpt+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(wpt["aud"], format!("https://{accounts_addr}/accounts/a"));
    assert_eq!(
        wpt["wth"],
        ligand::testkit::token_hash(first.wit.as_deref().unwrap())
    );
    assert!(wpt.get("tth").is_none(), "no Transaction Token, no tth");
    let lifetime = wpt["exp"].as_i64().unwrap() - wpt["iat"].as_i64().unwrap();
    assert!((30..=300).contains(&lifetime), "{lifetime}");
}

#[tokio::test]
async fn a_caller_without_wits_is_refused_by_a_callee_that_requires_them() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let issuer = Arc::new(WitIssuer::new("wit-1"));
    let (_accounts, accounts_addr) = start(&ca, ACCOUNTS, None, Accounts, |c| {
        c.policy(AllowList::new().allow(GATEWAY, "*", "*"))
            .wimse(issuer.config().require(true))
    })
    .await;
    let registry = StaticRegistry::new()
        .service(ACCOUNTS, [accounts_addr.to_string()])
        .unwrap();
    // The gateway's identity source issues no WITs: its calls carry none.
    let (gateway, _) = start(&ca, GATEWAY, None, Accounts, |c| {
        c.policy(AllowList::new()).registry(registry)
    })
    .await;
    let err = gateway
        .client::<AccountsApiClient>()
        .get("a")
        .await
        .unwrap_err();
    let CallError::Denied { code, status, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (code.as_str(), *status),
        ("WIMSE_MISSING", StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn a_forwarded_transaction_token_is_bound_by_tth_on_the_next_hop() {
    let ca = TestCa::new(TRUST_DOMAIN);
    let wits = Arc::new(WitIssuer::new("wit-1"));
    let txn = TxnIssuer::new("txn-1");
    // ledger ← accounts ← an external caller; the ledger requires WIT/WPT and a verified
    // Transaction Token.
    let (_ledger, ledger_addr) = start(&ca, LEDGER, None, Ledger, |c| {
        c.policy(AllowList::new().allow(ACCOUNTS, "GET", "/entries/{id}"))
            .wimse(wits.config().require(true))
            .txn_token(txn.config().require(true))
    })
    .await;
    let (_accounts, accounts_addr) = start(&ca, ACCOUNTS, Some(&wits), Accounts, |c| {
        c.policy(AllowList::new().allow(GATEWAY, "*", "*"))
            .registry(
                StaticRegistry::new()
                    .service(LEDGER, [ledger_addr.to_string()])
                    .unwrap(),
            )
    })
    .await;

    let token = txn.token(TRUST_DOMAIN, "alice@example.org");
    let external = ligand::testkit::PeerClient::new(
        &ca.context(ca.svid(GATEWAY)),
        Some(&SpiffeId::new(ACCOUNTS).unwrap()),
    )
    .unwrap();
    let response = external
        .send(
            accounts_addr,
            http::Method::GET,
            "/accounts/e1/ledger",
            &[(ligand::TXN_TOKEN_HEADER, &token)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let seen: Seen = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(seen.peer, ACCOUNTS);
    assert_eq!(seen.workload.as_deref(), Some(ACCOUNTS));
    assert_eq!(seen.txn.as_deref(), Some(token.as_str()));
    let (_, wpt) = claims(seen.wpt.as_deref().unwrap());
    assert_eq!(wpt["tth"], ligand::testkit::token_hash(&token));
    assert_eq!(wpt["aud"], format!("https://{ledger_addr}/entries/e1"));
}
