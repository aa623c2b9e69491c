//! The fetcher inside a real `ligand_runtime` server, against a real bundle server over mTLS
//! on loopback: initial fetch, conditional fetch, refusals at init, and last-good retention
//! with backoff while the bundle server is down.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ligand_bundle_fetcher_http::{FetchError, HttpBundleFetcher};
use ligand_bundle_server::{BundleServer, BundleStore, Scoping, ServerHandle};
use ligand_opa_bundle::{Bundle, Limits, SigningKey, VerificationKey, Verifier};
use ligand_runtime::testkit::{FakeIdentity, RecordingTelemetry, TestCa};
use ligand_runtime::tls::IdentityState;
use ligand_runtime::{
    Action, BundleFetcher, Config, Denial, EvalRequest, EvalResponse, InboundRequest, InitError,
    Link, PolicyEngine, ProviderError, ProviderKind, Resource, Server, SpiffeId, State,
};

const SERVER_ID: &str = "spiffe://example.org/ligand/bundle-server";
const ACCOUNTS: &str = "spiffe://example.org/service/accounts";

/// A policy engine that verifies each bundle and answers from `data.ligand.authz.allow`.
struct DataPolicy {
    verifier: Verifier,
    /// Every bundle loaded: (revision, allow).
    loaded: Mutex<Vec<(String, bool)>>,
}

impl DataPolicy {
    fn latest(&self) -> Option<(String, bool)> {
        self.loaded.lock().unwrap().last().cloned()
    }
    fn loads(&self) -> usize {
        self.loaded.lock().unwrap().len()
    }
}

#[async_trait]
impl PolicyEngine for DataPolicy {
    async fn evaluate(&self, _: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        let (revision, allow) = self
            .latest()
            .ok_or_else(|| ProviderError::Invalid("no policy loaded".into()))?;
        let mut response = if allow {
            EvalResponse::allow()
        } else {
            EvalResponse::deny("data.ligand.authz.allow is false")
        };
        response.policy_version = Some(revision.into());
        Ok(response)
    }

    async fn reload(&self, bytes: &[u8]) -> Result<(), ProviderError> {
        let bundle = Bundle::from_tar_gz(bytes, &Limits::default())
            .map_err(|e| ProviderError::Invalid(e.to_string()))?;
        self.verifier
            .verify(&bundle)
            .map_err(|e| ProviderError::Invalid(e.to_string()))?;
        let data = bundle
            .data()
            .map_err(|e| ProviderError::Invalid(e.to_string()))?;
        let allow = data["ligand"]["authz"]["allow"].as_bool() == Some(true);
        let revision = bundle.revision().unwrap_or_default().to_owned();
        self.loaded.lock().unwrap().push((revision, allow));
        Ok(())
    }
}

struct World {
    ca: TestCa,
    repo: tempfile::TempDir,
    signing_pem: String,
    verifier: Verifier,
}

fn write(root: &Path, path: &str, body: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

impl World {
    fn new() -> Self {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "lib/ligand/lib/util.rego",
            "package ligand.lib\n\nyes := true\n",
        );
        for service in ["accounts", "payments"] {
            write(
                repo.path(),
                &format!("services/{service}/ligand/authz/policy.rego"),
                "package ligand.authz\n\ndefault allow := false\n",
            );
            write(
                repo.path(),
                &format!("services/{service}/ligand/authz/data.json"),
                r#"{"allow": true}"#,
            );
        }
        let pair = rcgen::KeyPair::generate().unwrap();
        let verifier = Verifier::new().key(
            "bundle-key",
            VerificationKey::from_pem("ES256", pair.public_key_pem().as_bytes()).unwrap(),
        );
        Self {
            ca: TestCa::new("example.org"),
            repo,
            signing_pem: pair.serialize_pem(),
            verifier,
        }
    }

    /// Starts a bundle server on `addr` over a freshly opened store of the repository.
    async fn serve(&self, addr: SocketAddr) -> ServerHandle {
        let key = SigningKey::from_pem("bundle-key", "ES256", self.signing_pem.as_bytes()).unwrap();
        let store = Arc::new(BundleStore::open(self.repo.path(), key, None).unwrap());
        let identity =
            Arc::new(IdentityState::new(&self.ca.context(self.ca.svid(SERVER_ID)), None).unwrap());
        let scoping = Scoping::new(self.ca.trust_domain().clone());
        BundleServer::bind(addr, &identity, store, scoping)
            .await
            .unwrap()
            .max_wait(Duration::from_secs(1))
            .spawn()
    }

    fn fetcher(&self, addr: SocketAddr) -> ligand_bundle_fetcher_http::HttpBundleFetcherBuilder {
        HttpBundleFetcher::builder(format!("https://{addr}"), SpiffeId::new(SERVER_ID).unwrap())
            .long_poll(Duration::from_secs(1))
            .backoff(Duration::from_millis(100), Duration::from_millis(400))
            .request_timeout(Duration::from_secs(2))
    }

    fn policy(&self) -> Arc<DataPolicy> {
        Arc::new(DataPolicy {
            verifier: self.verifier.clone(),
            loaded: Mutex::new(Vec::new()),
        })
    }

    async fn init(
        &self,
        fetcher: HttpBundleFetcher,
        policy: Arc<DataPolicy>,
        telemetry: Arc<RecordingTelemetry>,
    ) -> Result<Server, InitError> {
        let identity = FakeIdentity::new(self.ca.context(self.ca.svid(ACCOUNTS)));
        ligand_runtime::init_trust_boundary(
            Config::builder()
                .identity(identity)
                .policy(policy)
                .bundle_fetcher(fetcher)
                .telemetry(telemetry)
                .build(),
        )
        .await
    }
}

async fn decide(server: &Server) -> Result<(), Denial> {
    let request = InboundRequest::new(
        Link::workload("spiffe://example.org/service/web"),
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
    );
    server
        .enforce(request)
        .await
        .map(|_| ())
        .map_err(|denied| denied.denial)
}

/// Polls `check` every 20 ms until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fetcher_state(server: &Server) -> Option<State> {
    server.monitor().provider(ProviderKind::BundleFetcher)
}

#[tokio::test]
async fn initial_and_conditional_fetches() {
    let world = World::new();
    let bundle_server = world.serve("127.0.0.1:0".parse().unwrap()).await;
    let addr = bundle_server.local_addr().unwrap();
    let fetcher = world.fetcher(addr).build().unwrap();
    let policy = world.policy();
    let server = world
        .init(
            fetcher.clone(),
            policy.clone(),
            Arc::new(RecordingTelemetry::new()),
        )
        .await
        .unwrap();
    assert_eq!(fetcher.path(), Some("/bundles/accounts"));
    assert_eq!(fetcher_state(&server), Some(State::Ready));
    let (revision, allow) = policy.latest().unwrap();
    assert!(allow);
    decide(&server).await.unwrap();

    let bundle = fetcher.fetch(None).await.unwrap().unwrap();
    assert_eq!(bundle.revision.as_deref(), Some(revision.as_str()));
    assert_eq!(bundle.etag, Some(format!("\"{revision}\"")));
    assert_eq!(fetcher.fetch(bundle.etag.as_deref()).await.unwrap(), None);

    server.close().await;
    bundle_server.shutdown().await;
}

#[tokio::test]
async fn init_fails_closed_on_refusal_and_on_the_wrong_server() {
    let world = World::new();
    let bundle_server = world.serve("127.0.0.1:0".parse().unwrap()).await;
    let addr = bundle_server.local_addr().unwrap();

    // Asking for another service's bundle: the server answers 403 and init refuses to start.
    let other = world.fetcher(addr).bundle_name("payments").build().unwrap();
    let error = world
        .init(other, world.policy(), Arc::new(RecordingTelemetry::new()))
        .await
        .unwrap_err();
    let InitError::Provider { kind, source } = error else {
        panic!("unexpected {error:?}");
    };
    assert_eq!(kind, ProviderKind::BundleFetcher);
    let ProviderError::Backend { source, .. } = source else {
        panic!("unexpected {source:?}");
    };
    assert!(matches!(
        source.downcast_ref::<FetchError>(),
        Some(FetchError::Status(status)) if status.as_u16() == 403
    ));

    // A server that is not the expected SPIFFE ID fails the handshake.
    let impostor = HttpBundleFetcher::builder(
        format!("https://{addr}"),
        SpiffeId::new("spiffe://example.org/someone-else").unwrap(),
    )
    .build()
    .unwrap();
    let error = world
        .init(
            impostor,
            world.policy(),
            Arc::new(RecordingTelemetry::new()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, InitError::Provider { source: ProviderError::Backend { source, .. }, .. }
            if matches!(source.downcast_ref::<FetchError>(), Some(FetchError::Tls(_)))),
        "{error:?}"
    );

    // Nothing listening: init fails too.
    bundle_server.shutdown().await;
    let unreachable = world.fetcher(addr).build().unwrap();
    assert!(
        world
            .init(
                unreachable,
                world.policy(),
                Arc::new(RecordingTelemetry::new())
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn last_good_policy_survives_an_outage_and_a_new_revision_loads_after_it() {
    let world = World::new();
    let bundle_server = world.serve("127.0.0.1:0".parse().unwrap()).await;
    let addr = bundle_server.local_addr().unwrap();
    let fetcher = world.fetcher(addr).build().unwrap();
    let policy = world.policy();
    let telemetry = Arc::new(RecordingTelemetry::new());
    let server = world
        .init(fetcher, policy.clone(), telemetry.clone())
        .await
        .unwrap();
    let (first_revision, _) = policy.latest().unwrap();
    decide(&server).await.unwrap();

    // The bundle server goes away: the fetcher kind becomes Unavailable, the policy stays.
    bundle_server.shutdown().await;
    eventually(Duration::from_secs(10), "fetcher Unavailable", || {
        fetcher_state(&server) == Some(State::Unavailable)
    })
    .await;
    assert_eq!(server.monitor().overall(), State::Degraded);
    decide(&server)
        .await
        .expect("the last good policy still decides");
    assert_eq!(policy.latest().unwrap().0, first_revision);

    // Retries are spaced by the backoff (100 ms doubling to 400 ms, jittered down to half),
    // not a tight loop: count the failures reported over 1.5 s.
    let failures = |t: &RecordingTelemetry| {
        t.health_transitions()
            .iter()
            .filter(|e| e.kind == ProviderKind::BundleFetcher && e.to == State::Unavailable)
            .count()
    };
    server.flush_audit().await;
    let before = failures(&telemetry);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.flush_audit().await;
    let retries = failures(&telemetry) - before;
    assert!((2..=12).contains(&retries), "{retries} retries in 1.5 s");
    decide(&server).await.expect("still the last good policy");

    // The policy changes while the server is down; it comes back on the same port.
    write(
        world.repo.path(),
        "services/accounts/ligand/authz/data.json",
        r#"{"allow": false}"#,
    );
    let restarted = world.serve(addr).await;
    eventually(Duration::from_secs(10), "the new revision", || {
        policy
            .latest()
            .is_some_and(|(rev, _)| rev != first_revision)
    })
    .await;
    eventually(Duration::from_secs(5), "fetcher Ready", || {
        fetcher_state(&server) == Some(State::Ready)
    })
    .await;
    assert_eq!(server.monitor().overall(), State::Ready);
    assert_eq!(decide(&server).await, Err(Denial::PolicyDenied));

    server.close().await;
    restarted.shutdown().await;
}

#[tokio::test]
async fn recovery_without_a_change_still_marks_the_fetcher_ready() {
    let world = World::new();
    let bundle_server = world.serve("127.0.0.1:0".parse().unwrap()).await;
    let addr = bundle_server.local_addr().unwrap();
    let policy = world.policy();
    let server = world
        .init(
            world.fetcher(addr).build().unwrap(),
            policy.clone(),
            Arc::new(RecordingTelemetry::new()),
        )
        .await
        .unwrap();
    let (revision, _) = policy.latest().unwrap();
    bundle_server.shutdown().await;
    eventually(Duration::from_secs(10), "fetcher Unavailable", || {
        fetcher_state(&server) == Some(State::Unavailable)
    })
    .await;
    let loads = policy.loads();
    let restarted = world.serve(addr).await;
    eventually(Duration::from_secs(10), "fetcher Ready", || {
        fetcher_state(&server) == Some(State::Ready)
    })
    .await;
    // The same revision was delivered again (an unconditional fetch after the error).
    assert!(policy.loads() > loads);
    assert_eq!(policy.latest().unwrap().0, revision);
    server.close().await;
    restarted.shutdown().await;
}

#[tokio::test]
async fn watch_stops_on_close() {
    let world = World::new();
    let bundle_server = world.serve("127.0.0.1:0".parse().unwrap()).await;
    let addr = bundle_server.local_addr().unwrap();
    let fetcher = world.fetcher(addr).build().unwrap();
    let server = world
        .init(
            fetcher.clone(),
            world.policy(),
            Arc::new(RecordingTelemetry::new()),
        )
        .await
        .unwrap();
    let mut updates = fetcher.watch().await.unwrap();
    server.close().await;
    // After close the watch task ends and drops its sender.
    tokio::time::timeout(Duration::from_secs(5), async {
        while updates.changed().await.is_ok() {}
    })
    .await
    .expect("the watch ends after close");
    assert!(matches!(fetcher.watch().await, Err(ProviderError::Closed)));
    bundle_server.shutdown().await;
}
