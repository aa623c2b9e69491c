//! End to end: two services initialized with `ligand_runtime::init` take their identities
//! from the Ligand identity agent through `SpiffeIdentity`, then call each other over mTLS
//! continuously while their 5-second SVIDs rotate. No request may fail.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use common::{agent, entry};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use ligand_identity_spiffe::SpiffeIdentity;
use ligand_runtime::__private::{Routes, get};
use ligand_runtime::testkit::{AllowList, identity_state};
use ligand_runtime::tls::{IdentityState, PeerVerifier};
use ligand_runtime::{Config, Ctx, HttpBinding, Server, Service, SpiffeId};
use rustls_pki_types::{CertificateDer, ServerName};

const A: &str = "spiffe://example.org/service/a";
const B: &str = "spiffe://example.org/service/b";
const TTL: Duration = Duration::from_secs(5);
const TRAFFIC: Duration = Duration::from_secs(30);

/// A service written the way `#[ligand::service]` expands: echoes the verified caller.
struct Echo;

impl Service for Echo {
    fn __ligand_routes(self) -> Routes<Self> {
        Routes::new(self).route("/hello/{name}", "GET", |_| {
            get(|ctx: Ctx, Path(name): Path<String>| async move {
                format!(
                    "hello {name} from {}",
                    ctx.caller().principal().unwrap_or_default()
                )
            })
        })
    }
}

async fn start(endpoint: &str, id: &str) -> (Server, SocketAddr) {
    let server = ligand_runtime::init(
        Config::builder()
            .identity(SpiffeIdentity::new(endpoint).unwrap())
            .spiffe_id(id)
            .policy(AllowList::new().allow("*", "*", "*"))
            .binding(HttpBinding::new("127.0.0.1:0"))
            .build(),
    )
    .await
    .expect("init with the agent's identity");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(Echo).await }
    });
    let addr = server.local_addr().await.expect("listening");
    (server, addr)
}

/// One GET on a fresh mTLS connection presenting `identity`'s current SVID, accepting only
/// `expect`. Returns the body and the certificate the server presented.
async fn call(
    identity: &Arc<IdentityState>,
    expect: &SpiffeId,
    addr: SocketAddr,
) -> Result<(String, CertificateDer<'static>), Box<dyn std::error::Error + Send + Sync>> {
    let mut config = (*identity.client_config(PeerVerifier::Exact(expect.clone()))?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("ligand.invalid")?, tcp)
        .await?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no server certificate")?[0]
        .clone();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await?;
    tokio::spawn(conn);
    let response = sender
        .send_request(
            hyper::Request::get("/hello/peer")
                .header("host", "ligand.invalid")
                .body(Empty::new())?,
        )
        .await?;
    let status = response.status();
    let body = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
    if status != 200 {
        return Err(format!("status {status}: {body}").into());
    }
    Ok((body, presented))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_call_each_other_across_rotations_without_failures() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path(), vec![entry(A, TTL), entry(B, TTL)]).await;
    let (a, a_addr) = start(&agent.endpoint(), A).await;
    let (b, b_addr) = start(&agent.endpoint(), B).await;
    let (a_id, b_id) = (SpiffeId::new(A).unwrap(), SpiffeId::new(B).unwrap());

    let started = tokio::time::Instant::now();
    let (mut requests, mut failures) = (0usize, Vec::new());
    let mut seen = HashSet::new();
    while started.elapsed() < TRAFFIC {
        for (from, expect, addr, caller) in [
            (identity_state(&a), &b_id, b_addr, A),
            (identity_state(&b), &a_id, a_addr, B),
        ] {
            requests += 1;
            match call(from, expect, addr).await {
                Ok((body, presented)) => {
                    assert!(body.ends_with(&format!("from {caller}")), "{body}");
                    seen.insert(presented.to_vec());
                }
                Err(error) => failures.push(format!("{:?}: {error}", started.elapsed())),
            }
        }
    }
    eprintln!(
        "{requests} requests, {} distinct server SVIDs, {} failures",
        seen.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {requests} failed: {failures:?}",
        failures.len()
    );
    // 30 s of 5 s SVIDs rotating at half-life: about 12 server certificates per service.
    assert!(
        seen.len() >= 16,
        "only {} distinct server SVIDs seen",
        seen.len()
    );
    assert!(requests > 100, "{requests}");
    a.close().await;
    b.close().await;
}
