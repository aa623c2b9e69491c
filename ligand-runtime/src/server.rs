//! The initialized framework: [`init`], the enforcement pipeline and the shutdown sequence.

mod enforce;
mod lifecycle;
mod registration;
mod rotation;
mod shadow;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use spiffe::SpiffeId;
use tokio::sync::{Mutex, OnceCell, watch};
use tokio_util::sync::CancellationToken;

pub(crate) use self::enforce::{Answer, Step};
pub use self::enforce::{Denied, Enforced};
pub use self::lifecycle::{init, init_trust_boundary};
pub use self::shadow::ShadowDecisions;

use crate::admin::AdminListener;
use crate::binding::Binding;
use crate::bundle::BundleFetcher;
use crate::chain::{ChainVerifier, VerifiedChain};
use crate::config::{ListeningHook, PreStopHook};
use crate::health::Monitor;
use crate::identity::WorkloadIdentity;
use crate::outbound::Transport;
use crate::policy::PolicyEngine;
use crate::ratelimit::RateLimiter;
use crate::registry::ServiceRegistry;
use crate::secrets::{Secret, SecretError, Secrets, SecretsCache};
use crate::telemetry::{AuditQueue, Telemetry};
use crate::tls::IdentityState;

/// An initialized Ligand server. Cheap to clone; every clone is the same server.
///
/// Obtain one from [`init`] (services reached over mTLS) or [`init_trust_boundary`]
/// (gateways that authenticate external callers themselves), serve a generated service with
/// [`Server::serve`], and stop with [`Server::close`].
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Arc<dyn WorkloadIdentity>,
    policy: Arc<dyn PolicyEngine>,
    /// The shadow policy and its comparison worker, when configured.
    shadow: Option<Arc<shadow::Shadow>>,
    binding: Option<Arc<dyn Binding>>,
    rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// The audit queue as a sink, for components that record outside the request path.
    telemetry: Arc<dyn Telemetry>,
    audit: Arc<AuditQueue>,
    secrets: Option<Arc<dyn Secrets>>,
    secrets_cache: Option<Arc<SecretsCache>>,
    registry: Option<Arc<dyn ServiceRegistry>>,
    registrar: Option<registration::Registrar>,
    transport: Arc<Transport>,
    bundle_fetcher: Option<Arc<dyn BundleFetcher>>,
    tls: Arc<IdentityState>,
    /// Verifies the chain header of every inbound request.
    chain_verifier: ChainVerifier,
    /// Verifies the Transaction Token of inbound requests, when configured.
    txn_verifier: Option<crate::txn::TxnVerifier>,
    /// Verifies the WIT/WPT pair of inbound requests, when configured.
    wimse_verifier: Option<crate::wimse::WimseVerifier>,
    /// The gateway listener and its Context Service, when configured.
    gateway: Option<Gateway>,
    service_id: Arc<str>,
    monitor: Arc<Monitor>,
    settings: Settings,
    pre_stop_hooks: Vec<PreStopHook>,
    listening_hooks: Vec<ListeningHook>,
    serving: AtomicBool,
    listening: watch::Sender<Option<SocketAddr>>,
    /// Cancels the identity rotation and bundle watch loops.
    watches: CancellationToken,
    watch_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    closed: OnceCell<()>,
    /// Health probes and metrics; closed after everything else.
    admin: Option<AdminListener>,
}

/// A configured gateway: its settings, its listener and where it listens.
struct Gateway {
    config: crate::gateway::GatewayConfig,
    binding: crate::binding::HttpBinding,
    serving: AtomicBool,
    listening: watch::Sender<Option<SocketAddr>>,
}

#[derive(Debug, Clone)]
struct Settings {
    policy_timeout: Duration,
    policy_latency_warn: Duration,
    pre_stop_timeout: Duration,
    drain_timeout: Duration,
    identity_grace_period: Option<Duration>,
    metrics_interval: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("spiffe_id", &self.inner.service_id)
            .field("health", &self.inner.monitor)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The SPIFFE ID this workload presents.
    pub fn spiffe_id(&self) -> SpiffeId {
        self.inner.tls.spiffe_id()
    }

    /// The health of each provider and of the service (read-only: only the framework and its
    /// providers change it).
    pub fn monitor(&self) -> &Monitor {
        &self.inner.monitor
    }

    /// Counts of shadow policy comparisons, when a shadow policy is configured
    /// ([`ConfigBuilder::shadow_policy`](crate::ConfigBuilder::shadow_policy)).
    pub fn shadow_decisions(&self) -> Option<ShadowDecisions> {
        self.inner.shadow.as_ref().map(|shadow| shadow.decisions())
    }

    /// A client for the service `C` calls (a `#[ligand::client]` type), for work that is not
    /// serving a request: the chain of its calls starts at this service.
    pub fn client<C: crate::Client>(&self) -> C {
        C::__from_caller(self.caller(C::SERVICE, VerifiedChain::empty(), None))
    }

    pub(crate) fn caller(
        &self,
        service: &'static str,
        upstream: VerifiedChain,
        txn: Option<http::HeaderValue>,
    ) -> crate::Caller {
        crate::Caller::new(self.inner.transport.clone(), service, upstream, txn)
    }

    /// The live identity (current SVID and trust store), for verifying chains and building
    /// outbound TLS. Not public: it can replace the workload's certificate and trust store.
    pub(crate) fn identity(&self) -> &Arc<IdentityState> {
        &self.inner.tls
    }

    /// The verifier of inbound chain headers, with its cache.
    pub(crate) fn chain_verifier(&self) -> &ChainVerifier {
        &self.inner.chain_verifier
    }

    /// The verifier of inbound WIT/WPT pairs, when one is configured.
    pub(crate) fn wimse_verifier(&self) -> Option<&crate::wimse::WimseVerifier> {
        self.inner.wimse_verifier.as_ref()
    }

    /// The gateway configuration, when one is configured.
    pub(crate) fn gateway_config(&self) -> Option<&crate::gateway::GatewayConfig> {
        self.inner.gateway.as_ref().map(|g| &g.config)
    }

    /// Waits until the gateway listener listens and returns its address; `None` if it
    /// stopped (or no gateway is configured) before that.
    pub async fn gateway_addr(&self) -> Option<SocketAddr> {
        let gateway = self.inner.gateway.as_ref()?;
        let mut rx = gateway.listening.subscribe();
        let closed = self.inner.watches.clone();
        tokio::select! {
            found = rx.wait_for(Option::is_some) => return found.ok().and_then(|addr| *addr),
            () = closed.cancelled() => {}
        }
        *rx.borrow()
    }

    /// The verifier of inbound Transaction Tokens, when one is configured.
    pub(crate) fn txn_verifier(&self) -> Option<&crate::txn::TxnVerifier> {
        self.inner.txn_verifier.as_ref()
    }

    /// Verifies the Transaction Token `token` with this server's configured verifier, for a
    /// trust-boundary service that reads the token itself and passes the claims to
    /// [`Server::enforce`] in [`InboundRequest::txn`](crate::InboundRequest::txn). Without a
    /// configured verifier every token is refused ([`TxnRejection::UnknownKey`](crate::TxnRejection::UnknownKey)).
    pub fn verify_txn_token(
        &self,
        token: &str,
    ) -> Result<crate::txn::TxnClaims, crate::txn::TxnRejection> {
        match &self.inner.txn_verifier {
            Some(verifier) => verifier
                .verify(token, std::time::SystemTime::now())
                .map(Arc::unwrap_or_clone),
            None => Err(crate::txn::TxnRejection::UnknownKey),
        }
    }

    /// The secret at `name` (a backend path) through the audited cache. Handlers use
    /// [`Ctx::secret`](crate::Ctx::secret), which records the caller's chain with the access.
    pub async fn secret_bytes(
        &self,
        name: &str,
    ) -> Result<Arc<secrecy::SecretSlice<u8>>, SecretError> {
        self.secret_for(name, None, None).await
    }

    /// The typed secret `T` through the audited cache.
    pub async fn secret<T: Secret>(&self) -> Result<T, SecretError> {
        let bytes = self.secret_for(T::PATH, None, None).await?;
        T::__from_secret(secrecy::ExposeSecret::expose_secret(&*bytes))
    }

    pub(crate) async fn secret_for(
        &self,
        name: &str,
        chain: Option<&crate::Chain>,
        request_id: Option<crate::RequestId>,
    ) -> Result<Arc<secrecy::SecretSlice<u8>>, SecretError> {
        let cache = self
            .inner
            .secrets_cache
            .as_ref()
            .ok_or(SecretError::NotConfigured)?;
        cache.get(name, chain, request_id).await
    }

    /// The address the admin listener (health probes and metrics) is bound to, or `None` when
    /// it is off. With port 0 configured, this is the port the system chose.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin.as_ref().map(AdminListener::local_addr)
    }

    /// Waits until the binding listens and returns its address; `None` if it stopped (or
    /// there is no binding) before that.
    pub async fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.binding.as_ref()?;
        let mut rx = self.inner.listening.subscribe();
        let closed = self.inner.watches.clone();
        tokio::select! {
            found = rx.wait_for(Option::is_some) => return found.ok().and_then(|addr| *addr),
            () = closed.cancelled() => {}
        }
        *rx.borrow()
    }
}
