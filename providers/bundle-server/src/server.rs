//! The mTLS listener: TLS 1.3 with a verified client SVID, then HTTP/1.1 or HTTP/2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ligand_runtime::tls::{IdentityState, peer_spiffe_id};
use spiffe::SpiffeId;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServerError;
use crate::protocol::{self, DEFAULT_MAX_WAIT, Shared};
use crate::scope::Scoping;
use crate::store::BundleStore;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections may finish in-flight responses at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound bundle server, not yet serving. See [`BundleServer::bind`].
pub struct BundleServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    drain_timeout: Duration,
}

impl std::fmt::Debug for BundleServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleServer")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("max_wait", &self.shared.max_wait)
            .finish_non_exhaustive()
    }
}

impl BundleServer {
    /// Binds `addr` and prepares mTLS from `identity`: the server presents its current SVID
    /// (rotation included) and requires every client to present an X.509-SVID of a trust
    /// domain in `identity`'s bundles. Each caller gets the bundle `scoping` assigns it.
    pub async fn bind(
        addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
        identity: &Arc<IdentityState>,
        store: Arc<BundleStore>,
        scoping: Scoping,
    ) -> Result<Self, ServerError> {
        let config = identity.server_config().map_err(ServerError::Tls)?;
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(config),
            shared: Arc::new(Shared {
                store,
                scoping,
                max_wait: DEFAULT_MAX_WAIT,
                stop: CancellationToken::new(),
            }),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        })
    }

    /// Caps the long-poll wait a client may ask for (default [`DEFAULT_MAX_WAIT`]).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.max_wait = max_wait;
        }
        self
    }

    /// How long connections may finish at shutdown (default [`DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves in a background task until [`ServerHandle::shutdown`].
    pub fn spawn(self) -> ServerHandle {
        let stop = self.shared.stop.clone();
        let addr = self.listener.local_addr().ok();
        let task = tokio::spawn(self.run());
        ServerHandle { addr, stop, task }
    }

    /// Serves until the server's stop token is cancelled (through a [`ServerHandle`]).
    async fn run(self) {
        let connections = TaskTracker::new();
        let stop = self.shared.stop.clone();
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, remote)) => {
                    let connection = Connection {
                        acceptor: self.acceptor.clone(),
                        shared: self.shared.clone(),
                        drain_timeout: self.drain_timeout,
                        remote,
                    };
                    connections.spawn(connection.serve(stream));
                }
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // Release the port before draining, so that a successor can bind it.
        drop(self.listener);
        connections.close();
        if tokio::time::timeout(self.drain_timeout, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(budget = ?self.drain_timeout, "connections cut short at shutdown");
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Stops accepting, answers pending long polls with 304, lets in-flight responses finish
    /// (bounded by the drain timeout) and closes the listener.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "bundle server task failed");
        }
    }
}

struct Connection {
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    drain_timeout: Duration,
    remote: SocketAddr,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream));
        let tls = tokio::select! {
            () = self.shared.stop.cancelled() => return,
            tls = handshake => match tls {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(remote = %self.remote, %error, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(remote = %self.remote, "TLS handshake timed out");
                    return;
                }
            },
        };
        // The client verifier has already checked the chain; this reads the verified ID, and
        // any failure still refuses the connection.
        let caller = match tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(peer_spiffe_id)
        {
            Some(Ok(id)) => id,
            _ => {
                tracing::debug!(remote = %self.remote, "connection without a usable client SVID");
                return;
            }
        };
        let caller: Arc<SpiffeId> = Arc::new(caller);
        let shared = self.shared.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let shared = shared.clone();
            let caller = caller.clone();
            async move {
                let (parts, _body) = request.into_parts();
                let response = protocol::handle(
                    &shared,
                    &caller,
                    &parts.method,
                    parts.uri.path(),
                    &parts.headers,
                )
                .await;
                Ok::<_, Infallible>(response)
            }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(remote = %self.remote, %error, "connection ended with an error");
                }
            }
            () = self.shared.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.drain_timeout, connection).await;
            }
        }
    }
}
