//! The live identity: the current SVID as a rustls key and the current trust store, swapped
//! atomically on rotation.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use spiffe::SpiffeId;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::svid::{TrustStore, Usage, peer_spiffe_id, verify_with_store};
use super::verifier::{PeerVerifier, SpiffeClientVerifier, SpiffeServerVerifier};
use super::{SvidError, TlsError};
use crate::chain::{Link, SigningKey};
use crate::identity::{X509Context, X509Svid};

/// The identity in force at one moment.
pub(crate) struct Current {
    /// Which load of the identity this is: 0 at start, a new number on every rotation. Kept in
    /// the snapshot, so whatever reads it reads the trust store and key it belongs to.
    pub(crate) generation: u64,
    pub(crate) id: SpiffeId,
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) trust: TrustStore,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    /// The SVID key as the identity chain signs with it.
    pub(crate) signing: SigningKey,
}

/// The workload's live identity. Every TLS configuration the framework builds reads it at
/// handshake time, so replacing it (rotation) takes effect for the next handshake without
/// touching established connections.
pub struct IdentityState {
    current: ArcSwap<Current>,
    /// Bumped on every rotation, so established connections can check their peer against
    /// the new trust store.
    rotations: tokio::sync::watch::Sender<u64>,
    /// The last generation handed out.
    generations: AtomicU64,
}

impl fmt::Debug for IdentityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("IdentityState")
            .field("spiffe_id", &current.id.to_string())
            .field("not_after", &current.not_after)
            .finish()
    }
}

impl IdentityState {
    /// Builds the state from an identity context, choosing the SVID for `want` (or the first).
    pub fn new(context: &X509Context, want: Option<&SpiffeId>) -> Result<Self, crate::InitError> {
        let current = build(context, want, 0)?;
        Ok(Self {
            current: ArcSwap::from_pointee(current),
            rotations: tokio::sync::watch::Sender::new(0),
            generations: AtomicU64::new(0),
        })
    }

    /// Replaces the identity with one from `context`, keeping the same SPIFFE ID.
    pub fn rotate(&self, context: &X509Context) -> Result<(), crate::InitError> {
        let id = self.spiffe_id();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let next = build(context, Some(&id), generation)?;
        self.current.store(Arc::new(next));
        self.rotations.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Current>> {
        self.current.load()
    }

    /// The generation of the identity in force: it changes on every rotation, so anything
    /// derived from the identity (verified chains, signed tokens) can be keyed on it.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// The SPIFFE ID currently presented.
    pub fn spiffe_id(&self) -> SpiffeId {
        self.current.load().id.clone()
    }

    /// When the current SVID expires.
    pub fn not_after(&self) -> SystemTime {
        self.current.load().not_after
    }

    /// When the current SVID became valid.
    pub fn not_before(&self) -> SystemTime {
        self.current.load().not_before
    }

    /// The inbound configuration: TLS 1.3 only, client certificate required and verified as
    /// an X.509-SVID of a trusted domain, the current SVID presented.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(self.clone())))
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        // No resumption: every connection verifies the peer's current SVID in a full handshake,
        // so an expired or rotated-out certificate cannot ride on an old session.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Presents the current SVID (rotation included) as a server certificate, for a listener
    /// that does not ask for a client certificate (a gateway).
    pub(crate) fn server_cert_resolver(self: &Arc<Self>) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver(self.clone()))
    }

    /// Presents the current SVID (rotation included) as a client certificate, for backends
    /// that authenticate workloads by certificate but are not SPIFFE peers themselves (an
    /// OpenBao server with an ordinary CA, for instance).
    pub fn client_cert_resolver(self: &Arc<Self>) -> Arc<dyn ResolvesClientCert> {
        Arc::new(Resolver(self.clone()))
    }

    /// The outbound configuration: TLS 1.3 only, the current SVID presented, the server
    /// verified as an X.509-SVID that `expected` accepts.
    pub fn client_config(
        self: &Arc<Self>,
        expected: PeerVerifier,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
                self.clone(),
                expected,
            )))
            .with_client_cert_resolver(Arc::new(Resolver(self.clone())));
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn build(
    context: &X509Context,
    want: Option<&SpiffeId>,
    generation: u64,
) -> Result<Current, crate::InitError> {
    use crate::InitError;
    let svid = match want {
        Some(id) => context
            .svids
            .iter()
            .find(|s| &s.spiffe_id == id)
            .ok_or_else(|| InitError::SvidNotFound(id.to_string()))?,
        None => context.svids.first().ok_or(InitError::NoSvids)?,
    };
    let trust = TrustStore::from_bundles(&context.bundles).map_err(InitError::Tls)?;
    if !trust.contains(svid.spiffe_id.trust_domain()) {
        return Err(InitError::Tls(TlsError::NoOwnBundle(
            svid.spiffe_id.trust_domain().to_string(),
        )));
    }
    let (not_before, not_after) = check_own_svid(svid, &trust).map_err(InitError::Tls)?;
    let key = super::provider()
        .key_provider
        .load_private_key(svid.private_key.clone_key())
        .map_err(|e| InitError::Tls(TlsError::PrivateKey(e.to_string())))?;
    let certified = CertifiedKey::new(svid.cert_chain.clone(), key);
    certified
        .keys_match()
        .map_err(|e| InitError::Tls(TlsError::PrivateKey(e.to_string())))?;
    let signing =
        SigningKey::from_svid(svid).map_err(|e| InitError::Tls(TlsError::PrivateKey(e)))?;
    Ok(Current {
        generation,
        id: svid.spiffe_id.clone(),
        key: Arc::new(certified),
        trust,
        not_before,
        not_after,
        signing,
    })
}

/// Our own SVID must be one a peer would accept: right ID, valid leaf, chaining to our bundle.
fn check_own_svid(
    svid: &X509Svid,
    trust: &TrustStore,
) -> Result<(SystemTime, SystemTime), TlsError> {
    let leaf = svid
        .cert_chain
        .first()
        .ok_or(TlsError::Svid(SvidError::NoCertificate))?;
    let id = peer_spiffe_id(leaf).map_err(TlsError::Svid)?;
    if id != svid.spiffe_id {
        return Err(TlsError::Svid(SvidError::UnexpectedId {
            expected: svid.spiffe_id.to_string(),
            actual: id.to_string(),
        }));
    }
    verify_with_store(
        leaf,
        &svid.cert_chain[1..],
        trust,
        UnixTime::now(),
        Usage::Server,
    )
    .map_err(TlsError::Svid)?;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| TlsError::Svid(SvidError::Malformed(e.to_string())))?;
    Ok((
        system_time(cert.validity().not_before.timestamp()),
        system_time(cert.validity().not_after.timestamp()),
    ))
}

/// A certificate time (seconds since the epoch) as a `SystemTime`; before 1970 is 1970.
fn system_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs())
}

/// Presents the current SVID on both sides of a handshake.
struct Resolver(Arc<IdentityState>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Resolver").field(&self.0).finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The verified identity of the peer of one connection.
///
/// Made once per connection, from the certificate the handshake verified; every request on
/// the connection shares it (cloning copies a pointer), so no request parses or formats the
/// peer's identity again.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    inner: Arc<PeerIdentity>,
}

#[derive(PartialEq, Eq)]
struct PeerIdentity {
    spiffe_id: SpiffeId,
    link: Link,
    /// The certificates the peer presented, leaf first: checked again when the trust store
    /// changes.
    chain: Vec<CertificateDer<'static>>,
    /// When the first certificate of the chain expires.
    not_after: SystemTime,
}

impl fmt::Debug for VerifiedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedPeer")
            .field(&self.inner.link.workload)
            .finish()
    }
}

impl VerifiedPeer {
    fn new(
        spiffe_id: SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        not_after: SystemTime,
    ) -> Self {
        let mut link = Link::workload(spiffe_id.to_string());
        // The handshake verified it.
        link.verified = true;
        Self {
            inner: Arc::new(PeerIdentity {
                spiffe_id,
                link,
                chain,
                not_after,
            }),
        }
    }

    /// The peer's SPIFFE ID, verified in the handshake.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.inner.spiffe_id
    }

    /// The peer as a chain link (its SPIFFE ID as the workload).
    pub fn link(&self) -> &Link {
        &self.inner.link
    }

    /// When the peer's certificate chain stops being valid: the earliest `notAfter` in it.
    pub fn not_after(&self) -> SystemTime {
        self.inner.not_after
    }

    /// The certificates the peer presented in the handshake, leaf first.
    pub(crate) fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }

    /// Whether `other` presented the same certificates (and so has the same SPIFFE ID).
    pub(crate) fn same_certificates(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.chain == other.inner.chain
    }

    /// The peer a connection from the workload of `identity` would have: its current SVID,
    /// as the handshake would verify it. For tests and benchmarks that verify chain headers
    /// without a connection.
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn of_identity(identity: &IdentityState) -> Self {
        let current = identity.current();
        Self::new(
            current.id.clone(),
            current.key.cert.clone(),
            current.not_after,
        )
    }
}

/// Why a connection's peer is no longer trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerExpiry {
    /// A certificate in the peer's chain expired.
    Expired,
    /// The trust store changed (rotation, a bundle update) and no longer verifies the peer.
    Untrusted,
}

impl fmt::Display for PeerExpiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "the peer's certificate expired",
            Self::Untrusted => "the trust store no longer verifies the peer",
        })
    }
}

/// Accepts inbound connections with the framework's mTLS configuration and yields each one
/// with its verified peer. It is the only way a binding can obtain a [`VerifiedPeer`].
#[derive(Clone)]
pub struct MtlsAcceptor {
    acceptor: TlsAcceptor,
    identity: Arc<IdentityState>,
}

impl fmt::Debug for MtlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MtlsAcceptor")
    }
}

impl MtlsAcceptor {
    pub(crate) fn new(config: Arc<ServerConfig>, identity: Arc<IdentityState>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            identity,
        }
    }

    /// Runs the server handshake on `stream`. Fails for anything but a TLS 1.3 client
    /// presenting a valid SVID of a trusted domain.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, VerifiedPeer)> {
        let denied =
            |e: &dyn fmt::Display| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string());
        let tls = self.acceptor.accept(stream).await?;
        let (_, conn) = tls.get_ref();
        let chain = conn
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| denied(&"no client certificate"))?;
        // The verifier already checked these certificates; reading them again cannot fail for
        // a chain it accepted, and an error here still refuses the connection.
        let spiffe_id = peer_spiffe_id(&chain[0]).map_err(|e| denied(&e))?;
        let not_after = earliest_not_after(chain).ok_or_else(|| denied(&"unreadable validity"))?;
        // X.509 validity includes the whole second of `notAfter`, so the verifier still accepts
        // a chain within it; the connection would be closed at `not_after` anyway, and closing
        // is graceful: refuse it now rather than serve the requests already sent.
        if not_after <= SystemTime::now() {
            return Err(denied(&"the peer's certificate has expired"));
        }
        let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
        Ok((tls, VerifiedPeer::new(spiffe_id, chain, not_after)))
    }

    /// Resolves when the connection of `peer` must stop taking requests: when a certificate in
    /// its chain expires, or when a rotation of this workload's identity (which carries the
    /// trust bundles) leaves a trust store that no longer verifies it, for example because its
    /// trust domain's bundle was removed or its CA rotated out. A binding closes the connection
    /// gracefully then; the handshake of a new one verifies the peer afresh.
    pub async fn peer_expiry(&self, peer: &VerifiedPeer) -> PeerExpiry {
        let mut rotations = self.identity.rotations.subscribe();
        let remaining = peer
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let expiry = tokio::time::sleep(remaining);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = &mut expiry => return PeerExpiry::Expired,
                changed = rotations.changed() => {
                    if changed.is_err() {
                        // The identity is gone with the server: expiry still applies.
                        (&mut expiry).await;
                        return PeerExpiry::Expired;
                    }
                    if !self.still_trusted(peer) {
                        return PeerExpiry::Untrusted;
                    }
                }
            }
        }
    }

    /// Whether the current trust store verifies `peer`'s chain now.
    fn still_trusted(&self, peer: &VerifiedPeer) -> bool {
        let current = self.identity.current();
        let Some((leaf, intermediates)) = peer.inner.chain.split_first() else {
            return false;
        };
        verify_with_store(
            leaf,
            intermediates,
            &current.trust,
            UnixTime::now(),
            Usage::Client,
        )
        .is_ok_and(|id| id == peer.inner.spiffe_id)
    }
}

/// The earliest `notAfter` in `chain`; `None` if a certificate does not parse.
pub(crate) fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<SystemTime> {
    let mut earliest: Option<SystemTime> = None;
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let not_after = system_time(cert.validity().not_after.timestamp());
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    earliest
}
