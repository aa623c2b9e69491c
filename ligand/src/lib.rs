//! Ligand: a Zero Trust microservice framework that binds into the service it protects.
//!
//! A service annotates its handlers with `#[ligand::service]` and its entry point with
//! `#[ligand::main]`; the macros generate the only paths into the process: mTLS 1.3 with SPIFFE
//! identities, a policy decision on every request and rate limits before policy, all
//! fail-closed. `cargo expand` shows exactly what was generated.
//!
//! ```no_run
//! use ligand::prelude::*;
//!
//! struct Hello;
//!
//! #[ligand::service]
//! impl Hello {
//!     #[get("/hello/{name}")]
//!     async fn hello(&self, ctx: Ctx, Path(name): Path<String>) -> String {
//!         format!("hello {name}, you are {}", ctx.caller().principal().unwrap_or_default())
//!     }
//! }
//!
//! async fn config() -> Result<ligand::Config, ligand::BoxError> {
//!     Ok(ligand::Config::builder()
//!         .binding(ligand::HttpBinding::new("0.0.0.0:8443"))
//!         // .identity(..) and .policy(..) are required: without them init refuses to start
//!         // and names both.
//!         .build())
//! }
//!
//! #[ligand::main(config = config)]
//! async fn main(server: Server) -> ligand::Result<()> {
//!     server.serve(Hello).await?;
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]

mod cli;
#[cfg(feature = "embedded")]
pub mod config;
mod logging;
#[cfg(feature = "otel")]
mod telemetry;

pub use ligand_runtime::audit;
pub use ligand_runtime::trace;

pub use self::logging::{LogFormat, log_subscriber};
#[cfg(feature = "otel")]
pub use self::telemetry::{log_subscriber_exporting, shutdown_telemetry};

pub use ligand_macros::{allow, client, delete, get, main, patch, post, put, secret, service};

// The service-facing API: what a service's own code names. Provider contracts live in
// `provider`; nothing here can change the workload's identity, trust or health.
pub use ligand_runtime::{
    ATTACHMENT_SEPARATOR, AdminConfig, AuditOverflow, BoxError, CHAIN_CLOCK_LEEWAY, CHAIN_HEADER,
    Chain, ChainError, ChainRejection, ChainVersion, Config, ConfigBuilder, Ctx,
    DEFAULT_ADMIN_LISTEN, DEFAULT_AUDIT_QUEUE_CAPACITY, DEFAULT_CHAIN_TOKEN_LIFETIME,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_METRICS_INTERVAL, DEFAULT_POLICY_LATENCY_WARN,
    DEFAULT_POLICY_TIMEOUT, DEFAULT_PRE_STOP_TIMEOUT, DEFAULT_SECRET_RENEWAL_LEAD, Denial, Denied,
    Enforced, Error, ExposeSecret, HttpBinding, InboundRequest, InitError, JsonLinesTelemetry,
    Link, LogLinesTelemetry, MAX_CHAIN_HEADER_LEN, MAX_CHAIN_LINKS, MAX_CHAIN_TOKEN_LIFETIME,
    MissingRequiredProviders, Monitor, PathParams, ProviderKind, RequestId, RequestLine,
    RequestPath, Resource, Result, Secret, SecretError, SecretSlice, SecretString, ServeError,
    Server, ServiceRegistration, ShadowDecisions, SpiffeId, State, TracingTelemetry, TrustDomain,
    VerifiedChain, decode_secret, denial_response, init, init_trust_boundary,
};
/// Gateways (`#[ligand::service(gateway)]`): external callers over TLS without a client
/// certificate, authenticated by their access token (`Config::builder().gateway(..)`, or
/// `[gateway]` in `ligand.toml`).
pub use ligand_runtime::{
    AccessTokenRejection, GatewayConfig, TOKEN_EXCHANGE_ACTION, TOKEN_EXCHANGE_GRANT,
    TXN_TOKEN_TYPE,
};
pub use ligand_runtime::{Action, CallBuilder, CallError, Caller, Client, Service};
/// Outbound resilience settings (`Config::builder().outbound_resilience(..)`, or the
/// `[outbound.*]` sections of `ligand.toml`).
pub use ligand_runtime::{
    BalancerConfig, BreakerConfig, BulkheadConfig, LatencyEjection, OutlierConfig,
    ResilienceConfig, ResilienceConfigError, RetryConfig, Strategy, SuccessRateEjection,
    TargetResilience, UnknownStrategy,
};
/// WIMSE workload-to-workload authentication (draft-ietf-wimse-s2s-protocol): the
/// `Workload-Identity-Token` and `Workload-Proof-Token` sent on every outbound call when the
/// identity source issues WITs, and verified inbound (`Config::builder().wimse(..)`, or
/// `[wimse]` in `ligand.toml`).
pub use ligand_runtime::{
    Clock, DEFAULT_MAX_WPT_LIFETIME, DEFAULT_REPLAY_CACHE_CAPACITY, DEFAULT_WIMSE_LEEWAY,
    DEFAULT_WPT_LIFETIME, InMemoryReplayCache, MAX_WPT_LIFETIME, Recorded, ReplayCache,
    ReplayCacheError, ReplayKey, SystemClock, VerifiedWorkload, WIT_HEADER, WIT_TYP, WPT_HEADER,
    WPT_TYP, WimseConfig, WimseConfigError, WimseRejection, WimseVerifier,
};
/// Transaction Tokens (draft-ietf-oauth-transaction-tokens-08): verification of the
/// `Txn-Token` header (`Config::builder().txn_token(..)`, or `[txn_token]` in `ligand.toml`).
pub use ligand_runtime::{
    DEFAULT_TXN_LEEWAY, MAX_TXN_TOKEN_LEN, TXN_TOKEN_HEADER, TXN_TOKEN_TYP, TxnClaims,
    TxnConfigError, TxnRejection, TxnTokenConfig, TxnVerifier,
};
/// The inline Context Service: a trust-boundary service exchanges an identity provider's
/// access token for a Transaction Token, then sends it on its calls.
pub use ligand_runtime::{
    DEFAULT_TXN_LIFETIME, MintError, MintedTxnToken, SubjectTokenConfig, TxnMintRequest, TxnMinter,
};

/// The contracts providers implement (identity, policy, rate limiting, secrets, telemetry,
/// bindings, registries and registrars, bundle fetchers) and the types they exchange with the framework.
/// A service needs them only to plug in a provider of its own.
pub mod provider {
    pub use ligand_runtime::tls;
    pub use ligand_runtime::{
        Binding, BindingArgs, BundleFetcher, BundleUpdate, DecisionEvent, Endpoint,
        EnforcedService, EvalRequest, EvalResponse, FetchWitRequest, FetchWitResponse,
        HealthTransitionEvent, Limit, LimitError, LimitOverride, LimitRules, ListeningSignal,
        MetricsSnapshot, MtlsAcceptor, OutboundCallEvent, OutboundOutcome, PeerService,
        PolicyBundle, PolicyEngine, PolicyUpdate, ProviderContext, ProviderError, RateLimitEvent,
        RateLimitRequest, RateLimitResponse, RateLimiter, Registration, RegistrationState,
        SecretAccess, SecretAccessEvent, SecretRevocation, SecretValue, Secrets, SecretsCache,
        ServiceRegistrar, ServiceRegistry, StdoutWriter, Telemetry, TrustBundles, VerifiedPeer,
        WorkloadIdentity, X509Context, X509ContextUpdate, X509Svid, stdout_writer,
    };
}

/// Test doubles with real cryptography: a CA that mints SVIDs, in-process identities,
/// allow-list policies, scripted limiters, recording telemetry and an mTLS client.
#[cfg(feature = "testkit")]
pub use ligand_runtime::testkit;

/// Request extractors usable as handler arguments.
pub mod extract {
    pub use ligand_runtime::__private::axum::Json;
    pub use ligand_runtime::__private::axum::extract::{Path, Query};
}

/// Response types usable as handler return values.
pub mod response {
    pub use ligand_runtime::__private::axum::Json;
    pub use ligand_runtime::__private::axum::http::StatusCode;
    pub use ligand_runtime::__private::axum::response::{IntoResponse, Response};
}

/// What a service module needs: `use ligand::prelude::*;`.
pub mod prelude {
    pub use crate::extract::{Json, Path, Query};
    pub use crate::response::{IntoResponse, Response, StatusCode};
    pub use crate::{
        CallError, Ctx, ExposeSecret, SecretString, Server, delete, get, patch, post, put,
    };
}

/// Installs the log subscriber `#[ligand::main]` uses, unless one is already set: the level
/// from `RUST_LOG`, else `[log] level` of `ligand.toml`, else `info`; human-readable lines
/// (colored only on a terminal and without `NO_COLOR`), or JSON lines with
/// `LIGAND_LOG_FORMAT=json` or `[log] format = "json"` (see [`LogFormat`]), on standard
/// output. The audit writer's lines reach standard output in batches, so a busy service makes
/// one `write` per batch rather than one per decision.
///
/// A service with its own `main` calls it first, or installs its own subscriber.
pub fn init_logging() {
    let (format, level) = logging::settings();
    #[cfg(feature = "otel")]
    let export = logging::telemetry_settings().and_then(telemetry::layer);
    #[cfg(not(feature = "otel"))]
    let export = None;
    let subscriber = logging::subscriber(format, &level, ligand_runtime::stdout_writer, export);
    // `try_init` also routes the `log` crate's records (rustls's, for one) to the subscriber.
    let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
}

#[doc(hidden)]
pub mod __private {
    pub use crate::init_logging;
    pub use ligand_runtime::__private::axum::http::Method;
    pub use ligand_runtime::__private::*;

    /// The entry point `#[ligand::main]` calls: the command line (`--help`, `--validate`),
    /// then the runtime's `run_main_with_allowances`, which this name shadows.
    pub fn run_main_with_allowances<C, CF, M, MF, E>(
        config: C,
        user_main: M,
        allowances: &'static [Allowance],
    ) -> Result<(), crate::Error>
    where
        C: FnOnce() -> CF,
        CF: ::std::future::Future<Output = Result<crate::Config, E>>,
        E: Into<crate::BoxError>,
        M: FnOnce(crate::Server) -> MF,
        MF: ::std::future::Future<Output = Result<(), crate::Error>>,
    {
        crate::cli::run(config, user_main, allowances)
    }
}
