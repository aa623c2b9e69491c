//! The Ligand engine: provider contracts, fail-closed initialization, the enforcement pipeline,
//! mTLS with SPIFFE identities, the HTTP binding and the health monitor.
//!
//! Services depend on the `ligand` facade crate, not on this one. Provider crates implement
//! the contracts defined here ([`WorkloadIdentity`], [`PolicyEngine`], [`RateLimiter`],
//! [`Telemetry`], [`Secrets`], [`ServiceRegistry`], [`BundleFetcher`], [`Binding`]).
//!
//! Every inbound request runs the same pipeline: the binding accepts a TLS 1.3 connection with
//! a client certificate verified as an X.509-SVID → the peer's SPIFFE ID becomes the last link
//! of the chain → rate limiter → policy (bounded by a timeout) → handler. Any error denies.
//! The upstream links come from the signed [`CHAIN_HEADER`]: one token per hop, the sending
//! hop's verified with the certificates of the mTLS connection it came on (wire-format version
//! 2; [`ChainVersion`] and `ConfigBuilder::outbound_chain_version` for rolling upgrades).
//!
//! ```no_run
//! use ligand_runtime::{Config, HttpBinding, init};
//! # async fn run(identity: impl ligand_runtime::WorkloadIdentity, policy: impl ligand_runtime::PolicyEngine) -> Result<(), ligand_runtime::InitError> {
//! let server = init(
//!     Config::builder()
//!         .identity(identity)
//!         .policy(policy)
//!         .binding(HttpBinding::new("0.0.0.0:8443"))
//!         .build(),
//! )
//! .await?;
//! // server.serve(MyService::new()).await — MyService comes from #[ligand::service].
//! server.close().await;
//! # Ok(()) }
//! ```
//!
//! # Design notes
//!
//! - Provider contracts are `async_trait` traits held as `Arc<dyn …>`: one shape for every
//!   provider, object-safe so that configuration can pick implementations at run time.
//!   [`Telemetry`] alone is synchronous, because it runs on the request path and must not block.
//! - Optional capabilities default to [`ProviderError::NotSupported`], on which the framework
//!   applies the capability's safe default (polling instead of watching, no hot reload).
//! - TLS is not pluggable. The binding receives an [`MtlsAcceptor`] and an [`EnforcedService`];
//!   nothing in this crate can serve plaintext or a router that skips enforcement.

#![forbid(unsafe_code)]

mod admin;
pub mod audit;
mod binding;
mod bundle;
mod chain;
mod config;
mod error;
mod gateway;
mod health;
mod identity;
mod outbound;
mod policy;
mod provider;
mod ratelimit;
mod registry;
mod request;
mod request_id;
mod secrets;
mod server;
mod service;
mod signal;
mod telemetry;
pub mod tls;
pub mod trace;
mod txn;
mod wimse;

#[cfg(feature = "testkit")]
pub mod testkit;

#[doc(hidden)]
pub mod __private;

pub use self::admin::{AdminConfig, DEFAULT_ADMIN_LISTEN};
pub use self::binding::{
    Binding, BindingArgs, EnforcedService, HttpBinding, ListeningSignal, PeerService,
};
pub use self::bundle::{BundleFetcher, BundleUpdate, PolicyBundle};
pub use self::chain::{
    ATTACHMENT_SEPARATOR, CHAIN_CLOCK_LEEWAY, CHAIN_HEADER, Chain, ChainError, ChainRejection,
    ChainSigner, ChainVerifier, ChainVersion, DEFAULT_CHAIN_CACHE_CAPACITY,
    DEFAULT_CHAIN_TOKEN_LIFETIME, Link, MAX_CHAIN_HEADER_LEN, MAX_CHAIN_LINKS,
    MAX_CHAIN_TOKEN_LIFETIME, VerifiedChain,
};
pub use self::config::{
    AuditOverflow, Config, ConfigBuilder, DEFAULT_AUDIT_QUEUE_CAPACITY, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_METRICS_INTERVAL, DEFAULT_POLICY_LATENCY_WARN, DEFAULT_POLICY_TIMEOUT,
    DEFAULT_PRE_STOP_TIMEOUT, DEFAULT_SECRET_RENEWAL_LEAD,
};
pub use self::error::{
    BoxError, Denial, Error, InitError, MissingRequiredProviders, ProviderError, ServeError,
};
pub use self::gateway::sts::{
    TOKEN_EXCHANGE_ACTION, TOKEN_EXCHANGE_GRANT, TXN_TOKEN_TYPE, is_literal_path as is_sts_path,
};
pub use self::gateway::{AccessTokenRejection, GatewayConfig};
pub use self::health::{Monitor, ProviderKind, State};
pub use self::identity::{
    FetchWitRequest, FetchWitResponse, TrustBundles, WorkloadIdentity, X509Context,
    X509ContextUpdate, X509Svid,
};
pub use self::outbound::dial;
pub use self::outbound::{
    BalancerConfig, BreakerConfig, BulkheadConfig, CallBuilder, CallError, Caller, Client,
    DEFAULT_CALL_TIMEOUT, DEFAULT_FLEET_SYNC, DEFAULT_MAX_CONNECTION_AGE, FleetBudget, FleetDelta,
    FleetRetryBudget, FleetSyncError, FleetTotals, LatencyEjection, MAX_RESPONSE_BODY,
    OutlierConfig, ResilienceConfig, ResilienceConfigError, RetryConfig, Strategy,
    SuccessRateEjection, TXN_TOKEN_HEADER, TargetBudget, TargetResilience, UnknownStrategy,
};
pub use self::policy::{EvalRequest, EvalResponse, PolicyEngine, PolicyUpdate};
pub use self::provider::ProviderContext;
pub use self::ratelimit::{
    Limit, LimitError, LimitOverride, LimitRules, RateLimitRequest, RateLimitResponse, RateLimiter,
};
pub use self::registry::{
    Endpoint, Registration, RegistrationState, ServiceRegistrar, ServiceRegistration,
    ServiceRegistry,
};
pub use self::request::{Action, InboundRequest, PathParams, RequestLine, RequestPath, Resource};
pub use self::request_id::RequestId;
pub use self::secrets::{
    Secret, SecretError, SecretRevocation, SecretValue, Secrets, SecretsCache, decode_secret,
};
pub use self::server::{Denied, Enforced, Server, ShadowDecisions, init, init_trust_boundary};
pub use self::service::{Ctx, Service, denial_response};
pub use self::telemetry::{
    DecisionEvent, HealthTransitionEvent, JsonLinesTelemetry, LogLinesTelemetry, MetricsSnapshot,
    OutboundCallEvent, OutboundOutcome, RateLimitEvent, SecretAccess, SecretAccessEvent,
    StdoutWriter, Telemetry, TracingTelemetry, stdout_writer,
};
pub use self::tls::{MtlsAcceptor, VerifiedPeer};
pub use self::txn::{
    DEFAULT_TXN_LEEWAY, DEFAULT_TXN_LIFETIME, MAX_TXN_TOKEN_LEN, MintError, MintedTxnToken,
    SubjectTokenConfig, TXN_TOKEN_TYP, TxnClaims, TxnConfigError, TxnMintRequest, TxnMinter,
    TxnRejection, TxnTokenConfig, TxnVerifier,
};
pub use self::wimse::{
    Clock, DEFAULT_MAX_WPT_LIFETIME, DEFAULT_REPLAY_CACHE_CAPACITY, DEFAULT_WIMSE_LEEWAY,
    DEFAULT_WPT_LIFETIME, InMemoryReplayCache, MAX_WPT_LIFETIME, Recorded, ReplayCache,
    ReplayCacheError, ReplayKey, SystemClock, VerifiedWorkload, WIT_HEADER, WIT_TYP, WPT_HEADER,
    WPT_TYP, WimseConfig, WimseConfigError, WimseRejection, WimseVerifier,
};
pub use secrecy::{ExposeSecret, SecretSlice, SecretString};
pub use spiffe::{SpiffeId, TrustDomain};

/// The result of a Ligand `main`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
