//! A local OpenBao stand-in for tests: an axum server over real TLS on a loopback port that
//! follows the OpenBao 2.x / Vault 1.x HTTP API v1 for the calls the provider makes (paths,
//! JSON shapes, status codes, `X-Vault-Token`, `{"errors":[…]}` bodies). No OpenBao binary can
//! be installed where these tests run.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part of the stand-in"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support")]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::task::{JoinHandle, JoinSet};

/// A token the stand-in accepts.
#[derive(Debug, Clone)]
pub struct Token {
    pub ttl: u64,
    pub renewable: bool,
}

/// A dynamic secrets endpoint: each read issues new credentials under a new lease.
#[derive(Debug, Clone)]
pub struct Dynamic {
    pub lease_duration: u64,
    pub renewable: bool,
}

#[derive(Debug)]
struct Lease {
    renewable: bool,
    expires: Instant,
}

/// The stand-in's state; tests change it to script the server.
#[derive(Debug, Default)]
pub struct Bao {
    tokens: Mutex<HashMap<String, Token>>,
    kv: Mutex<HashMap<String, (Value, u64)>>,
    dynamic: Mutex<HashMap<String, Dynamic>>,
    leases: Mutex<HashMap<String, Lease>>,
    forbidden: Mutex<HashSet<String>>,
    cert_roles: Mutex<HashMap<String, String>>,
    jwt: Mutex<Option<(String, String)>>,
    calls: Mutex<Vec<String>>,
    counter: AtomicU64,
    pub sealed: AtomicBool,
    pub failing: AtomicBool,
}

fn errors(status: StatusCode, messages: &[&str]) -> Response {
    (status, Json(json!({ "errors": messages }))).into_response()
}

fn denied() -> Response {
    errors(StatusCode::FORBIDDEN, &["permission denied"])
}

impl Bao {
    pub fn token(&self, token: &str, ttl: u64, renewable: bool) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), Token { ttl, renewable });
    }

    pub fn kv(&self, path: &str, data: Value) {
        let mut kv = self.kv.lock().unwrap();
        let version = kv.get(path).map_or(1, |(_, v)| v + 1);
        kv.insert(path.to_owned(), (data, version));
    }

    pub fn dynamic(&self, path: &str, lease_duration: u64, renewable: bool) {
        self.dynamic.lock().unwrap().insert(
            path.to_owned(),
            Dynamic {
                lease_duration,
                renewable,
            },
        );
    }

    pub fn forbid(&self, path: &str) {
        self.forbidden.lock().unwrap().insert(path.to_owned());
    }

    /// Certificate logins from `spiffe_id` as `role` get `token`.
    pub fn cert_role(&self, spiffe_id: &str, role: &str, token: &str) {
        self.cert_roles
            .lock()
            .unwrap()
            .insert(format!("{spiffe_id} {role}"), token.to_owned());
        self.token(token, 0, false);
    }

    /// JWT logins as `role` with exactly `jwt` succeed.
    pub fn jwt_role(&self, role: &str, jwt: &str) {
        *self.jwt.lock().unwrap() = Some((role.to_owned(), jwt.to_owned()));
    }

    /// Revokes a lease, as `bao lease revoke` would.
    pub fn revoke(&self, lease_id: &str) {
        self.leases.lock().unwrap().remove(lease_id);
    }

    pub fn leases(&self) -> Vec<String> {
        self.leases.lock().unwrap().keys().cloned().collect()
    }

    /// The calls received so far, as `METHOD /v1/path`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, call: &str) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    /// The caller's token, if it sent one the server knows (a missing or unknown token is
    /// a 403 "permission denied", as in OpenBao).
    fn check_token(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get("x-vault-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| self.tokens.lock().unwrap().contains_key(*t))
            .map(str::to_owned)
    }

    fn auth_block(&self, token: &str) -> Value {
        let info = self.tokens.lock().unwrap().get(token).cloned().unwrap();
        json!({
            "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": null, "wrap_info": null, "warnings": null,
            "auth": {
                "client_token": token, "accessor": "acc", "policies": ["default"],
                "token_policies": ["default"], "metadata": {},
                "lease_duration": info.ttl, "renewable": info.renewable,
                "entity_id": "", "token_type": "service", "orphan": true
            }
        })
    }
}

// === handlers ===

async fn gate(State(bao): State<Arc<Bao>>, request: Request, next: Next) -> Response {
    bao.calls
        .lock()
        .unwrap()
        .push(format!("{} {}", request.method(), request.uri().path()));
    if bao.sealed.load(Ordering::SeqCst) {
        return errors(StatusCode::SERVICE_UNAVAILABLE, &["Vault is sealed"]);
    }
    if bao.failing.load(Ordering::SeqCst) {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, &["internal error"]);
    }
    next.run(request).await
}

async fn lookup_self(State(bao): State<Arc<Bao>>, headers: HeaderMap) -> Response {
    let Some(token) = bao.check_token(&headers) else {
        return denied();
    };
    let info = bao.tokens.lock().unwrap().get(&token).cloned().unwrap();
    Json(json!({
        "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": {
            "accessor": "acc", "creation_ttl": info.ttl, "display_name": "token",
            "expire_time": null, "id": token, "policies": ["default"],
            "renewable": info.renewable, "ttl": info.ttl, "type": "service"
        },
        "wrap_info": null, "warnings": null, "auth": null
    }))
    .into_response()
}

async fn renew_self(State(bao): State<Arc<Bao>>, headers: HeaderMap) -> Response {
    match bao.check_token(&headers) {
        Some(token) => Json(bao.auth_block(&token)).into_response(),
        None => denied(),
    }
}

#[derive(Debug, Clone)]
struct PeerCert(Option<CertificateDer<'static>>);

async fn cert_login(
    State(bao): State<Arc<Bao>>,
    Extension(PeerCert(peer)): Extension<PeerCert>,
    Json(body): Json<Value>,
) -> Response {
    let id = peer.and_then(|cert| ligand_runtime::tls::peer_spiffe_id(&cert).ok());
    let role = body["name"].as_str().unwrap_or("");
    let token = id.and_then(|id| {
        bao.cert_roles
            .lock()
            .unwrap()
            .get(&format!("{id} {role}"))
            .cloned()
    });
    match token {
        Some(token) => Json(bao.auth_block(&token)).into_response(),
        None => errors(
            StatusCode::BAD_REQUEST,
            &["invalid certificate or no client certificate supplied"],
        ),
    }
}

async fn jwt_login(State(bao): State<Arc<Bao>>, Json(body): Json<Value>) -> Response {
    let expected = bao.jwt.lock().unwrap().clone();
    let (Some(role), Some(jwt)) = (body["role"].as_str(), body["jwt"].as_str()) else {
        return errors(StatusCode::BAD_REQUEST, &["missing role or jwt"]);
    };
    match expected {
        Some((r, j)) if r == role && j == jwt => {
            let token = format!("jwt-token-{}", bao.counter.fetch_add(1, Ordering::SeqCst));
            bao.token(&token, 0, false);
            Json(bao.auth_block(&token)).into_response()
        }
        _ => errors(
            StatusCode::BAD_REQUEST,
            &["error validating token: invalid signature"],
        ),
    }
}

async fn lease_renew(
    State(bao): State<Arc<Bao>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if bao.check_token(&headers).is_none() {
        return denied();
    }
    let lease_id = body["lease_id"].as_str().unwrap_or("").to_owned();
    let increment = body["increment"].as_u64().unwrap_or(0);
    let mut leases = bao.leases.lock().unwrap();
    match leases.get_mut(&lease_id) {
        Some(lease) if lease.renewable && lease.expires > Instant::now() => {
            lease.expires = Instant::now() + Duration::from_secs(increment);
            Json(json!({
                "request_id": "r", "lease_id": lease_id, "renewable": true,
                "lease_duration": increment, "data": null, "wrap_info": null,
                "warnings": null, "auth": null
            }))
            .into_response()
        }
        _ => errors(
            StatusCode::BAD_REQUEST,
            &["lease not found or lease is not renewable"],
        ),
    }
}

async fn lease_lookup(
    State(bao): State<Arc<Bao>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if bao.check_token(&headers).is_none() {
        return denied();
    }
    let lease_id = body["lease_id"].as_str().unwrap_or("");
    let leases = bao.leases.lock().unwrap();
    match leases.get(lease_id) {
        Some(lease) if lease.expires > Instant::now() => Json(json!({
            "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": {
                "id": lease_id, "issue_time": "2026-01-01T00:00:00Z",
                "expire_time": "2026-01-01T01:00:00Z", "last_renewal": null,
                "renewable": lease.renewable,
                "ttl": lease.expires.saturating_duration_since(Instant::now()).as_secs()
            },
            "wrap_info": null, "warnings": null, "auth": null
        }))
        .into_response(),
        _ => errors(StatusCode::BAD_REQUEST, &["invalid lease"]),
    }
}

async fn read(
    State(bao): State<Arc<Bao>>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if bao.check_token(&headers).is_none() {
        return denied();
    }
    if bao.forbidden.lock().unwrap().contains(&path) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    if let Some((data, version)) = bao.kv.lock().unwrap().get(&path) {
        return Json(json!({
            "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": {
                "data": data,
                "metadata": {
                    "created_time": "2026-01-01T00:00:00Z", "custom_metadata": null,
                    "deletion_time": "", "destroyed": false, "version": version
                }
            },
            "wrap_info": null, "warnings": null, "auth": null
        }))
        .into_response();
    }
    let dynamic = bao.dynamic.lock().unwrap().get(&path).cloned();
    if let Some(spec) = dynamic {
        let n = bao.counter.fetch_add(1, Ordering::SeqCst);
        let lease_id = format!("{path}/lease-{n}");
        bao.leases.lock().unwrap().insert(
            lease_id.clone(),
            Lease {
                renewable: spec.renewable,
                expires: Instant::now() + Duration::from_secs(spec.lease_duration),
            },
        );
        return Json(json!({
            "request_id": "r", "lease_id": lease_id, "renewable": spec.renewable,
            "lease_duration": spec.lease_duration,
            "data": { "username": format!("v-app-{n}"), "password": format!("pw-{n}") },
            "wrap_info": null, "warnings": null, "auth": null
        }))
        .into_response();
    }
    errors(StatusCode::NOT_FOUND, &[])
}

// === server ===

/// A running stand-in.
pub struct TestBao {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub state: Arc<Bao>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl TestBao {
    /// Serves on a free loopback port. With `client_ca`, client certificates chaining to it
    /// are verified (and optional, as OpenBao's listener does for token clients).
    pub async fn start(client_ca: Option<CertificateDer<'static>>) -> Self {
        let (ca_pem, chain, key) = server_identity();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap();
        let builder = match client_ca {
            Some(root) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(root).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let state = Arc::new(Bao::default());
        let router = Router::new()
            .route("/v1/auth/token/lookup-self", get(lookup_self))
            .route("/v1/auth/token/renew-self", post(renew_self))
            .route("/v1/auth/cert/login", post(cert_login))
            .route("/v1/auth/jwt/login", post(jwt_login))
            .route("/v1/sys/leases/renew", put(lease_renew))
            .route("/v1/sys/leases/lookup", put(lease_lookup))
            .route("/v1/{*path}", get(read))
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tracked.lock().unwrap().spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned());
                    let service = router.layer(Extension(PeerCert(peer)));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                        .await;
                });
            }
        });
        Self {
            addr,
            ca_pem,
            state,
            accept,
            connections,
        }
    }

    pub fn address(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Takes the server down: the port closes and every open connection is dropped.
    pub fn stop(&self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

impl Drop for TestBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA (returned as PEM) and a server certificate for 127.0.0.1 it signed.
fn server_identity() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = params.signed_by(&key, &issuer).unwrap();
    (
        ca.pem(),
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}
