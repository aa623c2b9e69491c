//! Connection limits and lifetimes of the HTTP binding, over real mTLS on loopback: the cap on
//! connections, idle and age limits, and connections closed when their peer's certificate
//! expires or stops being trusted.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{CALLER_ID, Fixture, SERVER_ID, TRUST_DOMAIN};
use ligand_runtime::testkit::{AllowList, PeerClient, SvidSpec, TestCa};
use ligand_runtime::{HttpBinding, SpiffeId};

/// Longer than any of these tests should take; only a broken binding reaches it.
const BOUND: Duration = Duration::from_secs(20);

async fn fixture(binding: HttpBinding) -> Fixture {
    Fixture::start(|c| {
        c.policy(AllowList::new().allow("*", "*", "*"))
            .binding(binding)
    })
    .await
}

fn local() -> HttpBinding {
    HttpBinding::new("127.0.0.1:0")
}

#[tokio::test]
async fn a_connection_is_closed_when_its_peers_certificate_expires() {
    let f = fixture(local()).await;
    // X.509 validity has whole seconds: this certificate expires within two.
    let svid =
        f.ca.mint(SvidSpec::new(CALLER_ID).ttl(Duration::from_secs(2)));
    let expect = SpiffeId::new(SERVER_ID).unwrap();
    let caller = PeerClient::new(&f.ca.context(svid), Some(&expect)).unwrap();
    let mut open = caller.connect(f.addr).await.unwrap();
    assert_eq!(open.get("/hello/x").await.unwrap().status, 200);
    tokio::time::timeout(BOUND, open.closed())
        .await
        .expect("the connection outlived its peer's certificate");
    // A fresh handshake with the expired certificate is refused too (in TLS 1.3 the client
    // learns it at its first read).
    if let Ok(mut fresh) = caller.connect(f.addr).await {
        assert!(fresh.get("/hello/y").await.is_err());
    }
}

#[tokio::test]
async fn a_connection_is_closed_when_a_rotation_no_longer_trusts_its_peer() {
    let f = fixture(local()).await;
    let mut open = f.caller(CALLER_ID).connect(f.addr).await.unwrap();
    assert_eq!(open.get("/hello/x").await.unwrap().status, 200);
    // The trust domain's CA is replaced: the caller's SVID no longer chains to a trusted root.
    let next = TestCa::new(TRUST_DOMAIN);
    f.identity.rotate(next.context(next.svid(SERVER_ID)));
    tokio::time::timeout(BOUND, open.closed())
        .await
        .expect("the connection outlived the trust that admitted it");
}

#[tokio::test]
async fn at_the_connection_cap_a_new_connection_waits_until_one_closes() {
    let f = fixture(local().max_connections(1)).await;
    let caller = f.caller(CALLER_ID);
    let mut first = caller.connect(f.addr).await.unwrap();
    assert_eq!(first.get("/hello/first").await.unwrap().status, 200);
    let mut second = tokio::spawn({
        let caller = f.caller(CALLER_ID);
        let addr = f.addr;
        async move { caller.connect(addr).await.map_err(|e| e.to_string()) }
    });
    // Not accepted while the first is open (its handshake cannot even start).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "a second connection was accepted beyond the cap"
    );
    drop(first);
    let mut second = tokio::time::timeout(BOUND, second)
        .await
        .expect("the waiting connection was never accepted")
        .unwrap()
        .unwrap();
    assert_eq!(second.get("/hello/second").await.unwrap().status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let f = fixture(local().header_read_timeout(Duration::from_millis(200))).await;
    let mut open = f.caller(CALLER_ID).connect(f.addr).await.unwrap();
    assert_eq!(open.get("/hello/x").await.unwrap().status, 200);
    tokio::time::timeout(BOUND, open.closed())
        .await
        .expect("an idle connection was kept past the header read timeout");
}

#[tokio::test]
async fn a_connection_is_closed_at_its_maximum_age() {
    let f = fixture(local().max_connection_age(Duration::from_millis(200))).await;
    let mut open = f.caller(CALLER_ID).connect(f.addr).await.unwrap();
    assert_eq!(open.get("/hello/x").await.unwrap().status, 200);
    tokio::time::timeout(BOUND, open.closed())
        .await
        .expect("the connection outlived its maximum age");
}
