//! Real rustls handshakes over loopback against the HTTP binding.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use common::{CALLER_ID, Fixture, SERVER_ID};
use ligand_runtime::testkit::{
    AllowList, PeerClient, SvidKey, SvidSpec, TestCa, probe_client_config,
};
use ligand_runtime::{SpiffeId, X509Context, X509Svid};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn allow_all() -> AllowList {
    AllowList::new().allow("*", "*", "*")
}

async fn fixture() -> Fixture {
    Fixture::start(|c| c.policy(allow_all())).await
}

fn raw_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    svid: Option<&X509Svid>,
) -> ClientConfig {
    (*probe_client_config(versions, svid).unwrap()).clone()
}

/// Handshakes with `config`, sends one HTTP request and returns what came back, or the error.
async fn exchange(addr: std::net::SocketAddr, config: ClientConfig) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("ligand.invalid").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /hello/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out).await {
        Ok(_) if out.is_empty() => Err("connection closed without a response".into()),
        Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn rejected(outcome: Result<String, String>) -> String {
    match outcome {
        Ok(response) => panic!("handshake should have been refused, got: {response}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn valid_svid_reaches_handler_with_verified_peer() {
    let f = fixture().await;
    let response = f
        .caller(CALLER_ID)
        .get(f.addr, "/hello/world")
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.text(),
        format!("hello world|peer={CALLER_ID}|chain={CALLER_ID}")
    );
    assert_eq!(f.handler_calls(), 1);
    // The same SVID through a raw rustls client (TLS 1.3) also works.
    let svid = f.ca.svid(CALLER_ID);
    let raw = exchange(f.addr, raw_client(&[&rustls::version::TLS13], Some(&svid)))
        .await
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[tokio::test]
async fn svids_issued_by_an_intermediate_ca_and_rsa_svids_are_served() {
    let f = Fixture::start_with(TestCa::new("example.org").intermediate(), |c| {
        c.policy(allow_all())
    })
    .await;
    let expect = SpiffeId::new(SERVER_ID).unwrap();
    for key in [SvidKey::EcdsaP256, SvidKey::Rsa2048] {
        let svid = f.ca.mint(SvidSpec::new(CALLER_ID).key(key));
        // Leaf and intermediate; the bundle holds the root alone.
        assert_eq!(svid.cert_chain.len(), 2);
        let caller = PeerClient::new(&f.ca.context(svid), Some(&expect)).unwrap();
        let response = caller.get(f.addr, "/hello/world").await.unwrap();
        assert_eq!(response.status, 200, "{key:?}: {}", response.text());
        assert!(
            response.text().contains(&format!("peer={CALLER_ID}")),
            "{}",
            response.text()
        );
    }
    assert_eq!(f.handler_calls(), 2);
}

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let f = fixture().await;
    let error = rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS13], None)).await);
    assert!(
        error.contains("CertificateRequired") || error.contains("alert"),
        "{error}"
    );
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn plaintext_http_gets_no_http_response() {
    let f = fixture().await;
    let mut tcp = TcpStream::connect(f.addr).await.unwrap();
    tcp.write_all(b"GET /hello/x HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    assert!(
        !out.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn tls12_only_client_is_rejected() {
    let f = fixture().await;
    let svid = f.ca.svid(CALLER_ID);
    let error =
        rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS12], Some(&svid))).await);
    assert!(
        error.to_lowercase().contains("protocol") || error.contains("alert"),
        "{error}"
    );
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn certificate_from_another_trust_domain_is_rejected() {
    let f = fixture().await;
    let other = TestCa::new("other.example");
    let svid = other.svid("spiffe://other.example/service/caller");
    rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS13], Some(&svid))).await);
    // An attacker's CA claiming our trust domain is not our CA either.
    let impostor = TestCa::new(common::TRUST_DOMAIN);
    let svid = impostor.svid(CALLER_ID);
    rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS13], Some(&svid))).await);
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn expired_certificate_is_rejected() {
    let f = fixture().await;
    let svid = f.ca.mint(SvidSpec::new(CALLER_ID).expired());
    let error =
        rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS13], Some(&svid))).await);
    assert!(
        error.contains("CertificateExpired") || error.contains("alert"),
        "{error}"
    );
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn zero_or_two_uri_sans_are_rejected() {
    let f = fixture().await;
    let none = f.ca.mint(SvidSpec::new(CALLER_ID).uris(&[]));
    rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS13], Some(&none))).await);
    let two = f
        .ca
        .mint(SvidSpec::new(CALLER_ID).uris(&[CALLER_ID, "spiffe://example.org/service/other"]));
    rejected(exchange(f.addr, raw_client(&[&rustls::version::TLS13], Some(&two))).await);
    let not_spiffe =
        f.ca.mint(SvidSpec::new(CALLER_ID).uris(&["https://example.org/caller"]));
    rejected(
        exchange(
            f.addr,
            raw_client(&[&rustls::version::TLS13], Some(&not_spiffe)),
        )
        .await,
    );
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn caller_refuses_a_server_with_an_unexpected_id() {
    let f = fixture().await;
    let expect = SpiffeId::new("spiffe://example.org/service/somebody-else").unwrap();
    let client = PeerClient::new(&f.ca.context(f.ca.svid(CALLER_ID)), Some(&expect)).unwrap();
    assert!(client.get(f.addr, "/hello/x").await.is_err());
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn rotation_keeps_open_connections_and_new_handshakes_see_the_new_svid() {
    let f = fixture().await;
    let caller = f.caller(CALLER_ID);
    let mut open = caller.connect(f.addr).await.unwrap();
    assert_eq!(open.get("/hello/before").await.unwrap().status, 200);
    let old_cert = open.server_certificate().clone();

    let rotated = f.ca.svid(SERVER_ID);
    let new_cert = rotated.cert_chain[0].clone();
    f.identity.rotate(X509Context {
        svids: vec![rotated],
        bundles: f.ca.bundles(),
    });
    // The rotation loop applies the update asynchronously; wait for it to take effect.
    let mut attempts = 0;
    loop {
        let fresh = caller.connect(f.addr).await.unwrap();
        if fresh.server_certificate() == &new_cert {
            break;
        }
        assert_eq!(fresh.server_certificate(), &old_cert);
        attempts += 1;
        assert!(
            attempts < 200,
            "rotation never reached new handshakes: {:?} {:?}",
            f.server,
            f.audit().await.health_transitions()
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut fresh = caller.connect(f.addr).await.unwrap();
    assert_eq!(fresh.server_certificate(), &new_cert);
    assert_eq!(fresh.get("/hello/after").await.unwrap().status, 200);
    // The connection opened before the rotation is still up and still served.
    let again = open.get("/hello/still-open").await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(open.server_certificate(), &old_cert);
}
