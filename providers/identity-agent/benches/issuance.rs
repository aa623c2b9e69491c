//! Issuance throughput of the agent's CA and JWT authority, and how long after an SVID
//! rotation the first TLS handshake presents the new certificate.
#![allow(missing_docs, reason = "criterion entry points")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ligand_identity_agent::{JwtAlgorithm, JwtAuthority, LocalCa};
use ligand_runtime::tls::{IdentityState, PeerVerifier};
use ligand_runtime::{SpiffeId, TrustBundles, TrustDomain, X509Context};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn issuance(c: &mut Criterion) {
    let ca = LocalCa::ephemeral(domain()).unwrap();
    let id = SpiffeId::new("spiffe://example.org/service/bench").unwrap();
    let mut group = c.benchmark_group("issuance");
    group.throughput(Throughput::Elements(1));
    group.bench_function("x509_svid_p256", |b| {
        b.iter(|| ca.issue(&id, Duration::from_secs(3600)).unwrap());
    });
    let es = JwtAuthority::new(domain(), "http://127.0.0.1", JwtAlgorithm::Es256).unwrap();
    let aud = vec!["svc".to_owned()];
    group.bench_function("jwt_svid_es256", |b| {
        b.iter(|| {
            es.issue_jwt_svid(&id, &aud, Duration::from_secs(300))
                .unwrap()
        });
    });
    let token = es
        .issue_jwt_svid(&id, &aud, Duration::from_secs(300))
        .unwrap()
        .token;
    group.bench_function("jwt_svid_es256_validate", |b| {
        b.iter(|| es.validate_jwt_svid(&token, "svc").unwrap());
    });
    group.finish();
}

fn context(ca: &LocalCa, id: &SpiffeId) -> X509Context {
    X509Context {
        svids: vec![ca.issue(id, Duration::from_secs(3600)).unwrap().svid],
        bundles: TrustBundles::new().with(domain(), vec![ca.root().clone()]),
    }
}

/// Rotation to first handshake with the new SVID: rotate the server's identity, then time
/// until a fresh client handshake sees the new leaf.
fn rotation_to_handshake(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = Arc::new(LocalCa::ephemeral(domain()).unwrap());
    let server_id = SpiffeId::new("spiffe://example.org/service/server").unwrap();
    let client_id = SpiffeId::new("spiffe://example.org/service/client").unwrap();
    let server = Arc::new(IdentityState::new(&context(&ca, &server_id), None).unwrap());
    let client = Arc::new(IdentityState::new(&context(&ca, &client_id), None).unwrap());
    let client_config = client
        .client_config(PeerVerifier::Exact(server_id.clone()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config().unwrap());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client_config);
    c.bench_function("rotation_to_first_new_handshake", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let next = context(&ca, &server_id);
                let expected = next.svids[0].cert_chain[0].clone();
                let started = Instant::now();
                server.rotate(&next).unwrap();
                rt.block_on(async {
                    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let name = ServerName::try_from("ligand.invalid").unwrap();
                    let mut tls = connector.connect(name, tcp).await.unwrap();
                    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                    assert_eq!(
                        presented, expected,
                        "handshake after rotation uses the new SVID"
                    );
                    let mut buf = Vec::new();
                    let _ = tls.read_to_end(&mut buf).await;
                });
                total += started.elapsed();
            }
            total
        });
    });
}

criterion_group!(benches, issuance, rotation_to_handshake);
criterion_main!(benches);
