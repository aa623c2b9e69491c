//! Shared fixtures: an agent on a socket in a temporary directory, real clients.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures")]

pub mod raw;

use std::time::Duration;

use ligand_identity_agent::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use ligand_identity_agent::{Agent, AgentConfig, RegistrationEntry, RunningAgent, Selector};
use ligand_runtime::{SpiffeId, TrustDomain};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

pub const TRUST_DOMAIN: &str = "example.org";
pub const WORKLOAD_ID: &str = "spiffe://example.org/service/test";

pub fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

pub fn entry(selectors: Vec<Selector>) -> RegistrationEntry {
    RegistrationEntry::new(SpiffeId::new(WORKLOAD_ID).unwrap(), selectors)
}

/// A config whose socket lives in a fresh directory under `dir`, with the OIDC endpoint on
/// a free loopback port.
pub fn config(dir: &TempDir, entries: Vec<RegistrationEntry>) -> AgentConfig {
    let mut config = AgentConfig::new(
        TrustDomain::new(TRUST_DOMAIN).unwrap(),
        dir.path().join("agent").join("api.sock"),
    );
    config.oidc.listen = "127.0.0.1:0".parse().unwrap();
    for e in entries {
        config = config.entry(e);
    }
    config
}

pub struct Fixture {
    pub dir: TempDir,
    pub agent: RunningAgent,
}

impl Fixture {
    pub async fn start(entries: Vec<RegistrationEntry>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::start(config(&dir, entries))
            .await
            .expect("agent starts");
        Self { dir, agent }
    }

    /// The agent with one entry for this process's uid.
    pub async fn for_this_uid(x509_ttl: Duration) -> Self {
        Self::start(vec![entry(vec![Selector::Uid(uid())]).x509_ttl(x509_ttl)]).await
    }

    /// A `spiffe` crate client: an independent SPIFFE implementation.
    pub async fn spiffe_client(&self) -> spiffe::WorkloadApiClient {
        spiffe::WorkloadApiClient::connect_to(self.agent.endpoint())
            .await
            .expect("spiffe client connects")
    }

    /// A raw gRPC client that sends exactly what the test puts in each request.
    pub async fn raw_client(&self) -> SpiffeWorkloadApiClient<Channel> {
        let path = self.agent.socket_path().to_owned();
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .unwrap();
        SpiffeWorkloadApiClient::new(channel)
    }
}

/// `request` with the Workload API security header.
pub fn with_header<T>(body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    request
}

/// GET `path` from the agent's OIDC endpoint as JSON.
pub async fn http_get_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}
