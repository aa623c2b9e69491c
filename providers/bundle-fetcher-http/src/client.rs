//! One bundle request over the framework's dialer (mTLS, the server must be the expected SPIFFE
//! ID): `GET` with `If-None-Match` and optionally `Prefer: wait=N`, a bounded body.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use ligand_runtime::PolicyBundle;
use ligand_runtime::dial::{DialError, Dialer};

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
    Connect(#[source] DialError),
    /// The mTLS handshake failed (including a server that is not the expected SPIFFE ID).
    #[error("mTLS handshake with the bundle server failed")]
    Tls(#[source] DialError),
    /// The HTTP exchange failed.
    #[error("HTTP exchange with the bundle server failed")]
    Http(#[source] DialError),
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
    /// Dials the bundle server: HTTP/1.1, the bundle size as its body limit.
    pub(crate) dialer: Dialer,
    /// `https://host:port`.
    pub(crate) origin: String,
    /// The request path, `/…/bundles/<name>`.
    pub(crate) path: String,
    pub(crate) timeout: Duration,
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
        self.exchange(etag, wait, budget).await
    }

    async fn exchange(
        &self,
        etag: Option<&str>,
        wait: Option<Duration>,
        budget: Duration,
    ) -> Result<Fetched, FetchError> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{}", self.origin, self.path));
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            request = request.header("prefer", format!("wait={}", wait.as_secs().max(1)));
        }
        let request = request
            .body(Full::<Bytes>::default())
            .map_err(FetchError::Request)?;
        let response = self
            .dialer
            .request_within(request, budget)
            .await
            .map_err(fetch_error)?;
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
                let bytes = response.into_body();
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

/// The fetch error a dial error is: where the exchange failed.
fn fetch_error(error: DialError) -> FetchError {
    match error {
        DialError::Timeout(after) => FetchError::Timeout(after),
        DialError::Body { limit, source } => FetchError::Body { limit, source },
        error @ (DialError::Handshake(_) | DialError::ServerCertificate { .. }) => {
            FetchError::Tls(error)
        }
        error @ (DialError::Connect(_) | DialError::Uri { .. }) => FetchError::Connect(error),
        error => FetchError::Http(error),
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
