//! A [`BundleFetcher`] that fetches the service's own signed policy bundle from a Ligand bundle
//! server (or any server speaking the OPA bundle protocol) over mTLS.
//!
//! - **Identity.** At [`start`](BundleFetcher::start) the fetcher builds a framework
//!   [`Dialer`](ligand_runtime::dial::Dialer) (pooled, HTTP/1.1) that presents the
//!   workload's live SVID (rotation included) and accepts only a server presenting the
//!   configured SPIFFE ID. The bundle it asks for is set explicitly, or named after its own
//!   SPIFFE ID when that is a service ID, `spiffe://<domain>/service/<name>`
//!   (`spiffe://bank.example/service/accounts` → `GET /bundles/accounts`), as the bundle server's
//!   default scoping does; any other ID must name its bundle (and be mapped to it on the server).
//! - **Fetch.** `GET` with `If-None-Match`: `200` gives a [`PolicyBundle`] (its `revision` is the
//!   unquoted ETag), `304` gives `Ok(None)`, anything else is a
//!   [`ProviderError::Backend`] carrying a [`FetchError`]. The bundle is verified by the policy
//!   engine on reload, not here.
//! - **Watch.** A background task long-polls (`Prefer: wait=N`) with the current ETag and
//!   publishes each new bundle; an error is published too and retried with bounded, jittered
//!   exponential backoff. After an error the next request is unconditional, so that a recovered
//!   server answers with a bundle (and the framework marks the fetcher ready again) even if
//!   nothing changed meanwhile. A server that does not long-poll is polled every
//!   `poll_interval`. The task stops on [`close`](BundleFetcher::close).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use ligand_bundle_fetcher_http::HttpBundleFetcher;
//! use ligand_runtime::{Config, SpiffeId};
//! # fn run(identity: impl ligand_runtime::WorkloadIdentity, policy: impl ligand_runtime::PolicyEngine) -> Result<(), Box<dyn std::error::Error>> {
//! let fetcher = HttpBundleFetcher::builder(
//!     "https://bundles.bank.example:8443",
//!     SpiffeId::new("spiffe://bank.example/ligand/bundle-server")?,
//! )
//! .long_poll(Duration::from_secs(30))
//! .build()?;
//! let config = Config::builder()
//!     .identity(identity)
//!     .policy(policy) // must support reload
//!     .bundle_fetcher(fetcher)
//!     .build();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod backoff;
mod client;
mod poll;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ligand_runtime::dial::{ClientAuth, Dialer, ServerAuth};
use ligand_runtime::{BundleFetcher, BundleUpdate, PolicyBundle, ProviderContext, ProviderError};
use spiffe::SpiffeId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::client::{Client, Fetched};
pub use self::client::{FetchError, OPA_LONG_POLL};

/// The default long-poll wait asked of the server.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(30);
/// The default first retry delay after an error.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The default longest retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The default poll period against a server that does not long-poll.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// The default time a request may take (on top of its long-poll wait).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The default largest bundle accepted, in bytes.
pub const DEFAULT_MAX_BUNDLE_BYTES: usize = 64 << 20;

/// Why a fetcher configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The server URL is not an `https://host[:port][/prefix]` URL.
    #[error("invalid bundle server URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The explicit bundle name is not a single safe path segment.
    #[error("invalid bundle name {0:?}")]
    BundleName(String),
}

/// Builds an [`HttpBundleFetcher`].
#[derive(Debug, Clone)]
pub struct HttpBundleFetcherBuilder {
    url: String,
    server: SpiffeId,
    bundle_name: Option<String>,
    long_poll: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    poll_interval: Duration,
    request_timeout: Duration,
    max_bundle_bytes: usize,
}

impl HttpBundleFetcherBuilder {
    /// Fetches the bundle `name` instead of the one named after the workload's SPIFFE ID.
    pub fn bundle_name(mut self, name: impl Into<String>) -> Self {
        self.bundle_name = Some(name.into());
        self
    }

    /// The long-poll wait asked of the server (default [`DEFAULT_LONG_POLL`]; whole seconds).
    pub fn long_poll(mut self, wait: Duration) -> Self {
        self.long_poll = wait;
        self
    }

    /// The retry delays after errors: from `min`, doubling up to `max`, jittered.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// The poll period against a server that does not support long polling.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a request may take, on top of its long-poll wait.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The largest bundle accepted, in bytes.
    pub fn max_bundle_bytes(mut self, limit: usize) -> Self {
        self.max_bundle_bytes = limit;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<HttpBundleFetcher, ConfigError> {
        let target = parse_url(&self.url)?;
        if let Some(name) = &self.bundle_name
            && !is_valid_bundle_name(name)
        {
            return Err(ConfigError::BundleName(name.clone()));
        }
        Ok(HttpBundleFetcher {
            inner: Arc::new(Inner {
                settings: self,
                target,
                client: OnceLock::new(),
                last_etag: Mutex::new(None),
                updates: Mutex::new(None),
                stop: CancellationToken::new(),
            }),
        })
    }
}

/// Fetches this service's policy bundle from a bundle server over mTLS. See the crate docs.
#[derive(Debug, Clone)]
pub struct HttpBundleFetcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: HttpBundleFetcherBuilder,
    target: Target,
    client: OnceLock<Client>,
    /// The ETag of the last bundle handed out, so the watch starts from it.
    last_etag: Mutex<Option<String>>,
    updates: Mutex<Option<(watch::Sender<BundleUpdate>, tokio::task::JoinHandle<()>)>>,
    stop: CancellationToken,
}

#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    prefix: String,
}

impl HttpBundleFetcher {
    /// A fetcher for the bundle server at `url` (`https://host[:port][/prefix]`), which must
    /// present the SPIFFE ID `server`.
    pub fn builder(url: impl Into<String>, server: SpiffeId) -> HttpBundleFetcherBuilder {
        HttpBundleFetcherBuilder {
            url: url.into(),
            server,
            bundle_name: None,
            long_poll: DEFAULT_LONG_POLL,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            poll_interval: DEFAULT_POLL_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
        }
    }

    /// The request path, once started.
    pub fn path(&self) -> Option<&str> {
        self.inner.client.get().map(|c| c.path.as_str())
    }

    fn client(&self) -> Result<&Client, ProviderError> {
        self.inner
            .client
            .get()
            .ok_or_else(|| ProviderError::backend("fetching policy bundle", FetchError::NotStarted))
    }
}

#[async_trait]
impl BundleFetcher for HttpBundleFetcher {
    async fn fetch(&self, known_etag: Option<&str>) -> Result<Option<PolicyBundle>, ProviderError> {
        if self.inner.stop.is_cancelled() {
            return Err(ProviderError::Closed);
        }
        let client = self.client()?;
        match client.get(known_etag, None).await {
            Ok(Fetched::Bundle(bundle)) => {
                self.inner
                    .last_etag
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone_from(&bundle.etag);
                Ok(Some(bundle))
            }
            Ok(Fetched::NotModified { .. }) => Ok(None),
            Err(error) => Err(ProviderError::backend(
                format!("fetching policy bundle {}", client.path),
                error,
            )),
        }
    }

    async fn watch(&self) -> Result<watch::Receiver<BundleUpdate>, ProviderError> {
        if self.inner.stop.is_cancelled() {
            return Err(ProviderError::Closed);
        }
        let client = self.client()?.clone();
        let mut updates = self.inner.updates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((sender, task)) = updates.as_ref()
            && !task.is_finished()
        {
            return Ok(sender.subscribe());
        }
        let etag = self
            .inner
            .last_etag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (sender, receiver) = watch::channel(Err("no bundle received yet".to_owned()));
        let settings = &self.inner.settings;
        let poller = poll::Poller {
            client,
            updates: sender.clone(),
            etag,
            wait: settings.long_poll,
            poll_interval: settings.poll_interval,
            backoff: backoff::Backoff::new(settings.min_backoff, settings.max_backoff),
            stop: self.inner.stop.clone(),
        };
        let task = tokio::spawn(poller.run());
        *updates = Some((sender, task));
        Ok(receiver)
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let settings = &self.inner.settings;
        let own = context.spiffe_id();
        let name = match &settings.bundle_name {
            Some(name) => name.clone(),
            None => default_bundle_name(&own).ok_or_else(|| {
                ProviderError::Invalid(format!(
                    "cannot derive a bundle name from {own} (only spiffe://<domain>/service/<name> \
                     names its bundle); configure one explicitly"
                ))
            })?,
        };
        // The workload's SVID as it is at each dial (rotation included); the server must be
        // the configured SPIFFE ID. HTTP/1.1 only.
        let identity = context.identity();
        let dialer = Dialer::builder(
            ServerAuth::spiffe(identity, settings.server.clone()),
            ClientAuth::svid(identity),
        )
        .http1_only()
        .request_timeout(settings.request_timeout)
        .max_response_body(settings.max_bundle_bytes)
        .build()
        .map_err(|e| ProviderError::backend("building mTLS for the bundle server", e))?;
        let target = &self.inner.target;
        let host = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        let client = Client {
            dialer,
            origin: format!("https://{host}:{}", target.port),
            path: format!("{}/bundles/{name}", target.prefix),
            timeout: settings.request_timeout,
        };
        tracing::debug!(server = %settings.server, path = %client.path, "bundle fetcher started");
        self.inner
            .client
            .set(client)
            .map_err(|_| ProviderError::Invalid("bundle fetcher started twice".into()))
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.inner.stop.cancel();
        let task = self
            .inner
            .updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((_, task)) = task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// The default bundle name of a workload: `<name>` when its SPIFFE ID's whole path is
/// `/service/<name>`, none otherwise. A last path segment is not enough: `/dev/service/accounts`
/// is not the accounts service.
pub fn default_bundle_name(id: &SpiffeId) -> Option<String> {
    id.path()
        .strip_prefix("/service/")
        .filter(|name| is_valid_bundle_name(name))
        .map(str::to_owned)
}

/// A bundle name is one path segment: ASCII letters, digits, `.`, `-`, `_`, not dot-led.
fn is_valid_bundle_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn parse_url(url: &str) -> Result<Target, ConfigError> {
    let invalid = |reason: &str| ConfigError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("the scheme must be https"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(invalid("a query is not supported"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok(Target {
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(443),
        prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn urls_must_be_https_with_a_host() {
        let t = parse_url("https://bundles.example:8443/policy/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("bundles.example", 8443, "/policy")
        );
        let t = parse_url("https://127.0.0.1").unwrap();
        assert_eq!((t.port, t.prefix.as_str()), (443, ""));
        let t = parse_url("https://[::1]:9000").unwrap();
        assert_eq!(t.host, "::1");
        for bad in [
            "http://x",
            "x:1",
            "https://user@x",
            "https://x/?q",
            "",
            "https:///p",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_name_only_for_a_service_id() {
        let name = |id: &str| default_bundle_name(&SpiffeId::new(id).unwrap());
        assert_eq!(
            name("spiffe://example.org/service/accounts").as_deref(),
            Some("accounts")
        );
        // The server gives these IDs no bundle by default: asking for `accounts` would be
        // refused, and would name another workload's bundle.
        for id in [
            "spiffe://example.org/dev/service/accounts",
            "spiffe://example.org/ns/prod/sa/accounts",
            "spiffe://example.org/accounts",
            "spiffe://example.org/service/accounts/debug",
        ] {
            assert_eq!(name(id), None, "{id}");
        }
    }

    #[test]
    fn explicit_bundle_names_are_checked() {
        let server = SpiffeId::new("spiffe://example.org/bundle-server").unwrap();
        let built = HttpBundleFetcher::builder("https://x", server)
            .bundle_name("../x")
            .build();
        assert_eq!(built.err(), Some(ConfigError::BundleName("../x".into())));
    }

    #[tokio::test]
    async fn use_before_start_and_after_close_fails_closed() {
        let server = SpiffeId::new("spiffe://example.org/bundle-server").unwrap();
        let fetcher = HttpBundleFetcher::builder("https://127.0.0.1:1", server)
            .build()
            .unwrap();
        assert!(matches!(
            fetcher.fetch(None).await,
            Err(ProviderError::Backend { .. })
        ));
        assert!(fetcher.watch().await.is_err());
        fetcher.close().await.unwrap();
        assert!(matches!(
            fetcher.fetch(None).await,
            Err(ProviderError::Closed)
        ));
        assert!(matches!(fetcher.watch().await, Err(ProviderError::Closed)));
    }
}
