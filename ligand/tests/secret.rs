//! `#[ligand::secret]` end to end: a handler reads a typed secret through `Ctx` over real mTLS,
//! the access is audited with the caller's chain, and the struct never prints a value.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use async_trait::async_trait;
use ligand::prelude::*;
use ligand::provider::{ProviderError, SecretAccess, SecretValue, Secrets};
use ligand::testkit::{AllowList, FakeIdentity, PeerClient, RecordingTelemetry, TestCa};
use ligand::{Config, HttpBinding, SecretError, SpiffeId};

const SERVICE: &str = "spiffe://example.org/accounts";
const CALLER: &str = "spiffe://example.org/gateway";

#[ligand::secret(path = "secret/data/accounts/db")]
struct DbCreds {
    username: String,
    #[secret(key = "db-password")]
    password: SecretString,
}

#[ligand::secret(path = "secret/data/accounts/missing-key")]
struct Incomplete {
    #[allow(dead_code, reason = "only the decoding error is observed")]
    token: String,
}

/// A key-value backend holding two documents.
struct Store;

#[async_trait]
impl Secrets for Store {
    async fn get(&self, name: &str) -> Result<SecretValue, ProviderError> {
        let document = match name {
            "secret/data/accounts/db" => {
                r#"{"username":"app","db-password":"hunter2-very-secret"}"#
            }
            "secret/data/accounts/missing-key" => r#"{"other":"hunter2-very-secret"}"#,
            _ => return Err(ProviderError::backend("reading secret", "no such secret")),
        };
        Ok(SecretValue::new(document.as_bytes(), None))
    }
}

struct Accounts;

#[ligand::service]
impl Accounts {
    #[get("/db-user")]
    async fn db_user(&self, ctx: Ctx) -> Result<String, StatusCode> {
        let creds = ctx
            .secret::<DbCreds>()
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        assert_eq!(creds.password.expose_secret(), "hunter2-very-secret");
        // The Debug output names fields and hides values.
        Ok(format!("{} {:?}", creds.username, creds))
    }

    #[get("/incomplete")]
    async fn incomplete(&self, ctx: Ctx) -> String {
        match ctx.secret::<Incomplete>().await {
            Err(error @ SecretError::MissingKey { .. }) => error.to_string(),
            other => format!("unexpected: {}", other.is_ok()),
        }
    }
}

#[tokio::test]
async fn handlers_read_typed_secrets_through_the_audited_cache() {
    let ca = TestCa::new("example.org");
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = ligand::init(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
            .policy(AllowList::new().allow(CALLER, "GET", "*"))
            .secrets(Store)
            .telemetry(telemetry.clone())
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .unwrap();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(Accounts).await }
    });
    let addr = server.local_addr().await.unwrap();
    let expect = SpiffeId::new(SERVICE).unwrap();
    let caller = PeerClient::new(&ca.context(ca.svid(CALLER)), Some(&expect)).unwrap();

    let response = caller.get(addr, "/db-user").await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.text(),
        r#"app DbCreds { username: <redacted>, password: <redacted> }"#
    );
    let incomplete = caller.get(addr, "/incomplete").await.unwrap().text();
    assert_eq!(
        incomplete,
        r#"secret "secret/data/accounts/missing-key" has no key "token""#
    );

    server.flush_audit().await;
    let accesses = telemetry.secret_accesses();
    assert_eq!(accesses.len(), 2);
    assert_eq!(accesses[0].access, SecretAccess::Miss);
    assert_eq!(accesses[0].name, "secret/data/accounts/db");
    let chain = accesses[0].chain.as_ref().unwrap();
    assert_eq!(
        chain.peer().and_then(|l| l.principal()),
        Some(CALLER),
        "audited with the caller"
    );
    assert!(accesses[0].request_id.is_some());

    server.close().await;
    serving.await.unwrap().unwrap();
}
