//! The bundle server over real mTLS on loopback: protocol, scoping, handshake refusals,
//! signatures, long polling and repository changes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use ligand_bundle_server::{BundleServer, BundleStore, Scoping, ServerHandle, WatchOptions, watch};
use ligand_opa_bundle::{Bundle, BundleFile, Limits, SigningKey, VerificationKey, Verifier};
use ligand_runtime::testkit::{PeerClient, PeerResponse, TestCa};
use ligand_runtime::tls::IdentityState;
use spiffe::SpiffeId;

const SERVER_ID: &str = "spiffe://example.org/ligand/bundle-server";
const ACCOUNTS: &str = "spiffe://example.org/service/accounts";

struct Fixture {
    ca: TestCa,
    repo: tempfile::TempDir,
    store: Arc<BundleStore>,
    server: Option<ServerHandle>,
    addr: SocketAddr,
    verifier: Verifier,
}

fn write(root: &Path, path: &str, body: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

fn seed_repo(root: &Path) {
    write(
        root,
        "lib/ligand/lib/util.rego",
        "package ligand.lib\n\nis_admin(p) if p == \"admin\"\n",
    );
    for service in ["accounts", "payments"] {
        write(
            root,
            &format!("services/{service}/ligand/authz/policy.rego"),
            "package ligand.authz\n\ndefault allow := false\n",
        );
        write(
            root,
            &format!("services/{service}/ligand/authz/data.json"),
            &format!(r#"{{"service": "{service}", "allow": true}}"#),
        );
    }
    write(root, "services/accounts/README.md", "not bundled");
}

fn keys() -> (SigningKey, Verifier) {
    let pair = rcgen::KeyPair::generate().unwrap();
    let signing =
        SigningKey::from_pem("bundle-key", "ES256", pair.serialize_pem().as_bytes()).unwrap();
    let verifier = Verifier::new().key(
        "bundle-key",
        VerificationKey::from_pem("ES256", pair.public_key_pem().as_bytes()).unwrap(),
    );
    (signing, verifier)
}

impl Fixture {
    async fn start(max_wait: Duration) -> Self {
        let ca = TestCa::new("example.org");
        let repo = tempfile::tempdir().unwrap();
        seed_repo(repo.path());
        let (signing, verifier) = keys();
        let store = Arc::new(BundleStore::open(repo.path(), signing, None).unwrap());
        let identity = Arc::new(IdentityState::new(&ca.context(ca.svid(SERVER_ID)), None).unwrap());
        let scoping = Scoping::new(ca.trust_domain().clone());
        let server = BundleServer::bind("127.0.0.1:0", &identity, store.clone(), scoping)
            .await
            .unwrap()
            .max_wait(max_wait);
        let addr = server.local_addr().unwrap();
        Self {
            ca,
            repo,
            store,
            server: Some(server.spawn()),
            addr,
            verifier,
        }
    }

    fn client(&self, id: &str) -> PeerClient {
        let server = SpiffeId::new(SERVER_ID).unwrap();
        PeerClient::new(&self.ca.context(self.ca.svid(id)), Some(&server)).unwrap()
    }

    async fn get(&self, id: &str, path: &str, headers: &[(&str, &str)]) -> PeerResponse {
        self.client(id)
            .send(self.addr, Method::GET, path, headers, Vec::new())
            .await
            .unwrap()
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn etag(response: &PeerResponse) -> String {
    response.headers["etag"].to_str().unwrap().to_owned()
}

fn content_type(response: &PeerResponse) -> Option<&str> {
    response
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn serves_the_callers_signed_bundle_with_etag_and_304() {
    let mut fx = Fixture::start(Duration::from_secs(60)).await;
    let first = fx.get(ACCOUNTS, "/bundles/accounts", &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(content_type(&first), Some("application/gzip"));
    let tag = etag(&first);
    let bundle = Bundle::from_tar_gz(&first.body, &Limits::default()).unwrap();
    // ETag = "<revision>" and the manifest carries the same revision and the roots.
    assert_eq!(tag, format!("\"{}\"", bundle.revision().unwrap()));
    assert_eq!(
        bundle.manifest().unwrap().roots.as_deref(),
        Some(&["ligand".to_owned()][..])
    );
    let mut paths: Vec<&str> = bundle.files().iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "ligand/authz/data.json",
            "ligand/authz/policy.rego",
            "ligand/lib/util.rego"
        ],
        "lib is overlaid, non-policy files are left out"
    );
    assert_eq!(
        bundle.data().unwrap()["ligand"]["authz"]["service"],
        "accounts"
    );
    fx.verifier.verify(&bundle).unwrap();

    // Conditional fetch: the current ETag gives 304 without a body, a stale one gives 200.
    let again = fx
        .get(ACCOUNTS, "/bundles/accounts", &[("if-none-match", &tag)])
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(etag(&again), tag);
    let stale = fx
        .get(
            ACCOUNTS,
            "/bundles/accounts",
            &[("if-none-match", "\"stale\"")],
        )
        .await;
    assert_eq!(stale.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn a_tampered_bundle_does_not_verify() {
    let mut fx = Fixture::start(Duration::from_secs(60)).await;
    let response = fx.get(ACCOUNTS, "/bundles/accounts", &[]).await;
    let served = Bundle::from_tar_gz(&response.body, &Limits::default()).unwrap();
    let files = served
        .files()
        .iter()
        .map(|f| {
            if f.path.ends_with("data.json") {
                BundleFile::new(
                    f.path.clone(),
                    r#"{"service": "accounts", "allow": "everyone"}"#,
                )
            } else {
                f.clone()
            }
        })
        .collect();
    let tampered = Bundle::new(files)
        .with_manifest(served.manifest().unwrap().clone())
        .with_signatures(served.signatures().unwrap().clone());
    let received = Bundle::from_tar_gz(&tampered.to_tar_gz().unwrap(), &Limits::default()).unwrap();
    assert!(matches!(
        fx.verifier.verify(&received),
        Err(ligand_opa_bundle::SignatureError::DigestMismatch(path)) if path == "ligand/authz/data.json"
    ));
    // A verifier holding another key refuses the genuine bundle too.
    let (_, stranger) = keys();
    assert!(stranger.verify(&served).is_err());
    fx.stop().await;
}

#[tokio::test]
async fn identical_content_gives_identical_revisions() {
    let fx = Fixture::start(Duration::from_secs(60)).await;
    let copy = tempfile::tempdir().unwrap();
    seed_repo(copy.path());
    let (other_key, _) = keys();
    let other = BundleStore::open(copy.path(), other_key, None).unwrap();
    assert_eq!(
        fx.store.get("accounts").unwrap().revision(),
        other.get("accounts").unwrap().revision(),
        "another server instance, another key: same content, same revision"
    );
    assert_ne!(
        fx.store.get("accounts").unwrap().revision(),
        fx.store.get("payments").unwrap().revision()
    );
    // A rescan without changes republishes nothing, byte for byte.
    let before = fx.store.get("accounts").unwrap();
    let report = fx.store.rescan().unwrap();
    assert!(!report.changed());
    assert_eq!(
        fx.store.get("accounts").unwrap().archive(),
        before.archive()
    );
}

/// A `tracing` writer that keeps everything written, to read the audit lines back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn scoping_refuses_other_bundles_and_audits_every_fetch() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter("ligand::audit=info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut fx = Fixture::start(Duration::from_secs(60)).await;
    let own = fx.get(ACCOUNTS, "/bundles/accounts", &[]).await;
    assert_eq!(own.status, 200);
    let revision = fx.store.get("accounts").unwrap().revision().to_owned();

    // Another service's bundle, and a name that does not exist, are refused alike.
    let other = fx.get(ACCOUNTS, "/bundles/payments", &[]).await;
    assert_eq!(other.status, 403);
    assert_eq!(other.json().unwrap()["error_code"], "BUNDLE_FORBIDDEN");
    assert_eq!(fx.get(ACCOUNTS, "/bundles/nothing", &[]).await.status, 403);
    // A caller whose own bundle does not exist: 404.
    let ghost = "spiffe://example.org/service/ghost";
    assert_eq!(fx.get(ghost, "/bundles/ghost", &[]).await.status, 404);
    // Not a bundle path, or not GET.
    assert_eq!(fx.get(ACCOUNTS, "/other", &[]).await.status, 404);
    assert_eq!(
        fx.get(ACCOUNTS, "/bundles/../accounts", &[]).await.status,
        404
    );
    let post = fx
        .client(ACCOUNTS)
        .post(fx.addr, "/bundles/accounts", Vec::new())
        .await
        .unwrap();
    assert_eq!(post.status, 405);
    fx.stop().await;

    let audit: Vec<String> = captured
        .lines()
        .into_iter()
        .filter(|l| l.contains("ligand::audit"))
        .collect();
    assert_eq!(audit.len(), 7, "one audit line per request: {audit:#?}");
    assert!(
        audit[0].contains(&format!("caller={ACCOUNTS}")),
        "{}",
        audit[0]
    );
    assert!(audit[0].contains("bundle=accounts"));
    assert!(audit[0].contains(&format!("revision={revision}")));
    assert!(audit[0].contains("outcome=200"));
    assert!(audit[1].contains("bundle=payments") && audit[1].contains("outcome=403"));
    assert!(audit[3].contains(&format!("caller={ghost}")) && audit[3].contains("outcome=404"));
}

#[tokio::test]
async fn a_workload_elsewhere_in_the_domain_cannot_read_a_bundle_by_its_last_segment() {
    let mut fx = Fixture::start(Duration::from_secs(60)).await;
    // Same trust domain, same last path segment as the accounts service, other workloads.
    for id in [
        "spiffe://example.org/dev/service/accounts",
        "spiffe://example.org/ns/dev/sa/accounts",
        "spiffe://example.org/accounts",
        "spiffe://example.org/service/accounts/debug",
    ] {
        let response = fx.get(id, "/bundles/accounts", &[]).await;
        assert_eq!(response.status, 403, "{id} read the accounts bundle");
    }
    assert_eq!(fx.get(ACCOUNTS, "/bundles/accounts", &[]).await.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn callers_without_a_trusted_svid_are_refused_at_the_handshake() {
    let mut fx = Fixture::start(Duration::from_secs(60)).await;

    // An SVID from another trust domain (the client itself trusts the server's domain).
    let other = TestCa::new("other.org");
    let mut context = other.context(other.svid("spiffe://other.org/service/accounts"));
    context
        .bundles
        .insert(fx.ca.trust_domain().clone(), vec![fx.ca.root()]);
    let server = SpiffeId::new(SERVER_ID).unwrap();
    let foreign = PeerClient::new(&context, Some(&server)).unwrap();
    assert!(
        foreign.get(fx.addr, "/bundles/accounts").await.is_err(),
        "a foreign trust domain must not get a response"
    );

    // No client certificate at all.
    assert!(no_client_certificate(fx.addr).await.is_err());

    // The server still serves a valid caller afterwards.
    assert_eq!(fx.get(ACCOUNTS, "/bundles/accounts", &[]).await.status, 200);
    fx.stop().await;
}

/// A TLS 1.3 client that presents no certificate and accepts any server, then sends a GET.
async fn no_client_certificate(addr: SocketAddr) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let config = ligand_runtime::testkit::probe_client_config(&[&rustls::version::TLS13], None)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("ligand.invalid")?.to_owned(), tcp)
        .await?;
    tls.write_all(b"GET /bundles/accounts HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    if response.is_empty() {
        return Err("connection closed without a response".into());
    }
    Ok(response)
}

#[tokio::test]
async fn long_poll_answers_304_after_the_wait_and_is_capped() {
    let mut fx = Fixture::start(Duration::from_secs(1)).await;
    let tag = etag(&fx.get(ACCOUNTS, "/bundles/accounts", &[]).await);

    let started = Instant::now();
    let waited = fx
        .get(
            ACCOUNTS,
            "/bundles/accounts",
            &[("if-none-match", &tag), ("prefer", "wait=1")],
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(waited.status, 304);
    assert_eq!(
        content_type(&waited),
        Some("application/vnd.openpolicyagent.bundles")
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "held for {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "held for {elapsed:?}");

    // A client asking for far longer than the cap (1 s here) is answered at the cap.
    let started = Instant::now();
    let capped = fx
        .get(
            ACCOUNTS,
            "/bundles/accounts",
            &[
                ("if-none-match", &tag),
                ("prefer", "modes=snapshot,delta;wait=3600"),
            ],
        )
        .await;
    assert_eq!(capped.status, 304);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Without an ETag match, a long poll answers at once with the OPA long-poll content type.
    let fresh = fx
        .get(ACCOUNTS, "/bundles/accounts", &[("prefer", "wait=30")])
        .await;
    assert_eq!(fresh.status, 200);
    assert_eq!(
        content_type(&fresh),
        Some("application/vnd.openpolicyagent.bundles")
    );
    fx.stop().await;
}

#[tokio::test]
async fn long_poll_returns_early_when_the_folder_changes() {
    let mut fx = Fixture::start(Duration::from_secs(60)).await;
    // Filesystem events only: the periodic rescan is pushed out of the test's reach.
    let _watch = watch(
        fx.store.clone(),
        WatchOptions {
            debounce: Duration::from_millis(50),
            rescan_interval: Duration::from_secs(3600),
        },
    );
    let tag = etag(&fx.get(ACCOUNTS, "/bundles/accounts", &[]).await);
    let client = fx.client(ACCOUNTS);
    let addr = fx.addr;
    let pending_tag = tag.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        client
            .send(
                addr,
                Method::GET,
                "/bundles/accounts",
                &[("if-none-match", &pending_tag), ("prefer", "wait=30")],
                Vec::new(),
            )
            .await
            .unwrap()
    });
    // Give the request time to reach the server and start waiting, then change the folder.
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(
        fx.repo.path(),
        "services/accounts/ligand/authz/data.json",
        r#"{"service": "accounts", "allow": false}"#,
    );
    let response = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll must end well before its 30 s wait")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_ne!(etag(&response), tag);
    assert!(started.elapsed() < Duration::from_secs(10));
    let bundle = Bundle::from_tar_gz(&response.body, &Limits::default()).unwrap();
    assert_eq!(bundle.data().unwrap()["ligand"]["authz"]["allow"], false);
    fx.verifier.verify(&bundle).unwrap();
    // The other service's bundle did not change.
    fx.stop().await;
}

#[tokio::test]
async fn broken_and_removed_folders() {
    let mut fx = Fixture::start(Duration::from_secs(60)).await;
    let good = fx.store.get("accounts").unwrap();

    // Invalid JSON: the build fails and the previous bundle stays served.
    write(
        fx.repo.path(),
        "services/accounts/ligand/authz/data.json",
        "{ nope",
    );
    let report = fx.store.rescan().unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "accounts");
    let response = fx.get(ACCOUNTS, "/bundles/accounts", &[]).await;
    assert_eq!(etag(&response), good.etag());

    // A lib file shadowed by a service file is a conflict, not an override.
    write(
        fx.repo.path(),
        "services/accounts/ligand/authz/data.json",
        r#"{"allow": true}"#,
    );
    write(
        fx.repo.path(),
        "services/accounts/ligand/lib/util.rego",
        "package evil",
    );
    let report = fx.store.rescan().unwrap();
    assert!(matches!(
        &report.failed[..],
        [(name, ligand_bundle_server::BuildError::Conflict { .. })] if name == "accounts"
    ));

    // The folder disappears: the bundle is withdrawn.
    std::fs::remove_dir_all(fx.repo.path().join("services/accounts")).unwrap();
    let report = fx.store.rescan().unwrap();
    assert_eq!(report.removed, ["accounts"]);
    assert_eq!(fx.get(ACCOUNTS, "/bundles/accounts", &[]).await.status, 404);

    // The repository itself vanishing is an error that keeps what is served.
    std::fs::remove_dir_all(fx.repo.path().join("services")).unwrap();
    assert!(fx.store.rescan().is_err());
    assert!(fx.store.get("payments").is_some());
    fx.stop().await;
}
