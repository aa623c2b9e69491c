//! Connection limits and lifetimes of the HTTP binding, over real mTLS on loopback: the cap on
//! connections, idle and age limits, and connections closed when their peer's certificate
//! expires or stops being trusted.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{CALLER_ID, Fixture, SERVER_ID, TRUST_DOMAIN};
use ligand_runtime::testkit::{AllowList, PeerClient, SvidSpec, TestCa, probe_client_config};
use ligand_runtime::{
    EvalRequest, EvalResponse, HttpBinding, PolicyEngine, ProviderError, SpiffeId,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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
async fn a_client_that_stalls_in_the_middle_of_its_headers_is_disconnected() {
    let f = fixture(local().header_read_timeout(Duration::from_millis(200))).await;
    let config = probe_client_config(&[&rustls::version::TLS13], Some(&f.ca.svid(CALLER_ID)));
    let tcp = TcpStream::connect(f.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config.unwrap())
        .connect(ServerName::try_from("ligand.invalid").unwrap(), tcp)
        .await
        .unwrap();
    // The request line and one header, never the blank line that ends the head.
    tls.write_all(b"GET /hello/x HTTP/1.1\r\nhost: ligand.invalid\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut answered = Vec::new();
    let read = tokio::time::timeout(BOUND, tls.read_to_end(&mut answered))
        .await
        .expect("a connection stalled in its headers was kept past the header read timeout");
    // Closed without an answer (the socket dropped, so no TLS close_notify either).
    assert!(read.is_err() || answered.is_empty(), "{answered:?}");
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
}

/// Allows every request, after a wait longer than the tests' header read timeout.
struct DecidesSlowly;

#[async_trait::async_trait]
impl PolicyEngine for DecidesSlowly {
    async fn evaluate(&self, _: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(EvalResponse::allow())
    }
}

#[tokio::test]
async fn a_request_answered_after_longer_than_the_header_read_timeout_is_answered() {
    // The timeout is for the headers: once they are in, the request takes as long as it takes.
    let f = Fixture::start(|c| {
        c.policy(DecidesSlowly)
            .binding(local().header_read_timeout(Duration::from_millis(200)))
    })
    .await;
    let mut open = f.caller(CALLER_ID).connect(f.addr).await.unwrap();
    assert_eq!(open.get("/hello/x").await.unwrap().status, 200);
    assert_eq!(open.get("/hello/y").await.unwrap().status, 200);
    assert_eq!(f.calls.load(Ordering::SeqCst), 2);
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
