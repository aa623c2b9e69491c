//! The OpenBao provider against a local stand-in that follows the HTTP API v1, over real TLS
//! on loopback, started by the framework's `init`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use ligand_runtime::testkit::{AllowList, FakeIdentity, TestCa};
use ligand_runtime::{
    Config, ExposeSecret, InitError, ProviderError, SecretError, Secrets, Server,
    init_trust_boundary,
};
use ligand_secrets_openbao::{Auth, OpenBaoError, OpenBaoSecrets};
use serde_json::json;
use support::TestBao;

const ID: &str = "spiffe://example.org/service/accounts";
const PASSWORD: &str = "hunter2-do-not-print";
const DB: &str = "secret/data/accounts/db";

async fn init(ca: &TestCa, secrets: OpenBaoSecrets) -> Result<Server, InitError> {
    init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(ID))))
            .policy(AllowList::new())
            .secrets(secrets)
            .build(),
    )
    .await
}

/// A stand-in with a root token and one KV v2 secret, and a provider for it.
async fn setup() -> (TestBao, OpenBaoSecrets) {
    let bao = TestBao::start(None).await;
    bao.state.token("root-token", 0, false);
    bao.state
        .kv(DB, json!({"username": "app", "password": PASSWORD}));
    let provider = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::token("root-token"))
        .build()
        .unwrap();
    (bao, provider)
}

/// The typed error behind a provider error; no rendering of the chain may show the secret.
fn bao_error(error: &ProviderError) -> &OpenBaoError {
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains(PASSWORD), "secret in error: {shown}");
    match error {
        ProviderError::Backend { source, .. } => source
            .downcast_ref::<OpenBaoError>()
            .expect("an OpenBaoError"),
        other => panic!("unexpected {other:?}"),
    }
}

fn init_error(error: &InitError) -> &OpenBaoError {
    match error {
        InitError::Provider { source, .. } => bao_error(source),
        other => panic!("unexpected {other:?}"),
    }
}

fn json_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Waits until `done` holds, polling every 20 ms. Used only where a real-time background
/// task (renewal at half a TTL, a lease poll) must act; bounded at 10 s.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reads_a_kv_v2_secret_through_the_cache() {
    let (bao, provider) = setup().await;
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider.clone()).await.unwrap();

    let value = server.secret_bytes(DB).await.unwrap();
    assert_eq!(
        json_of(value.expose_secret()),
        json!({"username": "app", "password": PASSWORD})
    );
    assert_eq!(provider.kv_version(DB), Some(1));
    server.secret_bytes(DB).await.unwrap();
    assert_eq!(
        bao.state.count(&format!("GET /v1/{DB}")),
        1,
        "second read is cached"
    );

    let direct = provider.get(DB).await.unwrap();
    assert_eq!(direct.ttl, Some(ligand_secrets_openbao::DEFAULT_KV_TTL));
    assert_eq!(direct.lease_id, None);
    bao.state
        .kv(DB, json!({"username": "app", "password": "rotated"}));
    provider.get(DB).await.unwrap();
    assert_eq!(provider.kv_version(DB), Some(2));
    server.close().await;
}

#[tokio::test]
async fn the_token_header_is_required() {
    let (bao, _) = setup().await;
    let wrong = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::token("not-a-token"))
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let error = init(&ca, wrong).await.unwrap_err();
    match init_error(&error) {
        OpenBaoError::Login { method, source } => {
            assert_eq!(*method, "token");
            assert!(matches!(**source, OpenBaoError::PermissionDenied { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bao.state.calls(), ["GET /v1/auth/token/lookup-self"]);
}

#[tokio::test]
async fn http_errors_map_to_typed_errors() {
    let (bao, provider) = setup().await;
    bao.state.forbid("secret/data/payments/key");
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider.clone()).await.unwrap();

    let denied = provider.get("secret/data/payments/key").await.unwrap_err();
    assert!(
        matches!(bao_error(&denied), OpenBaoError::PermissionDenied { path, errors }
            if path == "secret/data/payments/key" && errors == &["permission denied"]),
        "{denied}"
    );
    let missing = provider.get("secret/data/nothing").await.unwrap_err();
    assert!(matches!(bao_error(&missing), OpenBaoError::NotFound { .. }));

    bao.state
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let failing = provider.get(DB).await.unwrap_err();
    assert!(
        matches!(bao_error(&failing), OpenBaoError::Unavailable { status: 500, errors, .. }
            if errors == &["internal error"]),
        "{failing}"
    );
    bao.state
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);

    bao.state
        .sealed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let sealed = provider.get(DB).await.unwrap_err();
    assert!(matches!(bao_error(&sealed), OpenBaoError::Sealed { path } if path == DB));
    assert!(sealed.to_string().contains("sealed"), "{sealed}");

    let bad = provider.get("secret/data/../../sys/raw").await.unwrap_err();
    assert!(matches!(bao_error(&bad), OpenBaoError::InvalidPath { .. }));

    // Through the cache, a backend error is a typed denial naming the secret only.
    let error = server.secret_bytes(DB).await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { ref name, .. } if name == DB));
    server.close().await;
}

#[tokio::test]
async fn leased_secrets_carry_their_ttl_and_are_renewed() {
    let (bao, provider) = setup().await;
    bao.state.dynamic("database/creds/app", 60, true);
    bao.state.dynamic("database/creds/once", 60, false);
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider.clone()).await.unwrap();

    let first = provider.get("database/creds/app").await.unwrap();
    assert_eq!(first.ttl, Some(Duration::from_secs(60)));
    let lease = first.lease_id.clone().unwrap();
    assert!(bao.state.leases().contains(&lease));

    // A renewable, valid lease is renewed: same lease, same credentials, new TTL.
    let again = provider.get("database/creds/app").await.unwrap();
    assert_eq!(again.lease_id.as_deref(), Some(lease.as_str()));
    assert_eq!(again.value.expose_secret(), first.value.expose_secret());
    assert_eq!(bao.state.count("PUT /v1/sys/leases/renew"), 1);
    assert_eq!(bao.state.count("GET /v1/database/creds/app"), 1);

    // A revoked lease is refused at renewal: the provider reads afresh.
    bao.state.revoke(&lease);
    let fresh = provider.get("database/creds/app").await.unwrap();
    assert_ne!(fresh.lease_id.as_deref(), Some(lease.as_str()));
    assert_ne!(fresh.value.expose_secret(), first.value.expose_secret());

    // A non-renewable lease is always read afresh.
    let one = provider.get("database/creds/once").await.unwrap();
    let two = provider.get("database/creds/once").await.unwrap();
    assert_ne!(one.lease_id, two.lease_id);
    server.close().await;
}

#[tokio::test]
async fn the_cache_renews_a_lease_before_it_expires() {
    let (bao, provider) = setup().await;
    bao.state.dynamic("database/creds/app", 1, true);
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider).await.unwrap();
    let first = server.secret_bytes("database/creds/app").await.unwrap();
    // The cache renews at half the 1 s TTL, on its own timer.
    eventually("a lease renewal", async || {
        bao.state.count("PUT /v1/sys/leases/renew") >= 2
    })
    .await;
    let later = server.secret_bytes("database/creds/app").await.unwrap();
    assert_eq!(later.expose_secret(), first.expose_secret());
    assert_eq!(bao.state.count("GET /v1/database/creds/app"), 1);
    server.close().await;
}

#[tokio::test]
async fn a_revoked_lease_is_detected_and_replaced() {
    let bao = TestBao::start(None).await;
    bao.state.token("root-token", 0, false);
    bao.state.dynamic("database/creds/app", 3600, true);
    let provider = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::token("root-token"))
        .lease_poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider.clone()).await.unwrap();
    let mut events = provider.watch_revocations().await.unwrap();

    let first = server.secret_bytes("database/creds/app").await.unwrap();
    let lease = bao.state.leases().pop().unwrap();
    bao.state.revoke(&lease);

    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a revocation within 10 s (the poll runs every 50 ms)")
        .unwrap();
    assert_eq!(event.lease_id, lease);
    eventually("new credentials in the cache", async || {
        let now = server.secret_bytes("database/creds/app").await.unwrap();
        now.expose_secret() != first.expose_secret()
    })
    .await;
    server.close().await;
}

#[tokio::test]
async fn a_down_backend_serves_cached_values_until_their_ttl() {
    let (bao, _) = setup().await;
    let provider = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::token("root-token"))
        .kv_ttl(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider).await.unwrap();
    let first = server.secret_bytes(DB).await.unwrap();

    bao.stop();
    // From here no backend answers; tokio's clock is driven by hand.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(45)).await;
    let cached = server.secret_bytes(DB).await.unwrap();
    assert_eq!(cached.expose_secret(), first.expose_secret());
    tokio::time::advance(Duration::from_secs(20)).await;
    let error = server.secret_bytes(DB).await.unwrap_err();
    match &error {
        SecretError::Unavailable { name, source } => {
            assert_eq!(name, DB);
            assert!(matches!(bao_error(source), OpenBaoError::Transport { .. }));
        }
        other => panic!("{other:?}"),
    }
    server.close().await;
}

#[tokio::test]
async fn an_unreachable_or_untrusted_backend_fails_init() {
    let (bao, _) = setup().await;
    let other = TestBao::start(None).await;
    let untrusted = OpenBaoSecrets::builder(&bao.address(), other.ca_pem.as_bytes())
        .auth(Auth::token("root-token"))
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let error = init(&ca, untrusted).await.unwrap_err();
    assert!(
        matches!(init_error(&error), OpenBaoError::Login { source, .. }
            if matches!(**source, OpenBaoError::Transport { .. })),
        "{error:?}"
    );
    bao.stop();
    let down = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::token("root-token"))
        .build()
        .unwrap();
    assert!(init(&ca, down).await.is_err());
}

#[tokio::test]
async fn cert_auth_presents_the_workload_svid() {
    let ca = TestCa::new("example.org");
    let bao = TestBao::start(Some(ca.root())).await;
    bao.state.cert_role(ID, "accounts", "cert-token");
    bao.state
        .kv(DB, json!({"username": "app", "password": PASSWORD}));
    let provider = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::cert(Some("accounts")))
        .build()
        .unwrap();
    let server = init(&ca, provider).await.unwrap();
    let value = server.secret_bytes(DB).await.unwrap();
    assert_eq!(json_of(value.expose_secret())["username"], "app");
    assert_eq!(bao.state.count("POST /v1/auth/cert/login"), 1);
    server.close().await;

    // A role the SVID does not map to is refused, and init fails.
    let wrong = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::cert(Some("payments")))
        .build()
        .unwrap();
    let error = init(&ca, wrong).await.unwrap_err();
    assert!(
        matches!(init_error(&error), OpenBaoError::Login { method: "cert", source }
            if matches!(**source, OpenBaoError::BadRequest { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn jwt_auth_logs_in_with_the_jwt_file() {
    let bao = TestBao::start(None).await;
    bao.state
        .jwt_role("accounts", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    bao.state
        .kv(DB, json!({"username": "app", "password": PASSWORD}));
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n").unwrap();
    let provider = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::jwt("accounts", &jwt))
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider).await.unwrap();
    assert!(server.secret_bytes(DB).await.is_ok());
    server.close().await;

    std::fs::write(&jwt, "forged.jwt.value").unwrap();
    let forged = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::jwt("accounts", &jwt))
        .build()
        .unwrap();
    let error = init(&ca, forged).await.unwrap_err();
    assert!(matches!(
        init_error(&error),
        OpenBaoError::Login { method: "jwt", .. }
    ));
    assert!(!format!("{error:?}").contains("forged.jwt.value"));

    let missing = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::jwt("accounts", dir.path().join("absent")))
        .build()
        .unwrap();
    let error = init(&ca, missing).await.unwrap_err();
    assert!(matches!(init_error(&error), OpenBaoError::JwtFile { .. }));
}

#[tokio::test]
async fn a_renewable_token_is_renewed_at_half_its_ttl() {
    let bao = TestBao::start(None).await;
    bao.state.token("short-token", 2, true);
    let provider = OpenBaoSecrets::builder(&bao.address(), bao.ca_pem.as_bytes())
        .auth(Auth::token("short-token"))
        .build()
        .unwrap();
    let ca = TestCa::new("example.org");
    let server = init(&ca, provider).await.unwrap();
    eventually("a token renewal", async || {
        bao.state.count("POST /v1/auth/token/renew-self") >= 1
    })
    .await;
    server.close().await;
}

#[test]
fn bad_configuration_is_refused() {
    let pem = rcgen::generate_simple_self_signed(vec!["bao.internal".to_owned()])
        .unwrap()
        .cert
        .pem();
    let build = |address: &str, ca: &[u8]| {
        OpenBaoSecrets::builder(address, ca)
            .auth(Auth::token("t"))
            .build()
    };
    assert!(build("https://127.0.0.1:8200", pem.as_bytes()).is_ok());
    for address in ["http://127.0.0.1:8200", "127.0.0.1:8200", "https://h/v1/x"] {
        assert!(
            matches!(build(address, pem.as_bytes()), Err(OpenBaoError::Config(_))),
            "{address}"
        );
    }
    assert!(build("https://127.0.0.1:8200", b"not a pem").is_err());
    let zero = OpenBaoSecrets::builder("https://127.0.0.1:8200", pem.as_bytes())
        .auth(Auth::token("t"))
        .lease_poll_interval(Duration::ZERO)
        .build();
    assert!(matches!(zero, Err(OpenBaoError::Config(_))));
}
