//! Configuration: the providers and settings [`init`](crate::init) wires together.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::AdminConfig;
use crate::binding::Binding;
use crate::bundle::BundleFetcher;
use crate::error::BoxError;
use crate::identity::WorkloadIdentity;
use crate::outbound::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_CONNECTION_AGE, FleetRetryBudget, ResilienceConfig,
};
use crate::policy::PolicyEngine;
use crate::ratelimit::RateLimiter;
use crate::registry::{ServiceRegistrar, ServiceRegistration, ServiceRegistry};
use crate::secrets::Secrets;
use crate::telemetry::Telemetry;
use crate::txn::TxnTokenConfig;
use crate::wimse::WimseConfig;

/// How long policy evaluation may run before the request is denied.
pub const DEFAULT_POLICY_TIMEOUT: Duration = Duration::from_secs(5);
/// Policy evaluations slower than this are logged as a warning.
pub const DEFAULT_POLICY_LATENCY_WARN: Duration = Duration::from_millis(50);
/// The total budget of all pre-stop hooks.
pub const DEFAULT_PRE_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the binding may drain in-flight requests at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long before a secret expires the framework renews it (the trigger is
/// `min(lead, ttl/2)` before expiry).
pub const DEFAULT_SECRET_RENEWAL_LEAD: Duration = Duration::from_secs(600);
/// How often a metrics snapshot is sent to telemetry.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(30);
/// How many audit and telemetry records may wait for the sink.
pub const DEFAULT_AUDIT_QUEUE_CAPACITY: usize = 16 * 1024;

/// What a request does when the audit queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditOverflow {
    /// Drop the record and go on (the default): the loss is counted in
    /// [`MetricsSnapshot::audit_dropped`](crate::MetricsSnapshot::audit_dropped) and telemetry
    /// turns Degraded. Requests never wait for the sink.
    #[default]
    Drop,
    /// Wait for room: no decision or rate-limit record is ever dropped, at the price of
    /// requests slowing to the sink's pace when it falls behind. For deployments whose audit
    /// log must be complete.
    Block,
}

type HookFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A hook run at shutdown after the service is marked draining and before the binding stops.
pub(crate) type PreStopHook = Arc<dyn Fn() -> HookFuture + Send + Sync>;

/// A hook run once the binding listens, with its address.
pub(crate) type ListeningHook = Arc<dyn Fn(std::net::SocketAddr) + Send + Sync>;

/// The providers and settings of a Ligand server. Build it with [`Config::builder`].
///
/// Identity, policy and (for [`init`](crate::init)) a binding are required; `init` reports
/// every missing one at once. Everything else has a safe default.
pub struct Config {
    pub(crate) identity: Option<Arc<dyn WorkloadIdentity>>,
    pub(crate) policy: Option<Arc<dyn PolicyEngine>>,
    pub(crate) shadow_policy: Option<Arc<dyn PolicyEngine>>,
    pub(crate) binding: Option<Arc<dyn Binding>>,
    pub(crate) rate_limiter: Option<Arc<dyn RateLimiter>>,
    pub(crate) telemetry: Option<Arc<dyn Telemetry>>,
    pub(crate) secrets: Option<Arc<dyn Secrets>>,
    pub(crate) registry: Option<Arc<dyn ServiceRegistry>>,
    pub(crate) registrar: Option<(Arc<dyn ServiceRegistrar>, ServiceRegistration)>,
    pub(crate) call_timeout: Duration,
    pub(crate) outbound_max_connection_age: Duration,
    pub(crate) chain_version: crate::chain::ChainVersion,
    pub(crate) resilience: ResilienceConfig,
    pub(crate) fleet_retry_budget: Option<(Arc<dyn FleetRetryBudget>, Duration)>,
    pub(crate) bundle_fetcher: Option<Arc<dyn BundleFetcher>>,
    pub(crate) spiffe_id: Option<String>,
    pub(crate) policy_timeout: Duration,
    pub(crate) policy_latency_warn: Duration,
    pub(crate) pre_stop_hooks: Vec<PreStopHook>,
    pub(crate) listening_hooks: Vec<ListeningHook>,
    pub(crate) pre_stop_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) identity_grace_period: Option<Duration>,
    pub(crate) metrics_interval: Duration,
    pub(crate) secret_renewal_lead: Duration,
    pub(crate) audit_queue_capacity: usize,
    pub(crate) audit_overflow: AuditOverflow,
    pub(crate) admin: AdminConfig,
    pub(crate) txn_token: Option<TxnTokenConfig>,
    pub(crate) wimse: Option<WimseConfig>,
    pub(crate) gateway: Option<crate::gateway::GatewayConfig>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("identity", &self.identity.is_some())
            .field("policy", &self.policy.is_some())
            .field("shadow_policy", &self.shadow_policy.is_some())
            .field("binding", &self.binding.is_some())
            .field("rate_limiter", &self.rate_limiter.is_some())
            .field("telemetry", &self.telemetry.is_some())
            .field("secrets", &self.secrets.is_some())
            .field("registry", &self.registry.is_some())
            .field("registrar", &self.registrar.as_ref().map(|(_, r)| r))
            .field("bundle_fetcher", &self.bundle_fetcher.is_some())
            .field("spiffe_id", &self.spiffe_id)
            .field("policy_timeout", &self.policy_timeout)
            .field("chain_version", &self.chain_version)
            .field("pre_stop_hooks", &self.pre_stop_hooks.len())
            .field("listening_hooks", &self.listening_hooks.len())
            .field("audit_queue_capacity", &self.audit_queue_capacity)
            .field("audit_overflow", &self.audit_overflow)
            .field("admin", &self.admin)
            .field("txn_token", &self.txn_token)
            .field("wimse", &self.wimse)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Starts a configuration with every default and no provider.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                identity: None,
                policy: None,
                shadow_policy: None,
                binding: None,
                rate_limiter: None,
                telemetry: None,
                secrets: None,
                registry: None,
                registrar: None,
                call_timeout: DEFAULT_CALL_TIMEOUT,
                outbound_max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
                chain_version: crate::chain::ChainVersion::default(),
                resilience: ResilienceConfig::default(),
                fleet_retry_budget: None,
                bundle_fetcher: None,
                spiffe_id: None,
                policy_timeout: DEFAULT_POLICY_TIMEOUT,
                policy_latency_warn: DEFAULT_POLICY_LATENCY_WARN,
                pre_stop_hooks: Vec::new(),
                listening_hooks: Vec::new(),
                pre_stop_timeout: DEFAULT_PRE_STOP_TIMEOUT,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                identity_grace_period: None,
                metrics_interval: DEFAULT_METRICS_INTERVAL,
                secret_renewal_lead: DEFAULT_SECRET_RENEWAL_LEAD,
                audit_queue_capacity: DEFAULT_AUDIT_QUEUE_CAPACITY,
                audit_overflow: AuditOverflow::Drop,
                admin: AdminConfig::disabled(),
                txn_token: None,
                wimse: None,
                gateway: None,
            },
        }
    }
}

/// Builds a [`Config`].
///
/// ```
/// use ligand_runtime::{Config, HttpBinding};
/// let config = Config::builder().binding(HttpBinding::new("127.0.0.1:0")).build();
/// # let _ = config;
/// ```
#[derive(Debug)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// The workload identity (required).
    pub fn identity(mut self, identity: impl WorkloadIdentity) -> Self {
        self.config.identity = Some(Arc::new(identity));
        self
    }

    /// The policy engine (required).
    pub fn policy(mut self, policy: impl PolicyEngine) -> Self {
        self.config.policy = Some(Arc::new(policy));
        self
    }

    /// A shadow policy: a candidate evaluated on live traffic beside the enforced policy, off
    /// the request path, and never enforced. Disagreements are logged with the request ID and
    /// counted ([`Server::shadow_decisions`](crate::Server::shadow_decisions), and
    /// `ligand_shadow_decisions_total` on the admin listener).
    pub fn shadow_policy(mut self, policy: impl PolicyEngine) -> Self {
        self.config.shadow_policy = Some(Arc::new(policy));
        self
    }

    /// The inbound binding (required by [`init`](crate::init); optional for trust-boundary
    /// services).
    pub fn binding(mut self, binding: impl Binding) -> Self {
        self.config.binding = Some(Arc::new(binding));
        self
    }

    /// The rate limiter, checked before policy. Without one, requests are not rate limited.
    pub fn rate_limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.config.rate_limiter = Some(Arc::new(limiter));
        self
    }

    /// The telemetry sink. Without one, events go to `tracing` under `ligand::audit`;
    /// [`JsonLinesTelemetry`](crate::JsonLinesTelemetry) writes JSON lines instead. The sink
    /// is called from the audit writer thread, never on the request path.
    pub fn telemetry(mut self, telemetry: impl Telemetry) -> Self {
        self.config.telemetry = Some(Arc::new(telemetry));
        self
    }

    /// The secrets backend.
    pub fn secrets(mut self, secrets: impl Secrets) -> Self {
        self.config.secrets = Some(Arc::new(secrets));
        self
    }

    /// The service registry for outbound calls.
    pub fn registry(mut self, registry: impl ServiceRegistry) -> Self {
        self.config.registry = Some(Arc::new(registry));
        self
    }

    /// Publishes this instance through `registrar` once the binding listens, and withdraws it
    /// at shutdown before the binding drains. While the registrar reports its registration
    /// lost, the service is Degraded.
    pub fn registrar(
        mut self,
        registrar: impl ServiceRegistrar,
        registration: ServiceRegistration,
    ) -> Self {
        self.config.registrar = Some((Arc::new(registrar), registration));
        self
    }

    /// How long an outbound call may take, dial and response body included (default 10 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// How long a pooled outbound connection is reused before it is redialed with the current
    /// SVID (default 5 min). A connection whose peer certificate expires is retired sooner.
    pub fn outbound_max_connection_age(mut self, age: Duration) -> Self {
        self.config.outbound_max_connection_age = age;
        self
    }

    /// The wire-format version of the chain tokens this service signs on outbound calls
    /// (default [`ChainVersion::V2`](crate::ChainVersion::V2)). Every known version is
    /// verified inbound whatever this says. During a rolling upgrade from a release that only
    /// verifies version 1, keep [`ChainVersion::V1`](crate::ChainVersion::V1) until every
    /// receiver runs a release that verifies version 2: receivers learn a version before
    /// senders emit it.
    pub fn outbound_chain_version(mut self, version: crate::chain::ChainVersion) -> Self {
        self.config.chain_version = version;
        self
    }

    /// How outbound calls are balanced, ejected, limited and retried (default:
    /// [`ResilienceConfig::default`], every setting documented on its field). Checked by
    /// `init`, which fails on a value that cannot be used, naming the setting.
    ///
    /// ```
    /// use ligand_runtime::{Config, ResilienceConfig, Strategy};
    ///
    /// let mut resilience = ResilienceConfig::default();
    /// resilience.balancer.strategy = Strategy::LeastRequest;
    /// resilience.retry.max_attempts = 2;
    /// let builder = Config::builder().outbound_resilience(resilience);
    /// # let _ = builder;
    /// ```
    pub fn outbound_resilience(mut self, config: ResilienceConfig) -> Self {
        self.config.resilience = config;
        self
    }

    /// Shares the retry budget with every instance of the service through `store`, synced
    /// every `sync` (such as [`DEFAULT_FLEET_SYNC`](crate::DEFAULT_FLEET_SYNC)): a retry then
    /// needs the target's local budget and this instance's share of the fleet's (see
    /// [`FleetBudget`](crate::FleetBudget)). The fleet budget takes its ratio, floor and
    /// window from the top-level `[outbound.retry]`. `init` fails on a `sync` under 100 ms or
    /// longer than the window, naming `retry.fleet.sync`.
    pub fn fleet_retry_budget(mut self, store: impl FleetRetryBudget, sync: Duration) -> Self {
        self.config.fleet_retry_budget = Some((Arc::new(store), sync));
        self
    }

    /// The policy bundle fetcher; requires a policy engine that supports reload.
    pub fn bundle_fetcher(mut self, fetcher: impl BundleFetcher) -> Self {
        self.config.bundle_fetcher = Some(Arc::new(fetcher));
        self
    }

    /// Selects the SVID with this SPIFFE ID when the identity provider returns several.
    pub fn spiffe_id(mut self, id: impl Into<String>) -> Self {
        self.config.spiffe_id = Some(id.into());
        self
    }

    /// How long policy evaluation may run before the request is denied (default 5 s).
    pub fn policy_timeout(mut self, timeout: Duration) -> Self {
        self.config.policy_timeout = timeout;
        self
    }

    /// Evaluations slower than this are logged as a warning (default 50 ms).
    pub fn policy_latency_warn(mut self, threshold: Duration) -> Self {
        self.config.policy_latency_warn = threshold;
        self
    }

    /// Adds a hook run at shutdown after the service is marked draining. Hooks run in order;
    /// errors are logged and never stop the shutdown.
    pub fn pre_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.config
            .pre_stop_hooks
            .push(Arc::new(move || Box::pin(hook())));
        self
    }

    /// Adds a hook run once each time [`Server::serve`](crate::Server::serve) starts
    /// listening, with the bound address (port 0 resolved), in order: to tell a developer
    /// where the service is. It runs on the runtime, so it should be quick.
    pub fn on_listening<F>(mut self, hook: F) -> Self
    where
        F: Fn(std::net::SocketAddr) + Send + Sync + 'static,
    {
        self.config.listening_hooks.push(Arc::new(hook));
        self
    }

    /// The total budget of all pre-stop hooks (default 5 s).
    pub fn pre_stop_timeout(mut self, timeout: Duration) -> Self {
        self.config.pre_stop_timeout = timeout;
        self
    }

    /// How long in-flight requests may drain at shutdown (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// How long the last SVID stays in use after a rotation error before identity becomes
    /// unavailable. Without it, the SVID's own expiry is the deadline.
    pub fn identity_grace_period(mut self, grace: Duration) -> Self {
        self.config.identity_grace_period = Some(grace);
        self
    }

    /// How often a [`MetricsSnapshot`](crate::MetricsSnapshot) goes to telemetry (default
    /// 30 s).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.config.metrics_interval = interval;
        self
    }

    /// How long before expiry secrets are renewed (default 10 min; the trigger is
    /// `min(lead, ttl/2)` before expiry, so short-lived secrets renew at half-life).
    pub fn secret_renewal_lead(mut self, lead: Duration) -> Self {
        self.config.secret_renewal_lead = lead;
        self
    }

    /// How many records may wait for the telemetry sink (default 16384).
    pub fn audit_queue_capacity(mut self, capacity: usize) -> Self {
        self.config.audit_queue_capacity = capacity.max(1);
        self
    }

    /// What requests do when the audit queue is full (default [`AuditOverflow::Drop`]).
    pub fn audit_overflow(mut self, overflow: AuditOverflow) -> Self {
        self.config.audit_overflow = overflow;
        self
    }

    /// The admin listener: `GET /livez`, `/readyz` and `/metrics` over plain HTTP (see
    /// [`AdminConfig`]). Off unless set here; [`AdminConfig::default`] listens on
    /// `127.0.0.1:9464`. The bound address is [`Server::admin_addr`](crate::Server::admin_addr).
    ///
    /// ```
    /// use ligand_runtime::{AdminConfig, Config};
    /// let config = Config::builder().admin(AdminConfig::default()).build();
    /// # let _ = config;
    /// ```
    pub fn admin(mut self, admin: AdminConfig) -> Self {
        self.config.admin = admin;
        self
    }

    /// Verifies inbound Transaction Tokens (the `Txn-Token` header) with `config`, before
    /// rate limiting and policy: an invalid token denies the request, a valid one's claims are
    /// the policy's `input.txn` and the handler's [`Ctx::txn`](crate::Ctx::txn). Without it,
    /// a received token is forwarded unchanged but neither verified nor shown to the policy.
    pub fn txn_token(mut self, config: TxnTokenConfig) -> Self {
        self.config.txn_token = Some(config);
        self
    }

    /// Verifies the WIMSE `Workload-Identity-Token` and `Workload-Proof-Token` of inbound
    /// requests with `config`, after the chain and before the Transaction Token, the limiter
    /// and the policy (see [`WimseVerifier`](crate::WimseVerifier) for the checks). Without
    /// it, the headers are ignored. Outbound WIT/WPT headers need no configuration: they are
    /// sent whenever the identity source issues WITs.
    pub fn wimse(mut self, config: WimseConfig) -> Self {
        self.config.wimse = Some(config);
        self
    }

    /// The gateway listener and the inline Context Service for gateway services
    /// (`#[ligand::service(gateway)]`): TLS 1.3 without client certificates on its own
    /// address, each request authenticated by its access token, which is exchanged for a
    /// Transaction Token (see [`GatewayConfig`](crate::GatewayConfig)).
    pub fn gateway(mut self, config: crate::gateway::GatewayConfig) -> Self {
        self.config.gateway = Some(config);
        self
    }

    /// The finished configuration.
    pub fn build(self) -> Config {
        self.config
    }
}
