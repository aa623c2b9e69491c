//! The one HTTPS dialer: every outbound connection the framework and its providers make, to
//! services, bundle servers and secrets backends alike, is opened here.
//!
//! A [`Dialer`] is a pooled HTTP client whose connector is the only code that dials: TCP, then a
//! TLS 1.3 handshake that authenticates the server as its [`ServerAuth`] says and presents the
//! client certificate its [`ClientAuth`] says. HTTP/2 is used when the server offers it in ALPN
//! (unless the dialer is [HTTP/1.1 only](DialerBuilder::http1_only)). A pooled connection is
//! retired once it is older than the [maximum age](DialerBuilder::max_connection_age) or its
//! peer's certificate expires, so no connection outlives the identity it was verified with;
//! with [`ClientAuth::svid`] every new connection presents the SVID current at dial time.
//!
//! There is no option for TLS 1.2, plaintext or an unauthenticated server.
//!
//! ```no_run
//! use http::Request;
//! use http_body_util::Full;
//! use ligand_runtime::dial::{ClientAuth, Dialer, ServerAuth};
//! use ligand_runtime::{ProviderContext, SpiffeId};
//! # async fn run(context: &ProviderContext) -> Result<(), Box<dyn std::error::Error>> {
//! // A SPIFFE backend: the server must be exactly this ID; the workload's SVID is presented.
//! let server = SpiffeId::new("spiffe://bank.example/ligand/bundle-server")?;
//! let dialer = Dialer::builder(
//!     ServerAuth::spiffe(context.identity(), server),
//!     ClientAuth::svid(context.identity()),
//! )
//! .http1_only()
//! .build()?;
//! let response = dialer
//!     .request(Request::get("https://bundles.bank.example:8443/bundles/accounts").body(Full::default())?)
//!     .await?;
//! println!("{} ({} bytes)", response.status(), response.body().len());
//! # Ok(()) }
//! ```

mod connector;
mod due;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::SpiffeId;
use tokio_rustls::TlsConnector;

use self::connector::{ConnectionInfo, Connector, NameUse};
pub use self::connector::{DialError, TlsConnection};
pub(crate) use self::due::By;
use self::due::DueTimes;
use crate::tls::{IdentityState, PeerVerifier, SpiffeServerVerifier};

/// How long a request may take by default, connection and response body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a pooled connection is reused by default before it is closed and redialed.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// The largest response body read by default.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

// === impl ServerAuth ===

/// How the server of a dialed connection is authenticated.
#[derive(Clone)]
pub struct ServerAuth(ServerKind);

#[derive(Clone)]
enum ServerKind {
    /// An X.509-SVID of exactly this ID, verified against the trust bundles of `identity`.
    Spiffe {
        identity: Arc<IdentityState>,
        id: SpiffeId,
    },
    /// A web PKI certificate chaining to `roots`, valid for the URI's host.
    WebPki { roots: Arc<RootCertStore> },
    /// A verifier the testkit supplies (a test decides whom its probe accepts).
    #[cfg(feature = "testkit")]
    Testkit(Arc<dyn ServerCertVerifier>),
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ServerKind::Spiffe { id, .. } => {
                f.debug_tuple("Spiffe").field(&id.to_string()).finish()
            }
            ServerKind::WebPki { roots } => f
                .debug_struct("WebPki")
                .field("roots", &roots.len())
                .finish(),
            #[cfg(feature = "testkit")]
            ServerKind::Testkit(_) => f.write_str("Testkit"),
        }
    }
}

impl ServerAuth {
    /// The server must present an X.509-SVID for exactly `id`, verified against the trust
    /// bundles of `identity` as they are at handshake time (a bundle rotation reaches new
    /// dials). The URI's host only fills SNI.
    pub fn spiffe(identity: &Arc<IdentityState>, id: SpiffeId) -> Self {
        Self(ServerKind::Spiffe {
            identity: identity.clone(),
            id,
        })
    }

    /// The server must present a certificate chaining to one of `roots` and valid for the
    /// URI's host (a DNS name or an IP address), as web PKI verifies it; for backends that are
    /// not SPIFFE peers, such as an OpenBao server with its own CA.
    pub fn web_pki(roots: RootCertStore) -> Self {
        Self(ServerKind::WebPki {
            roots: Arc::new(roots),
        })
    }

    /// The testkit's probes accept the servers the test decides. Crate-private: no
    /// configuration can reach it.
    #[cfg(feature = "testkit")]
    pub(crate) fn testkit(verifier: Arc<dyn ServerCertVerifier>) -> Self {
        Self(ServerKind::Testkit(verifier))
    }

    fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, DialError> {
        Ok(match &self.0 {
            ServerKind::Spiffe { identity, id } => Arc::new(SpiffeServerVerifier::new(
                identity.clone(),
                PeerVerifier::Exact(id.clone()),
            )),
            ServerKind::WebPki { roots } => {
                WebPkiServerVerifier::builder_with_provider(roots.clone(), crate::tls::provider())
                    .build()
                    .map_err(|e| DialError::Config(format!("web PKI roots: {e}")))?
            }
            #[cfg(feature = "testkit")]
            ServerKind::Testkit(verifier) => verifier.clone(),
        })
    }

    /// Whether the server name is authenticated (web PKI) or only fills SNI.
    fn name_use(&self) -> NameUse {
        match &self.0 {
            ServerKind::WebPki { .. } => NameUse::Verified,
            ServerKind::Spiffe { .. } => NameUse::SniOnly,
            #[cfg(feature = "testkit")]
            ServerKind::Testkit(_) => NameUse::SniOnly,
        }
    }
}

// === impl ClientAuth ===

/// Which certificate the client presents.
pub struct ClientAuth(ClientKind);

enum ClientKind {
    /// The workload's current SVID, read at each handshake.
    Svid(Arc<IdentityState>),
    /// A fixed chain (leaf first) and its key.
    Certificate {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
    /// One generation of the workload's SVID, whatever the current one is at handshake.
    Generation(Arc<CertifiedKey>),
    /// No client certificate.
    None,
}

/// Presents one certified key at every handshake.
#[derive(Debug)]
struct FixedKey(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedKey {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl Clone for ClientAuth {
    fn clone(&self) -> Self {
        Self(match &self.0 {
            ClientKind::Svid(identity) => ClientKind::Svid(identity.clone()),
            ClientKind::Certificate { chain, key } => ClientKind::Certificate {
                chain: chain.clone(),
                key: key.clone_key(),
            },
            ClientKind::Generation(key) => ClientKind::Generation(key.clone()),
            ClientKind::None => ClientKind::None,
        })
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ClientKind::Svid(identity) => f
                .debug_tuple("Svid")
                .field(&identity.spiffe_id().to_string())
                .finish(),
            ClientKind::Certificate { chain, .. } => f
                .debug_struct("Certificate")
                .field("chain", &chain.len())
                .finish_non_exhaustive(),
            ClientKind::Generation(key) => f
                .debug_struct("Generation")
                .field("chain", &key.cert.len())
                .finish_non_exhaustive(),
            ClientKind::None => f.write_str("None"),
        }
    }
}

impl ClientAuth {
    /// Presents the workload's SVID as it is at each handshake: a rotation reaches the next
    /// connection dialed.
    pub fn svid(identity: &Arc<IdentityState>) -> Self {
        Self(ClientKind::Svid(identity.clone()))
    }

    /// Presents exactly `key`, one generation of the workload's SVID, even after a rotation:
    /// for a pool whose connections must present the certificate that the requests sent on
    /// them were signed with (an identity chain token of version 2 names it).
    pub(crate) fn svid_generation(key: Arc<CertifiedKey>) -> Self {
        Self(ClientKind::Generation(key))
    }

    /// Presents `chain` (leaf first) with its private key `key`, for a backend that issued the
    /// client a certificate of its own. [`DialerBuilder::build`] refuses a key that does not
    /// match the leaf.
    pub fn certificate(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self(ClientKind::Certificate { chain, key })
    }

    /// Presents no certificate: the server authenticates the client otherwise (a token).
    pub fn none() -> Self {
        Self(ClientKind::None)
    }
}

// === impl DialerBuilder ===

/// Configures a [`Dialer`]; obtained from [`Dialer::builder`].
#[derive(Debug, Clone)]
pub struct DialerBuilder {
    server: ServerAuth,
    client: ClientAuth,
    http1_only: bool,
    max_connection_age: Duration,
    request_timeout: Duration,
    max_response_body: usize,
}

impl DialerBuilder {
    /// Offers only HTTP/1.1 in ALPN (default: HTTP/2 and HTTP/1.1, HTTP/2 used when the server
    /// picks it).
    pub fn http1_only(mut self) -> Self {
        self.http1_only = true;
        self
    }

    /// How long a pooled connection is reused before it is closed and redialed (default
    /// [`DEFAULT_MAX_CONNECTION_AGE`]). A connection is also retired once its peer's
    /// certificate expires.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = age;
        self
    }

    /// How long [`Dialer::request`] and [`Dialer::connect`] may take (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The largest response body [`Dialer::request`] reads (default
    /// [`DEFAULT_MAX_RESPONSE_BODY`]).
    pub fn max_response_body(mut self, limit: usize) -> Self {
        self.max_response_body = limit;
        self
    }

    /// Builds the TLS configuration and the pool. Fails for a client key that does not match
    /// its certificate, or a web PKI root store without a usable root.
    pub fn build(self) -> Result<Dialer, DialError> {
        let builder = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| DialError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.server.verifier()?);
        let mut config = match self.client.0 {
            ClientKind::Svid(identity) => {
                let resolver: Arc<dyn ResolvesClientCert> = identity.client_cert_resolver();
                builder.with_client_cert_resolver(resolver)
            }
            ClientKind::Certificate { chain, key } => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| DialError::Config(format!("client certificate: {e}")))?,
            ClientKind::Generation(key) => {
                builder.with_client_cert_resolver(Arc::new(FixedKey(key)))
            }
            ClientKind::None => builder.with_no_client_auth(),
        };
        // No resumption: every connection verifies the server's current certificate in a
        // full handshake, so an expired or rotated-out certificate cannot ride on a session.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = if self.http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let due = Arc::new(DueTimes::new());
        let connector = Connector::new(
            TlsConnector::from(Arc::new(config)),
            self.server.name_use(),
            self.max_connection_age,
            due.clone(),
        );
        let pool = Pool::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector.clone());
        Ok(Dialer {
            connector,
            pool,
            due,
            max_connection_age: self.max_connection_age,
            request_timeout: self.request_timeout,
            max_response_body: self.max_response_body,
        })
    }
}

// === impl Dialer ===

/// A pooled HTTPS client whose every connection is a verified TLS 1.3 connection. Cloning
/// shares the pool.
#[derive(Clone)]
pub struct Dialer {
    connector: Connector,
    pool: Pool<Connector, Full<Bytes>>,
    due: Arc<DueTimes>,
    max_connection_age: Duration,
    request_timeout: Duration,
    max_response_body: usize,
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialer")
            .field("max_connection_age", &self.max_connection_age)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_body", &self.max_response_body)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// Starts a dialer authenticating servers by `server` and presenting `client`.
    pub fn builder(server: ServerAuth, client: ClientAuth) -> DialerBuilder {
        DialerBuilder {
            server,
            client,
            http1_only: false,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
        }
    }

    /// Sends `request` (an absolute `https://` URI) over a pooled connection and reads the
    /// whole response, within the request timeout and the body limit.
    pub async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, DialError> {
        self.request_within(request, self.request_timeout).await
    }

    /// As [`request`](Self::request), within `timeout` instead of the configured timeout (a
    /// long poll adds the time the server may hold the request).
    pub async fn request_within(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, DialError> {
        let exchange = async {
            let (parts, body) = self.send(request, By::within(timeout)).await?.into_parts();
            let limit = self.max_response_body;
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|source| DialError::Body { limit, source })?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DialError::Timeout(timeout))?
    }

    /// Opens one connection to `uri`'s authority outside the pool, within the request
    /// timeout, for a caller that speaks HTTP on it itself.
    pub async fn connect(&self, uri: &Uri) -> Result<TlsConnection, DialError> {
        tokio::time::timeout(self.request_timeout, self.connector.dial(uri.clone()))
            .await
            .map_err(|_| DialError::Timeout(self.request_timeout))?
            .map_err(|e| connector::classify(Box::new(e)))
    }

    /// Sends `request` over a pooled connection and returns the response as it starts,
    /// retiring the connection once it is due. Unbounded in time: the caller bounds it, by
    /// `by` at the latest.
    ///
    /// Retiring takes a handle on the connection the pool picks (a watch channel per
    /// request), so the handle is taken only when a live connection of the pool could be due
    /// by `by`: every response that comes over a due connection still retires it.
    pub(crate) fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        by: By,
    ) -> impl Future<Output = Result<Response<Incoming>, DialError>> + Send + '_ {
        // Handed to the pool here, so that the future below holds the pool's (boxed) future
        // and not the request it was made from.
        let connection = self
            .due
            .may_be_due(by)
            .then(|| capture_connection(&mut request));
        let response = self.pool.request(request);
        async move {
            let response = response
                .await
                .map_err(|e| connector::classify(Box::new(e)))?;
            if let (Some(info), Some(connection)) =
                (response.extensions().get::<ConnectionInfo>(), &connection)
            {
                if self.due(info) {
                    if let Some(connected) = connection.connection_metadata().as_ref() {
                        // The pool dials afresh for the next request.
                        connected.poison();
                    }
                    self.due.refresh(Some(info.id));
                } else {
                    // Another connection (or one since dropped) made this request take a
                    // handle.
                    self.due.refresh(None);
                }
            }
            Ok(response)
        }
    }

    /// Whether a connection is older than the maximum age or its peer's certificate expired.
    fn due(&self, info: &ConnectionInfo) -> bool {
        info.established.elapsed() >= self.max_connection_age
            || SystemTime::now() >= info.peer_not_after
    }
}
