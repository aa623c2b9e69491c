//! One bundle request over mTLS: connect, handshake (the server must be the expected SPIFFE
//! ID), `GET` with `If-None-Match` and optionally `Prefer: wait=N`, read a bounded body.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use ligand_runtime::PolicyBundle;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The content type with which a bundle server says it supports long polling.
pub const OPA_LONG_POLL: &str = "application/vnd.openpolicyagent.bundles";

/// Why one bundle request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// [`start`](ligand_runtime::BundleFetcher::start) has not run yet: there is no TLS
    /// configuration to connect with.
    #[error("bundle fetcher used before start")]
    NotStarted,
    /// The TCP connection failed.
    #[error("cannot connect to the bundle server")]
    Connect(#[source] std::io::Error),
    /// The mTLS handshake failed (including a server that is not the expected SPIFFE ID).
    #[error("mTLS handshake with the bundle server failed")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP exchange with the bundle server failed")]
    Http(#[source] hyper::Error),
    /// The response body could not be read, or was over the size limit.
    #[error("bundle body unreadable or over {limit} bytes")]
    Body {
        /// The limit.
        limit: usize,
        /// The error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with a status other than 200 or 304.
    #[error("bundle server answered {0}")]
    Status(StatusCode),
    /// A 200 answer without a body.
    #[error("bundle server sent an empty bundle")]
    EmptyBody,
    /// No answer within the request timeout.
    #[error("no answer from the bundle server within {0:?}")]
    Timeout(Duration),
    /// The request could not be built (an ETag that is not a valid header value).
    #[error("invalid bundle request")]
    Request(#[source] http::Error),
}

/// What a request returned.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A new bundle.
    Bundle(PolicyBundle),
    /// The bundle named by the ETag is still current.
    NotModified { long_poll: bool },
}

/// Where and how bundle requests go.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The request path, `/…/bundles/<name>`.
    pub(crate) path: String,
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
}

impl Client {
    /// One request. With `wait`, the server may hold it that long; the timeout is extended by
    /// the same amount.
    pub(crate) async fn get(
        &self,
        etag: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let budget = self.timeout + wait.unwrap_or_default();
        tokio::time::timeout(budget, self.exchange(etag, wait))
            .await
            .map_err(|_| FetchError::Timeout(budget))?
    }

    async fn exchange(
        &self,
        etag: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(FetchError::Connect)?;
        // The server is authenticated by its SPIFFE ID, not by name; the name is only SNI.
        let name = ServerName::try_from(self.host.clone())
            .or_else(|_| ServerName::try_from("ligand.invalid".to_owned()))
            .map_err(|e| FetchError::Tls(std::io::Error::other(e)))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(FetchError::Tls)?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(FetchError::Http)?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = self.send(&mut sender, etag, wait).await;
        driver.abort();
        result
    }

    async fn send(
        &self,
        sender: &mut http1::SendRequest<Empty<Bytes>>,
        etag: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(&self.path)
            .header(HOST, format!("{}:{}", self.host, self.port));
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            request = request.header("prefer", format!("wait={}", wait.as_secs().max(1)));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(FetchError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(FetchError::Http)?;
        let long_poll = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == OPA_LONG_POLL.as_bytes());
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified { long_poll }),
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = Limited::new(response.into_body(), self.max_bytes)
                    .collect()
                    .await
                    .map_err(|source| FetchError::Body {
                        limit: self.max_bytes,
                        source,
                    })?
                    .to_bytes();
                if bytes.is_empty() {
                    return Err(FetchError::EmptyBody);
                }
                let revision = etag.as_deref().and_then(revision_of);
                Ok(Fetched::Bundle(PolicyBundle {
                    bytes: bytes.to_vec(),
                    etag,
                    revision,
                }))
            }
            status => Err(FetchError::Status(status)),
        }
    }
}

/// The revision an ETag carries: the bundle server's ETag is the quoted revision.
pub(crate) fn revision_of(etag: &str) -> Option<String> {
    let tag = etag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    (!tag.is_empty()).then(|| tag.to_owned())
}

#[cfg(test)]
mod tests {
    use super::revision_of;
    use proptest::prelude::*;

    #[test]
    fn revision_is_the_unquoted_etag() {
        assert_eq!(revision_of("\"abc\"").as_deref(), Some("abc"));
        assert_eq!(revision_of("W/\"abc\"").as_deref(), Some("abc"));
        assert_eq!(revision_of("abc").as_deref(), Some("abc"));
        assert_eq!(revision_of("\"\""), None);
    }

    proptest! {
        #[test]
        fn revision_parsing_never_panics(raw in ".{0,80}") {
            if let Some(rev) = revision_of(&raw) {
                prop_assert!(!rev.is_empty());
            }
        }
    }
}
