//! Two services on loopback mTLS that find each other through a real etcd: the callee
//! registers through the etcd registrar, the caller resolves it through the etcd registry.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[path = "../../providers/registry-etcd/tests/etcd/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Duration;

use ligand::prelude::*;
use ligand::testkit::{AllowList, FakeIdentity, TestCa};
use ligand::{CallError, Config, HttpBinding, ServiceRegistration};
use ligand_registry_etcd::{EtcdConfig, EtcdRegistrar, EtcdRegistry};
use serde::{Deserialize, Serialize};

use self::server::EtcdServer;

const ACCOUNTS: &str = "spiffe://example.org/service/accounts";
const GATEWAY: &str = "spiffe://example.org/service/gateway";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Account {
    id: String,
    peer: String,
}

struct Accounts;

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, ctx: Ctx, Path(id): Path<String>) -> Json<Account> {
        Json(Account {
            id,
            peer: ctx.caller().principal().unwrap_or_default().to_owned(),
        })
    }
}

#[ligand::client(service = "spiffe://example.org/service/accounts")]
trait AccountsApi {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Account, CallError>;
}

async fn serve(ca: &TestCa, id: &str, config: ligand::ConfigBuilder) -> Server {
    let identity = Arc::new(FakeIdentity::new(ca.context(ca.svid(id))));
    let config = config
        .identity(identity)
        .binding(HttpBinding::new("127.0.0.1:0"))
        .build();
    let server = ligand::init(config).await.expect("init");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(Accounts).await }
    });
    server.local_addr().await.expect("listening");
    server
}

/// Calls until one succeeds, failing the test after 20 s: registration and the watch are
/// asynchronous.
async fn first_success(client: &AccountsApiClient) -> Account {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.get("a1").await {
            Ok(account) => return account,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "no successful call: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_caller_reaches_a_callee_it_found_in_etcd() {
    let mut etcd = EtcdServer::start();
    let ca = TestCa::new("example.org");
    let etcd_config = EtcdConfig::new([etcd.url()]).dial_timeout(Duration::from_secs(2));

    let accounts = serve(
        &ca,
        ACCOUNTS,
        Config::builder()
            .policy(AllowList::new().allow(GATEWAY, "*", "*"))
            .registrar(
                EtcdRegistrar::from_config(&etcd_config).unwrap(),
                ServiceRegistration::listening_address(),
            ),
    )
    .await;
    let gateway = serve(
        &ca,
        GATEWAY,
        Config::builder()
            .policy(AllowList::new())
            .registry(EtcdRegistry::from_config(&etcd_config).unwrap()),
    )
    .await;
    let client = gateway.client::<AccountsApiClient>();
    let account = first_success(&client).await;
    assert_eq!(
        account,
        Account {
            id: "a1".into(),
            peer: GATEWAY.into()
        }
    );

    // etcd down: the caller keeps the endpoints it knows and calls go on.
    etcd.kill();
    client.get("a1").await.unwrap();
    etcd.restart();
    first_success(&client).await;

    // The callee withdraws at shutdown: the caller's next calls find no endpoint.
    accounts.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.get("a1").await {
            Err(CallError::NoEndpoints { .. }) => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "still routed after deregistration: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.close().await;
}
