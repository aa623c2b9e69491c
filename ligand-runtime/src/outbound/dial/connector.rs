//! The connector: the only code that opens an outbound socket. It returns nothing but a TLS 1.3
//! stream whose server passed the dialer's verifier.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::due::DueTimes;
use crate::error::BoxError;
use crate::tls::SvidError;

/// Why a dial or a request through a [`Dialer`](super::Dialer) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The dialer's TLS configuration was refused (a client key that does not match its
    /// certificate, a root store without a usable root).
    #[error("dialer configuration refused: {0}")]
    Config(String),
    /// The URI cannot be dialed: not `https`, no host, or a host that is not a server name.
    #[error("cannot dial {uri}: {reason}")]
    Uri {
        /// The URI's scheme and authority.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TCP connection failed.
    #[error("cannot connect")]
    Connect(#[source] BoxError),
    /// The TLS handshake failed for a reason other than the server's certificate (a server
    /// without TLS 1.3, a refused client certificate, a reset).
    #[error("TLS handshake failed")]
    Handshake(#[source] BoxError),
    /// The server's certificate was refused: another SPIFFE ID, an untrusted issuer, a name
    /// it is not valid for, an expired certificate.
    #[error("the server's certificate was refused: {reason}")]
    ServerCertificate {
        /// The verifier's verdict.
        reason: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// The HTTP exchange failed on an established connection.
    #[error("HTTP exchange failed")]
    Http(#[source] BoxError),
    /// The response body could not be read, or was over the limit.
    #[error("response body unreadable or over {limit} bytes")]
    Body {
        /// The limit.
        limit: usize,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// No complete answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where a dial failed, carried to [`classify`] through the pool's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Tcp,
    Tls,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Self::Tcp => "TCP connection to",
            Self::Tls => "TLS handshake with",
        }
    }
}

/// The connector's own error: the stage that failed and the I/O error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialFailure {
    #[error("cannot dial {uri}: {reason}")]
    Uri { uri: String, reason: &'static str },
    #[error("{} {address}", .stage.describe())]
    Io {
        stage: Stage,
        address: String,
        #[source]
        source: io::Error,
    },
}

/// Turns a failure (the connector's own, or the pool's wrapping it) into a [`DialError`],
/// telling a refused server certificate apart.
pub(crate) fn classify(error: BoxError) -> DialError {
    if let Some(reason) = certificate_failure(&*error) {
        return DialError::ServerCertificate {
            reason,
            source: error,
        };
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    let mut stage = None;
    while let Some(e) = next {
        match e.downcast_ref::<DialFailure>() {
            Some(DialFailure::Uri { uri, reason }) => {
                return DialError::Uri {
                    uri: uri.clone(),
                    reason,
                };
            }
            Some(DialFailure::Io { stage: s, .. }) => {
                stage = Some(*s);
                break;
            }
            None => next = e.source(),
        }
    }
    match stage {
        Some(Stage::Tcp) => DialError::Connect(error),
        Some(Stage::Tls) => DialError::Handshake(error),
        None => DialError::Http(error),
    }
}

/// Walks an error's causes for the certificate verdict of the handshake. `io::Error` hides its
/// payload from `source()`, so it is opened with `get_ref`.
pub(crate) fn certificate_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(cert)) = e.downcast_ref::<rustls::Error>() {
            return Some(match cert {
                rustls::CertificateError::Other(other) => other.0.to_string(),
                cert => format!("{cert:?}"),
            });
        }
        if let Some(svid) = e.downcast_ref::<SvidError>() {
            return Some(svid.to_string());
        }
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// What the server name of a dial is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameUse {
    /// The verifier authenticates the name (web PKI): a host that is no server name fails.
    Verified,
    /// The server is authenticated by SPIFFE ID; the name only fills SNI.
    SniOnly,
}

/// Dials: TCP, then the TLS 1.3 handshake with the dialer's verifier.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: TlsConnector,
    names: NameUse,
    max_connection_age: Duration,
    due: Arc<DueTimes>,
}

impl Connector {
    pub(crate) fn new(
        tls: TlsConnector,
        names: NameUse,
        max_connection_age: Duration,
        due: Arc<DueTimes>,
    ) -> Self {
        Self {
            tls,
            names,
            max_connection_age,
            due,
        }
    }

    pub(crate) fn dial(
        &self,
        uri: Uri,
    ) -> impl Future<Output = Result<TlsConnection, DialFailure>> + Send + use<> {
        let tls = self.tls.clone();
        let names = self.names;
        let max_connection_age = self.max_connection_age;
        let due = self.due.clone();
        async move {
            let refuse = |reason| DialFailure::Uri {
                uri: format!(
                    "{}://{}",
                    uri.scheme_str().unwrap_or(""),
                    uri.authority().map_or("", |a| a.as_str())
                ),
                reason,
            };
            if uri.scheme_str() != Some("https") {
                return Err(refuse("the scheme must be https"));
            }
            let host = uri
                .host()
                .ok_or_else(|| refuse("no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = match (ServerName::try_from(host.clone()), names) {
                (Ok(name), _) => name,
                (Err(_), NameUse::SniOnly) => ServerName::try_from("ligand.invalid")
                    .map_err(|_| refuse("not a server name"))?,
                (Err(_), NameUse::Verified) => return Err(refuse("the host is not a server name")),
            };
            let address = format!("{host}:{port}");
            let io_failure = |stage| {
                let address = address.clone();
                move |source| DialFailure::Io {
                    stage,
                    address,
                    source,
                }
            };
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(io_failure(Stage::Tcp))?;
            tcp.set_nodelay(true).map_err(io_failure(Stage::Tcp))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(io_failure(Stage::Tls))?;
            let (_, session) = stream.get_ref();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let peer_not_after = session
                .peer_certificates()
                .and_then(|chain| crate::tls::earliest_not_after(chain))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let established = Instant::now();
            let (id, alive) = due.register(established + max_connection_age, peer_not_after);
            Ok(TlsConnection {
                io: TokioIo::new(stream),
                h2,
                info: ConnectionInfo {
                    id,
                    established,
                    peer_not_after,
                },
                _alive: alive,
            })
        }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TlsConnection;
    type Error = DialFailure;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConnection, DialFailure>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialFailure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.dial(uri))
    }
}

/// When a connection was made and until when its peer's certificate is valid; set on every
/// response that came over a pooled connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionInfo {
    /// The connection's entry in its pool's [`DueTimes`].
    pub(crate) id: u64,
    pub(crate) established: Instant,
    pub(crate) peer_not_after: SystemTime,
}

/// One verified outbound TLS 1.3 connection, as [`Dialer::connect`](super::Dialer::connect)
/// returns it: speak HTTP on it with hyper's connection API.
pub struct TlsConnection {
    io: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
    info: ConnectionInfo,
    /// Alive while the connection is: its pool's [`DueTimes`] forgets it once dropped.
    _alive: Arc<()>,
}

impl fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnection")
            .field("h2", &self.h2)
            .field("peer_not_after", &self.info.peer_not_after)
            .finish_non_exhaustive()
    }
}

impl TlsConnection {
    /// The certificates the server presented, leaf first.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        self.io
            .inner()
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
    }

    /// Whether the server chose HTTP/2 in ALPN.
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// When the earliest certificate in the server's chain expires.
    pub fn peer_not_after(&self) -> SystemTime {
        self.info.peer_not_after
    }
}

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.info);
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
