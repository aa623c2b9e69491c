#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io;
use std::sync::Arc;

use super::connector::certificate_failure;
use crate::tls::SvidError;

#[test]
fn certificate_failures_are_found_through_io_errors() {
    let svid = SvidError::UnexpectedId {
        expected: "spiffe://a/x".into(),
        actual: "spiffe://a/y".into(),
    };
    let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
        rustls::OtherError(Arc::new(svid)),
    ));
    let io = io::Error::other(rustls);
    let reason = certificate_failure(&io);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("spiffe://a/y")),
        "{reason:?}"
    );
    assert_eq!(certificate_failure(&io::Error::other("refused")), None);
}

// === real handshakes over loopback ===

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::SpiffeId;

use super::{ClientAuth, DialError, Dialer, ServerAuth};
use crate::testkit::TestCa;
use crate::tls::IdentityState;

const SERVER: &str = "spiffe://example.org/service/server";
const CLIENT: &str = "spiffe://example.org/service/client";

/// Serves `200 ok` over TLS with `config` on loopback; counts the TCP connections accepted.
async fn serve(config: ServerConfig) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn get(uri: String) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::default()).unwrap()
}

fn identity(ca: &TestCa, id: &str) -> Arc<IdentityState> {
    Arc::new(IdentityState::new(&ca.context(ca.svid(id)), None).unwrap())
}

/// A SPIFFE server presenting `ca`'s SVID for `id` and requiring a client SVID.
async fn spiffe_server(ca: &TestCa, id: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    serve((*identity(ca, id).server_config().unwrap()).clone()).await
}

fn spiffe_dialer(ca: &TestCa, expect: &str) -> super::DialerBuilder {
    let client = identity(ca, CLIENT);
    Dialer::builder(
        ServerAuth::spiffe(&client, SpiffeId::new(expect).unwrap()),
        ClientAuth::svid(&client),
    )
}

/// A web PKI CA and a server certificate it signed for `names` (DNS names or IP addresses).
struct WebCa {
    root: CertificateDer<'static>,
    params: CertificateParams,
    key: KeyPair,
}

impl WebCa {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).unwrap().der().clone();
        Self { root, params, key }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        roots
    }

    fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap().der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert], key)
    }

    fn server(
        &self,
        names: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ServerConfig {
        let (chain, key) = self.leaf(names);
        ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap()
    }
}

#[tokio::test]
async fn a_spiffe_server_with_the_expected_id_answers() {
    let ca = TestCa::new("example.org");
    let (addr, _) = spiffe_server(&ca, SERVER).await;
    let dialer = spiffe_dialer(&ca, SERVER).build().unwrap();
    let response = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), b"ok");
}

#[tokio::test]
async fn a_server_with_another_spiffe_id_is_refused() {
    let ca = TestCa::new("example.org");
    let other = "spiffe://example.org/service/impostor";
    let (addr, _) = spiffe_server(&ca, other).await;
    let dialer = spiffe_dialer(&ca, SERVER).build().unwrap();
    let error = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DialError::ServerCertificate { reason, .. } if reason.contains(other)),
        "{error:?}"
    );
    let error = dialer
        .connect(&format!("https://{addr}").parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, DialError::ServerCertificate { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_from_an_untrusted_ca_is_refused() {
    // Same trust domain, another CA: the client's bundle does not verify the server.
    let (ours, theirs) = (TestCa::new("example.org"), TestCa::new("example.org"));
    let (addr, _) = spiffe_server(&theirs, SERVER).await;
    let dialer = spiffe_dialer(&ours, SERVER).build().unwrap();
    let error = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DialError::ServerCertificate { .. }),
        "{error:?}"
    );

    let (ours, theirs) = (WebCa::new(), WebCa::new());
    let (addr, _) = serve(theirs.server(&["127.0.0.1"], &[&rustls::version::TLS13])).await;
    let dialer = Dialer::builder(ServerAuth::web_pki(ours.roots()), ClientAuth::none())
        .build()
        .unwrap();
    let error = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    // Both roots carry rcgen's default name: the chain finds an issuer whose key did not sign.
    assert!(
        matches!(error, DialError::ServerCertificate { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn web_pki_checks_the_host_name() {
    let ca = WebCa::new();
    let dialer = Dialer::builder(ServerAuth::web_pki(ca.roots()), ClientAuth::none())
        .http1_only()
        .build()
        .unwrap();
    let (addr, _) = serve(ca.server(&["127.0.0.1"], &[&rustls::version::TLS13])).await;
    let response = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (addr, _) = serve(ca.server(&["bao.internal"], &[&rustls::version::TLS13])).await;
    let error = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DialError::ServerCertificate { reason, .. } if reason.contains("NotValidForName")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_tls12_only_server_is_refused() {
    let ca = WebCa::new();
    let (addr, _) = serve(ca.server(&["127.0.0.1"], &[&rustls::version::TLS12])).await;
    let dialer = Dialer::builder(ServerAuth::web_pki(ca.roots()), ClientAuth::none())
        .build()
        .unwrap();
    let error = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert!(matches!(error, DialError::Handshake(_)), "{error:?}");
}

#[tokio::test]
async fn a_fixed_client_certificate_is_presented_and_checked_at_build() {
    let ca = WebCa::new();
    let (chain, key) = ca.leaf(&["client.internal"]);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(ca.roots()),
        crate::tls::provider(),
    )
    .build()
    .unwrap();
    let (server_chain, server_key) = ca.leaf(&["127.0.0.1"]);
    let config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    let (addr, _) = serve(config).await;
    let dialer = Dialer::builder(
        ServerAuth::web_pki(ca.roots()),
        ClientAuth::certificate(chain.clone(), key),
    )
    .build()
    .unwrap();
    let response = dialer
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (_, other_key) = ca.leaf(&["client.internal"]);
    let mismatched = Dialer::builder(
        ServerAuth::web_pki(ca.roots()),
        ClientAuth::certificate(chain, other_key),
    )
    .build();
    assert!(
        matches!(mismatched, Err(DialError::Config(_))),
        "{mismatched:?}"
    );
}

#[tokio::test]
async fn only_https_uris_are_dialed() {
    let ca = TestCa::new("example.org");
    let dialer = spiffe_dialer(&ca, SERVER).build().unwrap();
    let error = dialer
        .request(get("http://127.0.0.1:1/".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, DialError::Uri { .. }), "{error:?}");
    let error = dialer
        .connect(&"http://127.0.0.1:1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, DialError::Uri { .. }), "{error:?}");
}

#[tokio::test]
async fn a_pooled_connection_is_redialed_after_the_max_age() {
    let ca = TestCa::new("example.org");
    let (addr, accepted) = spiffe_server(&ca, SERVER).await;
    let dialer = spiffe_dialer(&ca, SERVER)
        .max_connection_age(Duration::from_secs(60))
        .build()
        .unwrap();
    let uri = format!("https://{addr}/");
    for _ in 0..2 {
        dialer.request(get(uri.clone())).await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused while young");

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::resume();
    // The response on the old connection finds it due and retires it; the next call redials.
    dialer.request(get(uri.clone())).await.unwrap();
    dialer.request(get(uri.clone())).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "redialed once due");
    dialer.request(get(uri)).await.unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the new connection is reused"
    );
}
