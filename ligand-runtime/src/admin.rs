//! The admin listener: health probes and Prometheus metrics over plain HTTP, on a port of
//! its own, bound to loopback by default.
//!
//! | path | answer |
//! |---|---|
//! | `GET /livez` | 200 while the process serves (its runtime answers); 503 once the service is Unavailable outside shutdown |
//! | `GET /readyz` | 200 while the service serves traffic ([`State::serves_traffic`]), 503 otherwise; a JSON body with the overall and per-provider states |
//! | `GET /metrics` | the Prometheus text exposition format |
//!
//! Anything else is 404 (405 for another method on these paths). HTTP/1.1 only, with a cap on
//! open connections and a deadline on request headers. The listener carries no
//! request data and no secret, and needs no client certificate: it is for the local kubelet
//! and the Prometheus scraper, and is kept apart from the mTLS binding so probes never touch
//! the enforcement pipeline. It starts early in init, so `/readyz` answers 503 while the
//! service initializes, and closes last at shutdown, so probes observe the drain.

mod metrics;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as Shared;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub(crate) use self::metrics::AuditMetrics;
use self::metrics::{Exporter, LateSources};
use crate::error::InitError;
use crate::health::{Monitor, ProviderKind, State};
use crate::secrets::SecretsCache;
use crate::telemetry::AuditQueue;
use crate::tls::IdentityState;

/// The admin listener's default address: loopback only, on 9464 (the OpenTelemetry Prometheus
/// exporter's default port, which scrape configurations often already expect).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// How long the listener waits for open probe connections at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probe and scrape connections open at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's headers (and so how long a keep-alive
/// connection may sit idle).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where the admin listener serves, or that it is off.
///
/// [`AdminConfig::default`] listens on [`DEFAULT_ADMIN_LISTEN`]. A configuration built with
/// [`Config::builder`](crate::Config::builder) has no admin listener until
/// [`ConfigBuilder::admin`](crate::ConfigBuilder::admin) sets one (`ligand::config` turns it
/// on by default).
///
/// ```
/// use ligand_runtime::{AdminConfig, Config};
/// // Port 0: any free port, read back with `Server::admin_addr`.
/// let config = Config::builder().admin(AdminConfig::listen("127.0.0.1:0".parse().unwrap()));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminConfig {
    listen: Option<SocketAddr>,
}

impl AdminConfig {
    /// Listens on `address`.
    pub fn listen(address: SocketAddr) -> Self {
        Self {
            listen: Some(address),
        }
    }

    /// No admin listener.
    pub fn disabled() -> Self {
        Self { listen: None }
    }

    /// The address to listen on, or `None` when off.
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self::listen(DEFAULT_ADMIN_LISTEN)
    }
}

/// The running admin listener. Dropping it stops the listener (an init that fails after it
/// started must not leave it answering).
#[derive(Debug)]
pub(crate) struct AdminListener {
    addr: SocketAddr,
    late: Arc<LateSources>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct AdminState {
    monitor: Arc<Monitor>,
    exporter: Exporter,
}

impl AdminListener {
    /// Binds `address` and starts serving. A bind failure (the port in use, an address this
    /// host does not have) fails init with the address in the message.
    pub(crate) async fn start(
        address: SocketAddr,
        monitor: Arc<Monitor>,
        audit: Arc<AuditQueue>,
        counters: &AuditMetrics,
    ) -> Result<Self, InitError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| InitError::Admin { address, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| InitError::Admin { address, source })?;
        let late = Arc::new(LateSources::default());
        let state = Arc::new(AdminState {
            exporter: Exporter::new(counters, monitor.clone(), audit, late.clone()),
            monitor,
        });
        let router = Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .with_state(state);
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router, stop.clone()));
        tracing::info!(%addr, "admin listener (health probes and metrics) started");
        Ok(Self {
            addr,
            late,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The identity, once init has it: the SVID expiry gauge reads it.
    pub(crate) fn attach_identity(&self, identity: Arc<IdentityState>) {
        let _ = self.late.identity.set(identity);
    }

    /// The secrets cache, once init has built it: its hit and miss counts.
    pub(crate) fn attach_secrets(&self, cache: Arc<SecretsCache>) {
        let _ = self.late.secrets.set(cache);
    }

    /// Stops accepting, lets answers in progress finish (within a second), and returns.
    pub(crate) async fn close(&self) {
        self.stop.cancel();
        if let Some(mut task) = self.task.lock().await.take()
            && tokio::time::timeout(CLOSE_TIMEOUT, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accepts until `stop`, then lets the answers in progress finish. HTTP/1.1 only, with a bound
/// on connections and on how long a request's headers may take: the port may face the pod
/// network, and a client that connects and sends nothing must not hold a task for ever.
async fn serve(listener: tokio::net::TcpListener, router: Router, stop: CancellationToken) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    tracing::debug!(%error, "admin listener accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Full: refuse by closing; a probe retries.
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request| router.clone().oneshot(request));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Alive unless the service has failed: Unavailable outside shutdown (a lost identity past
/// its grace period, a binding that stopped). Draining at shutdown is alive: a restart then
/// would cut the drain short.
async fn livez(Shared(state): Shared<Arc<AdminState>>) -> Response {
    let monitor = &state.monitor;
    let alive = monitor.overall() != State::Unavailable || monitor.is_shutting_down();
    let status = if alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        no_store(),
        if alive { "ok\n" } else { "unavailable\n" },
    )
        .into_response()
}

#[derive(Serialize)]
struct Readiness {
    status: State,
    providers: BTreeMap<ProviderKind, State>,
}

async fn readyz(Shared(state): Shared<Arc<AdminState>>) -> Response {
    let monitor = &state.monitor;
    let overall = monitor.overall();
    let body = Readiness {
        status: overall,
        providers: ProviderKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, monitor.provider(kind)?)))
            .collect(),
    };
    let status = if overall.serves_traffic() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, no_store(), axum::Json(body)).into_response()
}

async fn metrics(Shared(state): Shared<Arc<AdminState>>) -> Response {
    match state.exporter.render() {
        Ok(text) => (
            [
                (
                    header::CONTENT_TYPE,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(_) => {
            tracing::warn!("metrics could not be rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}
