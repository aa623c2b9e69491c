//! `SpiffeIdentity` against the Ligand identity agent over a real unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{agent, entry};
use ligand_identity_spiffe::SpiffeIdentity;
use ligand_runtime::testkit::AllowList;
use ligand_runtime::{Config, HttpBinding, InitError, WorkloadIdentity};
use rustls_pki_types::UnixTime;

const ID: &str = "spiffe://example.org/service/a";

#[tokio::test]
async fn fetches_a_verifiable_context() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path(), vec![entry(ID, Duration::from_secs(3600))]).await;
    let identity = SpiffeIdentity::new(agent.endpoint()).unwrap();
    let context = identity.fetch_x509_context().await.unwrap();
    assert_eq!(context.svids.len(), 1);
    let svid = &context.svids[0];
    assert_eq!(svid.spiffe_id.to_string(), ID);
    let verified = ligand_runtime::tls::verify_svid(
        &svid.cert_chain[0],
        &svid.cert_chain[1..],
        &context.bundles,
        UnixTime::now(),
    )
    .unwrap();
    assert_eq!(verified.to_string(), ID);
    // The key is usable: the runtime builds its TLS identity from the context.
    ligand_runtime::tls::IdentityState::new(&context, None).unwrap();

    let token = identity.fetch_jwt_svid(&["svc-b"], None).await.unwrap();
    assert_eq!(token.split('.').count(), 3);
    let bundles = identity.fetch_jwt_bundles().await.unwrap();
    assert_eq!(bundles.len(), 1);
}

#[tokio::test]
async fn watch_delivers_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path(), vec![entry(ID, Duration::from_secs(2))]).await;
    let identity = SpiffeIdentity::new(agent.endpoint()).unwrap();
    let mut rx = identity.watch_x509_context().await.unwrap();
    let first = rx.borrow_and_update().clone().unwrap();
    // A 2 s SVID rotates after about 1 s; 5 s bounds a stalled stream.
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("rotation delivered")
        .unwrap();
    let second = rx.borrow_and_update().clone().unwrap();
    assert_ne!(first.svids[0].cert_chain, second.svids[0].cert_chain);
}

#[tokio::test]
async fn lost_stream_is_reported_then_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let first_agent = agent(dir.path(), vec![entry(ID, Duration::from_secs(3600))]).await;
    let identity = SpiffeIdentity::new(first_agent.endpoint()).unwrap();
    let mut rx = identity.watch_x509_context().await.unwrap();
    rx.borrow_and_update();

    first_agent.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("loss reported")
        .unwrap();
    assert!(rx.borrow_and_update().is_err(), "the runtime sees the loss");

    // The agent comes back on the same socket with the same CA.
    let _second_agent = agent(dir.path(), vec![entry(ID, Duration::from_secs(3600))]).await;
    let recovered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            rx.changed().await.unwrap();
            if let Ok(context) = rx.borrow_and_update().clone() {
                return context;
            }
        }
    })
    .await
    .expect("reconnected within the backoff bound");
    assert_eq!(recovered.svids[0].spiffe_id.to_string(), ID);
    identity.close().await.unwrap();
}

#[tokio::test]
async fn unregistered_workload_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = entry(ID, Duration::from_secs(3600));
    other.selectors = vec![ligand_identity_agent::Selector::Uid(common::uid() + 1)];
    let agent = agent(dir.path(), vec![other]).await;
    let identity = SpiffeIdentity::new(agent.endpoint()).unwrap();
    assert!(identity.fetch_x509_context().await.is_err());
    assert!(identity.watch_x509_context().await.is_err());
    let error = ligand_runtime::init(
        Config::builder()
            .identity(identity)
            .policy(AllowList::new().allow("*", "*", "*"))
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, InitError::Identity(_)), "{error:?}");
}
