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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::BoxError;
use crate::health::{Monitor, ProviderKind, State};
use crate::tls::{MtlsAcceptor, VerifiedPeer};

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
            peer,
        }
    }
}

/// The enforced service bound to one connection's verified peer.
#[derive(Clone)]
pub struct PeerService {
    router: Router,
    peer: VerifiedPeer,
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
    type Future = tower::util::Oneshot<Router, http::Request<axum::body::Body>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        self.router
            .clone()
            .oneshot(request.map(axum::body::Body::new))
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
pub struct HttpBinding {
    addr: String,
    handshake_timeout: Duration,
    stop: CancellationToken,
    deadline: Arc<Mutex<Duration>>,
    done: watch::Sender<bool>,
}

impl fmt::Debug for HttpBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBinding")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpBinding {
    /// A binding listening on `addr` (`host:port`; port 0 picks a free port).
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            handshake_timeout: Duration::from_secs(10),
            stop: CancellationToken::new(),
            deadline: Arc::new(Mutex::new(crate::config::DEFAULT_DRAIN_TIMEOUT)),
            done: watch::channel(false).0,
        }
    }

    /// How long a client may take to complete the TLS handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
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
        // The accept loop runs on its own task, so that shutdown completes even when the
        // future awaiting `serve` is not being polled (for example, `close` awaited on the
        // same task); `serve` itself just waits for the loop to finish.
        let accept = AcceptLoop {
            listener,
            acceptor: args.acceptor,
            service: args.service,
            handshake_timeout: self.handshake_timeout,
            stop: self.stop.clone(),
            deadline: self.deadline.clone(),
            done: self.done.clone(),
        };
        tokio::spawn(accept.run()).await?;
        Ok(())
    }

    async fn shutdown(&self, deadline: Duration) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        self.stop.cancel();
        let mut done = self.done.subscribe();
        // Bounded: serve's own drain is bounded by the same deadline.
        let _ =
            tokio::time::timeout(deadline + Duration::from_secs(1), done.wait_for(|d| *d)).await;
    }
}

struct AcceptLoop {
    listener: TcpListener,
    acceptor: MtlsAcceptor,
    service: EnforcedService,
    handshake_timeout: Duration,
    stop: CancellationToken,
    deadline: Arc<Mutex<Duration>>,
    done: watch::Sender<bool>,
}

impl AcceptLoop {
    async fn run(self) {
        let graceful = GracefulShutdown::new();
        loop {
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
            let acceptor = self.acceptor.clone();
            let service = self.service.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = self.handshake_timeout;
            tokio::spawn(async move {
                let (tls, peer) =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
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
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection =
                    builder.serve_connection(TokioIo::new(tls), service.for_peer(peer));
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "drain deadline passed with requests still in flight"
            );
        }
        self.done.send_replace(true);
    }
}
