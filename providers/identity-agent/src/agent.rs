//! The running agent: the Workload API on its unix socket (served by tonic from the agent's
//! own accept loop, so each connection carries its kernel-attested caller), the OIDC
//! discovery endpoint, and the signing-key rotation loop.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::attest::{PeerInfo, attest};
use crate::ca::LocalCa;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::jwt::JwtAuthority;
use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use crate::workload_api::{WorkloadApi, require_security_header};

/// Starts agents; see [`Agent::start`].
#[derive(Debug)]
pub struct Agent {
    _private: (),
}

/// An agent serving the Workload API and the OIDC discovery endpoint. Dropping it stops it;
/// [`RunningAgent::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct RunningAgent {
    socket_path: PathBuf,
    oidc_addr: SocketAddr,
    ca: Arc<LocalCa>,
    jwt: Arc<JwtAuthority>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

// === impl Agent ===

impl Agent {
    /// Loads (or creates) the CA, binds the OIDC endpoint and the Workload API socket, and
    /// serves both until the returned agent is shut down or dropped.
    pub async fn start(config: AgentConfig) -> Result<RunningAgent, AgentError> {
        config.validate()?;
        let ca = Arc::new(match &config.state_dir {
            Some(dir) => LocalCa::load_or_create(config.trust_domain.clone(), dir)?,
            None => {
                tracing::warn!(
                    "no state_dir configured: the CA is ephemeral and its trust bundle changes on every start"
                );
                LocalCa::ephemeral(config.trust_domain.clone())?
            }
        });
        let oidc_listener = tokio::net::TcpListener::bind(config.oidc.listen)
            .await
            .map_err(|source| AgentError::OidcListen {
                addr: config.oidc.listen,
                source,
            })?;
        let oidc_addr = oidc_listener
            .local_addr()
            .map_err(|source| AgentError::OidcListen {
                addr: config.oidc.listen,
                source,
            })?;
        let issuer = config
            .oidc
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{oidc_addr}"));
        let jwt = Arc::new(JwtAuthority::new(
            config.trust_domain.clone(),
            issuer,
            config.oidc.algorithm,
        )?);
        let listener = crate::socket::bind(&config.socket.path, config.socket.mode)?;

        let stop = CancellationToken::new();
        let api = WorkloadApi {
            ca: ca.clone(),
            jwt: jwt.clone(),
            entries: Arc::new(config.entries.clone()),
            stop: stop.clone(),
        };
        let (conns_tx, conns_rx) = mpsc::channel(64);
        let mut tasks = vec![tokio::spawn(accept_loop(listener, conns_tx, stop.clone()))];
        let grpc = tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::with_interceptor(
                api,
                require_security_header,
            ))
            .serve_with_incoming_shutdown(
                ReceiverStream::new(conns_rx),
                stop.clone().cancelled_owned(),
            );
        tasks.push(tokio::spawn(async move {
            if let Err(error) = grpc.await {
                tracing::error!(%error, "Workload API server stopped");
            }
        }));
        let http = axum::serve(oidc_listener, crate::oidc::router(jwt.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        tasks.push(tokio::spawn(async move {
            if let Err(error) = http.await {
                tracing::error!(%error, "OIDC discovery endpoint stopped");
            }
        }));
        tasks.push(tokio::spawn(rotate_keys(
            jwt.clone(),
            config.oidc.key_rotation,
            stop.clone(),
        )));
        tracing::info!(
            socket = %config.socket.path.display(),
            oidc = %oidc_addr,
            trust_domain = %config.trust_domain,
            entries = config.entries.len(),
            "identity agent serving"
        );
        Ok(RunningAgent {
            socket_path: config.socket.path.clone(),
            oidc_addr,
            ca,
            jwt,
            stop,
            tasks,
        })
    }
}

// === impl RunningAgent ===

impl RunningAgent {
    /// The Workload API socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The endpoint as `SPIFFE_ENDPOINT_SOCKET` spells it (`unix:///path`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }

    /// The address of the OIDC discovery endpoint.
    pub fn oidc_addr(&self) -> SocketAddr {
        self.oidc_addr
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<LocalCa> {
        &self.ca
    }

    /// The JWT authority (for WITs in-process, and to rotate keys on demand).
    pub fn jwt(&self) -> &Arc<JwtAuthority> {
        &self.jwt
    }

    /// Stops serving, waits for the tasks and removes the socket.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.remove_socket();
    }

    fn remove_socket(&self) {
        if let Err(error) = std::fs::remove_file(&self.socket_path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %self.socket_path.display(), "cannot remove socket");
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.stop.cancel();
            self.remove_socket();
        }
    }
}

/// Accepts connections and attests each caller before handing it to tonic; a caller that
/// cannot be attested is dropped.
async fn accept_loop(
    listener: UnixListener,
    conns: mpsc::Sender<Result<AttestedStream, io::Error>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let conns = conns.clone();
                tokio::spawn(async move {
                    match attest(&stream).await {
                        Ok(peer) => {
                            tracing::debug!(
                                pid = peer.pid,
                                uid = peer.uid,
                                gid = peer.gid,
                                "connection attested"
                            );
                            let stream = crate::authority::relay(stream);
                            let _ = conns.send(Ok(AttestedStream { stream, peer })).await;
                        }
                        Err(error) => {
                            tracing::error!(%error, "caller attestation failed; connection dropped");
                        }
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                // Bounded pause so that a persistent error (such as EMFILE) does not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn rotate_keys(jwt: Arc<JwtAuthority>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(error) = jwt.rotate() {
            tracing::error!(%error, "JWT signing key rotation failed; the current key stays");
        }
    }
}

// === impl AttestedStream ===

/// An accepted connection with the credentials the kernel gave for its caller; tonic puts
/// the [`PeerInfo`] in each request's extensions.
pub(crate) struct AttestedStream {
    /// The connection through the `:authority` relay (see [`crate::authority`]).
    stream: DuplexStream,
    peer: PeerInfo,
}

impl Connected for AttestedStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for AttestedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AttestedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
