//! Startup (fail-closed), serving and the ordered shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use spiffe::SpiffeId;
use tokio::sync::{Mutex, OnceCell, watch};
use tokio_util::sync::CancellationToken;

use super::registration::Registrar;
use super::{Inner, Server, Settings};
use crate::admin::{AdminListener, AuditMetrics};
use crate::binding::{BindingArgs, EnforcedService, ListeningSignal};
use crate::chain::{ChainSigner, ChainVerifier};
use crate::config::Config;
use crate::error::{InitError, MissingRequiredProviders, ProviderError, ServeError};
use crate::health::{Monitor, ProviderKind, State};
use crate::outbound::{FleetBudget, Transport, TransportSettings};
use crate::provider::ProviderContext;
use crate::secrets::SecretsCache;
use crate::service::Service;
use crate::telemetry::{AuditQueue, QueuedTelemetry, Telemetry, TracingTelemetry};
use crate::tls::{IdentityState, MtlsAcceptor};

/// Initializes a service reached by its peers over mTLS. Fail-closed: every missing required
/// provider (identity, policy, binding) is reported at once; no SVID, an unusable SVID or
/// bundle, or a failed initial policy bundle is an error, and the process must not serve.
pub async fn init(config: Config) -> Result<Server, InitError> {
    start(config, true).await
}

/// Initializes a trust-boundary service: one that authenticates external callers itself and
/// calls [`Server::enforce`] from its own handlers. A binding is optional; identity
/// and policy are still required.
pub async fn init_trust_boundary(config: Config) -> Result<Server, InitError> {
    start(config, false).await
}

async fn start(config: Config, binding_required: bool) -> Result<Server, InitError> {
    config
        .resilience
        .validate()
        .map_err(|e| InitError::Config(format!("outbound resilience: {e}")))?;
    let fleet = config
        .fleet_retry_budget
        .as_ref()
        .map(|(store, sync)| FleetBudget::new(store.clone(), &config.resilience.retry, *sync))
        .transpose()
        .map_err(|e| InitError::Config(format!("outbound resilience: {e}")))?;
    let mut missing = Vec::new();
    if config.identity.is_none() {
        missing.push(ProviderKind::Identity);
    }
    if config.policy.is_none() {
        missing.push(ProviderKind::Policy);
    }
    if binding_required && config.binding.is_none() {
        missing.push(ProviderKind::Binding);
    }
    let (Some(identity), Some(policy), true) = (config.identity, config.policy, missing.is_empty())
    else {
        return Err(MissingRequiredProviders { missing }.into());
    };
    let want = config
        .spiffe_id
        .as_deref()
        .map(SpiffeId::new)
        .transpose()
        .map_err(|e| InitError::Config(format!("spiffe_id: {e}")))?;

    // Every record reaches the sink through the audit queue's writer thread, never on the
    // request path; the monitor and the secrets cache record through the same queue.
    let sink: Arc<dyn Telemetry> = config
        .telemetry
        .unwrap_or_else(|| Arc::new(TracingTelemetry));
    // The writer counts what it delivers for the admin listener's metrics, off the request
    // path; without a listener nothing is counted.
    let metrics = config
        .admin
        .address()
        .map(|_| Arc::new(AuditMetrics::new()));
    let audit = AuditQueue::start(
        sink,
        config.audit_queue_capacity,
        config.audit_overflow,
        metrics.clone(),
    )
    .map_err(|e| InitError::Config(format!("starting the audit writer thread: {e}")))?;
    let telemetry: Arc<dyn Telemetry> = Arc::new(QueuedTelemetry(audit.clone()));
    let mut kinds = vec![
        ProviderKind::Identity,
        ProviderKind::Policy,
        ProviderKind::Telemetry,
    ];
    let optional = [
        (ProviderKind::Binding, config.binding.is_some()),
        (ProviderKind::RateLimiter, config.rate_limiter.is_some()),
        (ProviderKind::Secrets, config.secrets.is_some()),
        (ProviderKind::ServiceRegistry, config.registry.is_some()),
        (ProviderKind::ServiceRegistrar, config.registrar.is_some()),
        (ProviderKind::BundleFetcher, config.bundle_fetcher.is_some()),
        (ProviderKind::RetryBudget, fleet.is_some()),
    ];
    kinds.extend(optional.iter().filter(|(_, on)| *on).map(|(kind, _)| *kind));
    let monitor = Arc::new(Monitor::new(kinds, telemetry.clone()));
    audit.attach(&monitor);
    monitor.set(ProviderKind::Telemetry, State::Ready, None);

    // Probes answer from here on: 503 on /readyz until the service serves. Dropped (and so
    // stopped) if init fails below.
    let admin = match (config.admin.address(), &metrics) {
        (Some(address), Some(metrics)) => {
            Some(AdminListener::start(address, monitor.clone(), audit.clone(), metrics).await?)
        }
        _ => None,
    };

    // Identity first: nothing else may start without it.
    let context = identity.fetch_x509_context().await.map_err(|e| {
        monitor.set(
            ProviderKind::Identity,
            State::Unavailable,
            Some(e.to_string()),
        );
        InitError::Identity(e)
    })?;
    if context.svids.is_empty() {
        monitor.set(
            ProviderKind::Identity,
            State::Unavailable,
            Some("no SVIDs".into()),
        );
        return Err(InitError::NoSvids);
    }
    let tls = Arc::new(IdentityState::new(&context, want.as_ref())?);
    monitor.set(ProviderKind::Identity, State::Ready, None);
    let service_id: Arc<str> = tls.spiffe_id().to_string().into();
    // A signing sink (the chained audit log) signs its checkpoints with the live SVID key.
    audit.attach_identity(tls.clone());
    if let Some(admin) = &admin {
        admin.attach_identity(tls.clone());
    }
    // draft-ietf-oauth-transaction-tokens-08 §4.1.2: a token's `aud` is the trust domain.
    let txn_verifier = config
        .txn_token
        .as_ref()
        .map(|txn| crate::txn::TxnVerifier::new(txn, tls.spiffe_id().trust_domain_name()))
        .transpose()
        .map_err(|e| InitError::Config(format!("txn_token: {e}")))?;
    let wimse_verifier = config
        .wimse
        .as_ref()
        .map(crate::wimse::WimseVerifier::new)
        .transpose()
        .map_err(|e| InitError::Config(format!("wimse: {e}")))?;
    if let Some(verifier) = &wimse_verifier {
        verifier.start().await.map_err(|e| {
            InitError::Config(format!("wimse: {}", super::rotation::error_chain(&e)))
        })?;
    }

    // Providers that reach a backend connect now, with the identity in hand; any failure is
    // fatal (an unreachable configured backend must not leave the service half-enforced).
    let context = ProviderContext::new(tls.clone());
    started(ProviderKind::Policy, policy.start(&context), &monitor).await?;
    // A shadow policy is never enforced, but one that is configured and cannot start is a
    // configuration error the operator should see now, not a silent absence of comparisons.
    let shadow = match config.shadow_policy {
        Some(engine) => {
            started(ProviderKind::Policy, engine.start(&context), &monitor).await?;
            Some(Arc::new(super::shadow::Shadow::new(
                engine,
                config.policy_timeout,
                metrics.clone(),
            )))
        }
        None => None,
    };
    if let Some(fetcher) = &config.bundle_fetcher {
        started(
            ProviderKind::BundleFetcher,
            fetcher.start(&context),
            &monitor,
        )
        .await?;
    }
    if let Some(limiter) = &config.rate_limiter {
        started(ProviderKind::RateLimiter, limiter.start(&context), &monitor).await?;
    }
    if let Some(secrets) = &config.secrets {
        started(ProviderKind::Secrets, secrets.start(&context), &monitor).await?;
    }
    if let Some(registry) = &config.registry {
        started(
            ProviderKind::ServiceRegistry,
            registry.start(&context),
            &monitor,
        )
        .await?;
    }

    if let Some((registrar, _)) = &config.registrar {
        started(
            ProviderKind::ServiceRegistrar,
            registrar.start(&context),
            &monitor,
        )
        .await?;
    }

    // The initial policy bundle, when policy comes from a bundle server.
    if let Some(fetcher) = &config.bundle_fetcher {
        let bundle = fetcher
            .fetch(None)
            .await
            .map_err(|source| InitError::Provider {
                kind: ProviderKind::BundleFetcher,
                source,
            })?
            .filter(|b| !b.bytes.is_empty())
            .ok_or_else(|| InitError::Provider {
                kind: ProviderKind::BundleFetcher,
                source: ProviderError::Invalid("empty initial policy bundle".into()),
            })?;
        policy
            .reload(&bundle.bytes)
            .await
            .map_err(|source| match source {
                ProviderError::NotSupported => InitError::Config(
                    "a bundle fetcher is configured but the policy engine does not support reload"
                        .into(),
                ),
                source => InitError::Provider {
                    kind: ProviderKind::Policy,
                    source,
                },
            })?;
        monitor.set(ProviderKind::BundleFetcher, State::Ready, None);
    }
    monitor.set(ProviderKind::Policy, State::Ready, None);
    // The binding is Ready once it listens, the registrar once it has registered.
    let later = [
        ProviderKind::Binding,
        ProviderKind::BundleFetcher,
        ProviderKind::ServiceRegistrar,
    ];
    for (kind, configured) in optional {
        if configured && !later.contains(&kind) {
            monitor.set(kind, State::Ready, None);
        }
    }

    let watches = CancellationToken::new();
    let secrets_cache = config.secrets.clone().map(|backend| {
        SecretsCache::new(
            backend,
            config.secret_renewal_lead,
            monitor.clone(),
            telemetry.clone(),
            watches.clone(),
        )
    });
    if let (Some(admin), Some(cache)) = (&admin, &secrets_cache) {
        admin.attach_secrets(cache.clone());
    }
    // WIT/WPT on outbound calls when the identity source issues WITs; a source that supports
    // them but fails now fails init, like any configured backend.
    let wpt_signer = crate::wimse::sign::WptSigner::start(identity.clone(), watches.clone())
        .await
        .map_err(InitError::Identity)?;
    let transport = Arc::new(
        Transport::new(
            tls.clone(),
            config.registry.clone(),
            audit.clone(),
            ChainSigner::new().with_version(config.chain_version),
            wpt_signer,
            TransportSettings {
                timeout: config.call_timeout,
                max_connection_age: config.outbound_max_connection_age,
            },
            config.resilience,
        )
        .with_fleet_budget(fleet.inspect(|fleet| {
            // Ends by itself once the transport, the budget's only owner, is dropped.
            let monitor = monitor.clone();
            drop(fleet.spawn_reporting(move |state, cause| {
                monitor.set(ProviderKind::RetryBudget, state, cause);
            }));
        })),
    );
    let server = Server {
        inner: Arc::new(Inner {
            identity,
            policy,
            shadow,
            binding: config.binding,
            rate_limiter: config.rate_limiter,
            telemetry,
            audit,
            secrets: config.secrets,
            secrets_cache,
            registry: config.registry,
            registrar: config
                .registrar
                .map(|(provider, published)| Registrar::new(provider, published)),
            transport,
            bundle_fetcher: config.bundle_fetcher,
            tls,
            chain_verifier: ChainVerifier::new(),
            txn_verifier,
            wimse_verifier,
            gateway: config.gateway.map(|config| super::Gateway {
                binding: crate::binding::HttpBinding::new(config.listen.clone()),
                config,
                serving: AtomicBool::new(false),
                listening: watch::channel(None).0,
            }),
            service_id,
            monitor,
            settings: Settings {
                policy_timeout: config.policy_timeout,
                policy_latency_warn: config.policy_latency_warn,
                pre_stop_timeout: config.pre_stop_timeout,
                drain_timeout: config.drain_timeout,
                identity_grace_period: config.identity_grace_period,
                metrics_interval: config.metrics_interval,
            },
            pre_stop_hooks: config.pre_stop_hooks,
            listening_hooks: config.listening_hooks,
            serving: AtomicBool::new(false),
            listening: watch::channel(None).0,
            watches,
            watch_tasks: Mutex::new(Vec::new()),
            closed: OnceCell::new(),
            admin,
        }),
    };
    server.start_watches().await;
    tracing::info!(spiffe_id = %server.inner.service_id, "ligand initialized");
    Ok(server)
}

/// Awaits one provider's `start`; a failure marks it Unavailable and fails init.
async fn started(
    kind: ProviderKind,
    start: impl std::future::Future<Output = Result<(), ProviderError>>,
    monitor: &Monitor,
) -> Result<(), InitError> {
    start.await.map_err(|source| {
        monitor.set(kind, State::Unavailable, Some(source.to_string()));
        InitError::Provider { kind, source }
    })
}

impl Server {
    /// Serves `service` through the configured binding until [`Server::close`]. Only services
    /// generated by `#[ligand::service]` can be served: there is no way to serve a raw router
    /// or to open a listener of one's own.
    ///
    /// A gateway service (`#[ligand::service(gateway)]`) is served on the gateway listener
    /// instead ([`ConfigBuilder::gateway`](crate::ConfigBuilder::gateway)); a server may serve
    /// one gateway service and one mTLS service at the same time.
    pub async fn serve<S: Service>(&self, service: S) -> Result<(), ServeError> {
        let inner = &*self.inner;
        if inner.closed.initialized() || inner.watches.is_cancelled() {
            return Err(ServeError::Closed);
        }
        let (router, gateway) = crate::service::into_router(service, self);
        if gateway {
            return self.serve_gateway(router).await;
        }
        let binding = inner.binding.clone().ok_or(ServeError::NoBinding)?;
        if inner.serving.swap(true, Ordering::AcqRel) {
            return Err(ServeError::AlreadyServing);
        }
        let config = inner
            .tls
            .server_config()
            .map_err(|e| ServeError::Binding(e.into()))?;
        let args = BindingArgs {
            acceptor: MtlsAcceptor::new(config, inner.tls.clone()),
            service: EnforcedService::new(router),
            listening: ListeningSignal::new(inner.monitor.clone(), inner.listening.clone()),
        };
        if !inner.listening_hooks.is_empty() {
            let hooks = inner.listening_hooks.clone();
            let mut listening = inner.listening.subscribe();
            // Ends with the server (the sender drops) if the binding never listens.
            tokio::spawn(async move {
                let addr = match listening.wait_for(Option::is_some).await {
                    Ok(addr) => *addr,
                    Err(_) => return,
                };
                if let Some(addr) = addr {
                    for hook in &hooks {
                        hook(addr);
                    }
                }
            });
        }
        let serving = binding.serve(args);
        tokio::pin!(serving);
        let result = tokio::select! {
            result = &mut serving => result,
            registered = self.register_when_listening() => match registered {
                Ok(()) => serving.await,
                Err(error) => {
                    // Fail closed: an instance its peers cannot find must not linger serving.
                    // `shutdown` waits for `serve` to return, so both are driven together.
                    let _ = tokio::join!(binding.shutdown(std::time::Duration::ZERO), serving);
                    // `listening` keeps the address until close: `local_addr` waiting for it
                    // must not miss the moment it was set.
                    inner.monitor.set(
                        ProviderKind::Binding,
                        State::Unavailable,
                        Some("registration failed".into()),
                    );
                    return Err(ServeError::Registration(error));
                }
            },
        };
        result.map_err(|e| {
            inner.monitor.set(
                ProviderKind::Binding,
                State::Unavailable,
                Some(e.to_string()),
            );
            inner.listening.send_replace(None);
            ServeError::Binding(e)
        })
    }

    /// Serves a gateway's router on the gateway listener until [`Server::close`].
    async fn serve_gateway(&self, router: axum::Router) -> Result<(), ServeError> {
        let gateway = self.inner.gateway.as_ref().ok_or(ServeError::NoGateway)?;
        // Checked as `[gateway] sts_path` is at load (the router would panic), before the
        // listener counts as serving.
        if let Some(path) = &gateway.config.sts_path
            && !crate::gateway::sts::is_literal_path(path)
        {
            return Err(ServeError::Binding(
                format!("gateway sts_path {path:?} is not a literal path such as \"/token\"")
                    .into(),
            ));
        }
        if gateway.serving.swap(true, Ordering::AcqRel) {
            return Err(ServeError::AlreadyServing);
        }
        let config = gateway
            .config
            .server_config(&self.inner.tls)
            .map_err(|e| ServeError::Binding(e.into()))?;
        // The token-exchange endpoint first; everything else goes to the service's router
        // (and its own fallback), so the endpoint cannot clash with a route.
        let router = match &gateway.config.sts_path {
            None => router,
            Some(path) => {
                let (server, sts_path) = (self.clone(), path.clone());
                axum::Router::new()
                    .route(
                        path,
                        axum::routing::post(move |request: axum::extract::Request| {
                            crate::gateway::sts::exchange(server.clone(), sts_path.clone(), request)
                        }),
                    )
                    .fallback_service(router)
            }
        };
        gateway
            .binding
            .serve_gateway(
                tokio_rustls::TlsAcceptor::from(config),
                EnforcedService::new(router),
                &gateway.listening,
            )
            .await
            .map_err(|e| {
                gateway.listening.send_replace(None);
                ServeError::Binding(e)
            })
    }

    /// Shuts the server down in the documented order:
    ///
    /// 1. the binding becomes Draining and every other provider Unavailable, so health checks
    ///    see the transition before connections close;
    /// 2. pre-stop hooks run in order within the pre-stop budget (errors are logged);
    /// 3. the registrar marks this instance unhealthy (within 5 s), then deregisters it
    ///    (within 10 s), so callers stop routing here before the binding drains;
    /// 4. the binding stops accepting and drains in-flight requests within the drain deadline
    ///    (the identity keeps rotating meanwhile, so live requests see a valid certificate);
    /// 5. the outbound transport refuses new calls and drains the calls in flight within the
    ///    drain deadline;
    /// 6. identity rotation and bundle watches stop;
    /// 7. the binding closes and becomes Unavailable;
    /// 8. providers close in reverse dependency order: bundle fetcher, policy, identity,
    ///    rate limiter, secrets, registry, registrar;
    /// 9. telemetry closes, having observed everything above;
    /// 10. the admin listener closes last, so probes and scrapes see the whole drain.
    ///
    /// Idempotent: later (or concurrent) calls wait for the first and return.
    pub async fn close(&self) {
        self.inner.closed.get_or_init(|| self.shutdown()).await;
    }

    async fn shutdown(&self) {
        let inner = &*self.inner;
        let monitor = &inner.monitor;
        tracing::info!(spiffe_id = %inner.service_id, "shutting down");
        monitor.begin_shutdown();
        if inner.binding.is_some() {
            monitor.set(ProviderKind::Binding, State::Draining, None);
        }
        for kind in ProviderKind::ALL {
            if kind != ProviderKind::Binding && monitor.provider(kind).is_some() {
                monitor.set(kind, State::Unavailable, None);
            }
        }

        let hooks = async {
            for (i, hook) in inner.pre_stop_hooks.iter().enumerate() {
                if let Err(error) = hook().await {
                    tracing::warn!(hook = i, %error, "pre-stop hook failed");
                }
            }
        };
        if tokio::time::timeout(inner.settings.pre_stop_timeout, hooks)
            .await
            .is_err()
        {
            tracing::warn!(budget = ?inner.settings.pre_stop_timeout, "pre-stop hooks cut short");
        }
        self.withdraw_registration().await;

        if let Some(binding) = &inner.binding
            && inner.serving.load(Ordering::Acquire)
        {
            binding.shutdown(inner.settings.drain_timeout).await;
        }
        if let Some(gateway) = &inner.gateway
            && gateway.serving.load(Ordering::Acquire)
        {
            gateway
                .binding
                .stop_and_drain(inner.settings.drain_timeout)
                .await;
            gateway.listening.send_replace(None);
        }
        // Outbound drains after inbound: requests still finishing above may call out, and
        // calls still running here see a valid certificate (rotation stops only below).
        let running = inner.transport.shutdown(inner.settings.drain_timeout).await;
        if running > 0 {
            tracing::warn!(
                running,
                "outbound calls still running at the drain deadline"
            );
        }

        inner.watches.cancel();
        for task in inner.watch_tasks.lock().await.drain(..) {
            let _ = task.await;
        }

        if let Some(binding) = &inner.binding {
            binding.close().await;
            inner.listening.send_replace(None);
            monitor.set(ProviderKind::Binding, State::Unavailable, None);
        }

        let log = |kind: ProviderKind, result: Result<(), ProviderError>| {
            if let Err(error) = result {
                tracing::warn!(%kind, %error, "provider close failed");
            }
        };
        if let Some(fetcher) = &inner.bundle_fetcher {
            log(ProviderKind::BundleFetcher, fetcher.close().await);
        }
        log(ProviderKind::Policy, inner.policy.close().await);
        if let Some(shadow) = &inner.shadow {
            log(ProviderKind::Policy, shadow.engine().close().await);
        }
        log(ProviderKind::Identity, inner.identity.close().await);
        if let Some(limiter) = &inner.rate_limiter {
            log(ProviderKind::RateLimiter, limiter.close().await);
        }
        if let Some(secrets) = &inner.secrets {
            log(ProviderKind::Secrets, secrets.close().await);
        }
        if let Some(registry) = &inner.registry {
            log(ProviderKind::ServiceRegistry, registry.close().await);
        }
        if let Some(registrar) = &inner.registrar {
            log(
                ProviderKind::ServiceRegistrar,
                registrar.provider().close().await,
            );
        }
        // The writer delivers what is queued, then closes the sink.
        inner.audit.close().await;
        if let Some(admin) = &inner.admin {
            admin.close().await;
        }
        tracing::info!(spiffe_id = %inner.service_id, "shut down");
    }
}
