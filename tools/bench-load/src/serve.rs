//! The two servers without Ligand: `plain` (axum + rustls mTLS) and `backend` (axum over plain
//! HTTP, behind nginx).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Result;
use crate::account::{ROUTE, get_account};
use crate::identity::{CertPaths, read_chain};

/// The `plain` subcommand: the handler over mTLS 1.3 with client certificates required, on
/// `127.0.0.1:port`, until SIGTERM.
pub(crate) fn plain(certs: &Path, port: u16) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&CertPaths::new(certs))?));
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(loopback(port)).await?;
        let app = router();
        let mut terminate = terminate_signal()?;
        loop {
            let (tcp, _) = tokio::select! {
                _ = terminate.recv() => return Ok(()),
                accepted = listener.accept() => accepted?,
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            // One task per connection, as Ligand's binding does, so that both pay the same
            // scheduling costs.
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        app.clone().oneshot(request)
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

/// The `backend` subcommand: the handler over plain HTTP on `127.0.0.1:port`, until SIGTERM.
pub(crate) fn backend(port: u16) -> Result<()> {
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(loopback(port)).await?;
        let mut terminate = terminate_signal()?;
        axum::serve(listener, router())
            .with_graceful_shutdown(async move {
                terminate.recv().await;
            })
            .await?;
        Ok(())
    })
}

/// The route table of both servers.
fn router() -> Router {
    Router::new().route(ROUTE, get(get_account))
}

/// `127.0.0.1:port`: nothing here listens on another interface.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The runtime every Rust server of the comparison uses: the one `#[ligand::main]` builds
/// (multi-threaded, one worker per core).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// SIGTERM, which the orchestrator sends to stop a server.
pub(crate) fn terminate_signal() -> Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    )?)
}

/// TLS 1.3 only, a client certificate required and verified against the run's CA, with the
/// same crypto provider and ALPN list as Ligand's own server configuration.
fn tls_config(paths: &CertPaths) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for root in read_chain(&paths.ca())? {
        roots.add(root)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let key = PrivateKeyDer::from_pem_file(paths.server_key())
        .map_err(|e| format!("{}: {e}", paths.server_key().display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_chain(&paths.server_cert())?, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_config_accepts_the_written_certificates() {
        let dir = tempfile::tempdir().unwrap();
        crate::identity::write_certs(dir.path()).unwrap();
        let config = tls_config(&CertPaths::new(dir.path())).unwrap();
        assert_eq!(config.alpn_protocols.len(), 2);
    }
}
