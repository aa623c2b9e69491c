//! Bindings: the transports that accept connections and feed requests to the pipeline.
//!
//! A binding never sees plaintext or an unverified peer: it receives an [`MtlsAcceptor`] that
//! performs the framework's handshake and yields the [`VerifiedPeer`], and an
//! [`EnforcedService`] that only answers requests carrying one. [`HttpBinding`] is the built-in
//! HTTP/1.1 and HTTP/2 binding.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::BoxError;
use crate::health::{Monitor, ProviderKind, State};
use crate::service::CallerSlot;
use crate::tls::{MtlsAcceptor, PeerExpiry, VerifiedPeer};

mod events;
mod headers;

use events::{Watched, Woke};
use headers::{ConnectionService, HeaderDeadline};

/// What the framework hands a binding when the service starts.
#[derive(Debug)]
#[non_exhaustive]
pub struct BindingArgs {
    /// Performs the mTLS handshake and yields the verified peer.
    pub acceptor: MtlsAcceptor,
    /// The generated, enforced service.
    pub service: EnforcedService,
    /// Tells the framework the binding is listening.
    pub listening: ListeningSignal,
}

/// The service's enforced router: every route runs the pipeline before the handler.
#[derive(Clone)]
pub struct EnforcedService {
    router: Router,
}

impl fmt::Debug for EnforcedService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnforcedService")
    }
}

impl EnforcedService {
    pub(crate) fn new(router: Router) -> Self {
        Self { router }
    }

    /// The service for one connection from `peer`: every request carries the peer.
    pub fn for_peer(&self, peer: VerifiedPeer) -> PeerService {
        PeerService {
            router: self.router.clone(),
            peer: CallerSlot::Verified(peer),
        }
    }

    /// The service for one connection of an external caller at `remote`, accepted by a
    /// gateway listener: every request carries the caller's address and nothing else, so
    /// only a gateway route (which authenticates the caller by its access token) admits it.
    pub(crate) fn for_external(&self, remote: SocketAddr) -> PeerService {
        PeerService {
            router: self.router.clone(),
            peer: CallerSlot::External(ExternalPeer { addr: remote }),
        }
    }
}

/// The caller of a gateway listener's connection: its address only. No certificate vouches
/// for it; the gateway route authenticates it by its access token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExternalPeer {
    /// The remote socket address.
    pub(crate) addr: SocketAddr,
}

/// The enforced service bound to one connection's verified peer.
#[derive(Clone)]
pub struct PeerService {
    router: Router,
    /// What every request of the connection carries: its caller.
    peer: CallerSlot,
}

impl fmt::Debug for PeerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerService")
            .field("peer", &self.peer)
            .finish()
    }
}

impl hyper::service::Service<http::Request<Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        use tower::Service as _;

        request.extensions_mut().insert(self.peer.clone());
        let mut router = self.router.clone();
        // A router is always ready (its `poll_ready` answers at once without doing anything),
        // so the request is routed here rather than through `oneshot`, whose future would
        // hold the request until first polled and move it, and the route's future after it,
        // from state to state.
        let ready = tower::Service::<http::Request<axum::body::Body>>::poll_ready(
            &mut router,
            &mut std::task::Context::from_waker(std::task::Waker::noop()),
        );
        debug_assert!(ready.is_ready());
        router.call(request.map(axum::body::Body::new))
    }
}

/// Reports that a binding is accepting connections.
#[derive(Debug)]
pub struct ListeningSignal {
    monitor: Arc<Monitor>,
    addr: watch::Sender<Option<SocketAddr>>,
}

impl ListeningSignal {
    pub(crate) fn new(monitor: Arc<Monitor>, addr: watch::Sender<Option<SocketAddr>>) -> Self {
        Self { monitor, addr }
    }

    /// The binding listens on `addr`: the binding becomes Ready.
    pub fn ready(&self, addr: SocketAddr) {
        self.addr.send_replace(Some(addr));
        self.monitor.set(ProviderKind::Binding, State::Ready, None);
    }
}

/// A transport for inbound requests.
#[async_trait]
pub trait Binding: Send + Sync + 'static {
    /// Accepts connections until [`shutdown`](Self::shutdown), then drains them and returns.
    async fn serve(&self, args: BindingArgs) -> Result<(), BoxError>;

    /// Stops accepting, lets in-flight requests finish within `deadline`, and waits for
    /// [`serve`](Self::serve) to return.
    async fn shutdown(&self, deadline: Duration);

    /// Releases what is left (remaining connections are dropped).
    async fn close(&self) {}
}

/// The HTTP binding: HTTP/1.1 and HTTP/2 over the framework's mTLS, on one TCP address.
///
/// Bounded by default, so that a flood of connections cannot exhaust the process:
///
/// | limit | default | |
/// |---|---|---|
/// | [`max_connections`](Self::max_connections) | 10 000 | established connections; beyond it, new ones wait in the kernel's backlog |
/// | [`max_handshakes`](Self::max_handshakes) | 256 | TLS handshakes in progress at once |
/// | [`handshake_timeout`](Self::handshake_timeout) | 10 s | to complete the TLS handshake |
/// | [`header_read_timeout`](Self::header_read_timeout) | 30 s | HTTP/1.1: to send a request's headers, and so also how long a keep-alive connection may sit idle |
/// | [`max_connection_age`](Self::max_connection_age) | none | then the connection is closed gracefully |
///
/// HTTP/2 connections are pinged every 30 s and closed when a ping goes unanswered for 20 s.
/// Whatever the settings, a connection is closed gracefully (in-flight requests finish) when a
/// certificate of its peer expires or when the trust store stops verifying its peer (see
/// [`MtlsAcceptor::peer_expiry`]): an established connection never outlives the trust that
/// admitted it.
pub struct HttpBinding {
    addr: String,
    limits: Limits,
    stop: CancellationToken,
    deadline: Arc<Mutex<Duration>>,
    done: watch::Sender<bool>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    max_handshakes: usize,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    max_connection_age: Option<Duration>,
}

impl fmt::Debug for HttpBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBinding")
            .field("addr", &self.addr)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpBinding {
    /// A binding listening on `addr` (`host:port`; port 0 picks a free port).
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            limits: Limits {
                max_connections: 10_000,
                max_handshakes: 256,
                handshake_timeout: Duration::from_secs(10),
                header_read_timeout: Duration::from_secs(30),
                max_connection_age: None,
            },
            stop: CancellationToken::new(),
            deadline: Arc::new(Mutex::new(crate::config::DEFAULT_DRAIN_TIMEOUT)),
            done: watch::channel(false).0,
        }
    }

    /// How many connections may be established at once (default 10 000, at least 1). At the
    /// limit the binding stops accepting until one closes.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How many TLS handshakes may be in progress at once (default 256, at least 1).
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.limits.max_handshakes = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long a client may take to complete the TLS handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handshake_timeout = timeout;
        self
    }

    /// HTTP/1.1: how long a client may take to send a request's headers, counted from the end
    /// of the previous response on a keep-alive connection (default 30 s). Any timeout
    /// longer than about 136 years counts as that, so `Duration::MAX` means none.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// Closes each connection gracefully once it is this old (default: only when its peer's
    /// certificate expires or stops being trusted).
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.limits.max_connection_age = Some(age);
        self
    }
}

#[async_trait]
impl Binding for HttpBinding {
    async fn serve(&self, args: BindingArgs) -> Result<(), BoxError> {
        let listener = TcpListener::bind(&self.addr).await?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, "listening (mTLS 1.3)");
        args.listening.ready(local);
        self.accept(listener, Acceptor::Mtls(args.acceptor), args.service)
            .await
    }

    async fn shutdown(&self, deadline: Duration) {
        self.stop_and_drain(deadline).await;
    }
}

impl HttpBinding {
    /// Serves a gateway service: TLS 1.3 with server authentication only, each connection's
    /// requests carrying the caller's address instead of a verified peer. `listening` gets
    /// the bound address.
    pub(crate) async fn serve_gateway(
        &self,
        acceptor: tokio_rustls::TlsAcceptor,
        service: EnforcedService,
        listening: &watch::Sender<Option<SocketAddr>>,
    ) -> Result<(), BoxError> {
        let listener = TcpListener::bind(&self.addr).await?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, "gateway listening (TLS 1.3, no client certificate)");
        listening.send_replace(Some(local));
        self.accept(listener, Acceptor::External(acceptor), service)
            .await
    }

    /// Accepts connections on `listener` with this binding's limits until it is stopped.
    /// The accept loop runs on its own task, so that shutdown completes even when the future
    /// awaiting `serve` is not being polled (for example, `close` awaited on the same task);
    /// this just waits for the loop to finish.
    async fn accept(
        &self,
        listener: TcpListener,
        acceptor: Acceptor,
        service: EnforcedService,
    ) -> Result<(), BoxError> {
        let accept = AcceptLoop {
            listener,
            acceptor,
            service,
            limits: self.limits,
            connections: Arc::new(Semaphore::new(self.limits.max_connections)),
            handshakes: Arc::new(Semaphore::new(self.limits.max_handshakes)),
            stop: self.stop.clone(),
            deadline: self.deadline.clone(),
            done: self.done.clone(),
        };
        tokio::spawn(accept.run()).await?;
        Ok(())
    }

    /// Stops accepting and waits (bounded by `deadline`) for the accept loop to drain.
    pub(crate) async fn stop_and_drain(&self, deadline: Duration) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        self.stop.cancel();
        let mut done = self.done.subscribe();
        // Bounded: serve's own drain is bounded by the same deadline.
        let _ =
            tokio::time::timeout(deadline + Duration::from_secs(1), done.wait_for(|d| *d)).await;
    }
}

/// How a listener's connections are accepted.
#[derive(Clone)]
enum Acceptor {
    /// mTLS: the peer's SVID verified, the peer on every request.
    Mtls(MtlsAcceptor),
    /// A gateway's TLS 1.3 with server authentication only: the caller's address on every
    /// request, its credential checked per request by the gateway route.
    External(tokio_rustls::TlsAcceptor),
}

struct AcceptLoop {
    listener: TcpListener,
    acceptor: Acceptor,
    service: EnforcedService,
    limits: Limits,
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    stop: CancellationToken,
    deadline: Arc<Mutex<Duration>>,
    done: watch::Sender<bool>,
}

impl AcceptLoop {
    async fn run(self) {
        let tasks = TaskTracker::new();
        // Cancelled when the drain deadline passes: connections still open are dropped.
        let abort = CancellationToken::new();
        loop {
            // Room for one more connection and one more handshake before accepting: at the
            // limits, connections wait in the kernel's backlog, not in memory.
            let permits = async {
                let connection = self.connections.clone().acquire_owned().await;
                let handshake = self.handshakes.clone().acquire_owned().await;
                connection.ok().zip(handshake.ok())
            };
            let (connection, handshake) = tokio::select! {
                () = self.stop.cancelled() => break,
                permits = permits => match permits {
                    Some(permits) => permits,
                    None => break,
                },
            };
            let (stream, remote) = tokio::select! {
                () = self.stop.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let serve = Connection {
                acceptor: self.acceptor.clone(),
                service: self.service.clone(),
                limits: self.limits,
                stop: self.stop.clone(),
                abort: abort.clone(),
                remote,
            };
            tasks.spawn(async move {
                serve.run(stream, handshake).await;
                drop(connection);
            });
        }
        drop(self.listener);
        tasks.close();
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        if tokio::time::timeout(deadline, tasks.wait()).await.is_err() {
            tracing::warn!(
                ?deadline,
                "drain deadline passed with requests still in flight; dropping their connections"
            );
            abort.cancel();
            tasks.wait().await;
        }
        self.done.send_replace(true);
    }
}

/// One accepted connection: handshake, then HTTP until the client leaves, the binding stops,
/// the connection reaches its maximum age, or its peer stops being trusted.
struct Connection {
    acceptor: Acceptor,
    service: EnforcedService,
    limits: Limits,
    stop: CancellationToken,
    abort: CancellationToken,
    remote: SocketAddr,
}

impl Connection {
    /// The TLS handshake: the verified peer for mTLS, none for a gateway's external caller.
    async fn handshake(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(
        tokio_rustls::server::TlsStream<TcpStream>,
        Option<VerifiedPeer>,
    )> {
        match &self.acceptor {
            Acceptor::Mtls(acceptor) => {
                let (tls, peer) = acceptor.accept(stream).await?;
                Ok((tls, Some(peer)))
            }
            Acceptor::External(acceptor) => Ok((acceptor.accept(stream).await?, None)),
        }
    }

    async fn run(self, stream: TcpStream, handshake: OwnedSemaphorePermit) {
        let remote = self.remote;
        let accepted = tokio::select! {
            // Shutdown abandons handshakes in progress.
            () = self.stop.cancelled() => return,
            accepted = tokio::time::timeout(self.limits.handshake_timeout, self.handshake(stream)) => accepted,
        };
        drop(handshake);
        let (tls, peer) = match accepted {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(error)) => {
                tracing::debug!(%remote, %error, "handshake refused");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "handshake timed out");
                return;
            }
        };
        // HTTP/1.1's header read timeout, enforced by this loop's watchdog below rather than
        // by hyper. A connection that negotiated HTTP/2 has none (hyper's pings watch it).
        let headers = (tls.get_ref().1.alpn_protocol() != Some(b"h2"))
            .then(|| HeaderDeadline::new(self.limits.header_read_timeout));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let service = match &peer {
            Some(peer) => self.service.for_peer(peer.clone()),
            None => self.service.for_external(remote),
        };
        let service = ConnectionService::new(service, headers.clone());
        let connection = builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(connection);
        // The rare events, polled only when one of them is woken (see `events`).
        let mut watched = Watched::new(connection);
        watched.push(async {
            self.stop.cancelled().await;
            Event::Stop
        });
        // Past the drain deadline: dropping the connection closes its socket. The binding
        // aborts only after it stopped, which closes every connection first.
        watched.push(async {
            self.abort.cancelled().await;
            Event::Abort
        });
        // An external caller presented no certificate: nothing of it expires.
        if let (Acceptor::Mtls(acceptor), Some(peer)) = (&self.acceptor, &peer) {
            watched.push(async { Event::Expiry(acceptor.peer_expiry(peer).await) });
        }
        if let Some(headers) = &headers {
            watched.push(async {
                headers.overdue().await;
                Event::HeadersOverdue
            });
        }
        if let Some(age) = self.limits.max_connection_age {
            watched.push(async move {
                tokio::time::sleep(age).await;
                Event::Age
            });
        }
        let mut closing = false;
        let ended = loop {
            // The connection first: it is what wakes the loop.
            let event = match watched.next().await {
                Woke::Ended(ended) => break ended,
                Woke::Event(event) => event,
            };
            match event {
                Event::Abort => return,
                // As hyper's own timeout does: the connection is dropped, not drained.
                Event::HeadersOverdue => {
                    tracing::debug!(%remote, "request headers not received within the header read timeout; closing the connection");
                    return;
                }
                _ if closing => {}
                Event::Stop => {
                    watched.connection().graceful_shutdown();
                    closing = true;
                }
                Event::Expiry(why) => {
                    tracing::info!(%remote, peer = ?peer.as_ref().map(VerifiedPeer::spiffe_id), %why, "closing the connection");
                    watched.connection().graceful_shutdown();
                    closing = true;
                }
                Event::Age => {
                    tracing::debug!(%remote, "connection reached its maximum age; closing it");
                    watched.connection().graceful_shutdown();
                    closing = true;
                }
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%remote, %error, "connection ended with an error");
        }
    }
}

/// What ends or closes a connection, apart from the connection itself.
enum Event {
    /// The binding stops: close gracefully.
    Stop,
    /// The drain deadline passed: drop the connection.
    Abort,
    /// The peer's certificate expired or is no longer trusted: close gracefully.
    Expiry(PeerExpiry),
    /// The connection reached its maximum age: close gracefully.
    Age,
    /// HTTP/1.1: a request head was not received within the header read timeout.
    HeadersOverdue,
}
