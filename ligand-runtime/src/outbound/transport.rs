//! The one outbound transport: bulkhead → circuit breaker → load-balanced endpoint (skipping
//! ejected ones) → pooled connection (HTTP/2 when the peer offers it, HTTP/1.1 keep-alive
//! otherwise) → mTLS dial that presents the current SVID and accepts exactly the expected
//! SPIFFE ID → outcome recorded (latency, outlier detection, breaker) → retry within the
//! budget, all within the per-call timeout. The order and the defaults of each stage are
//! documented in [`resilience`](super::resilience).
//!
//! Each target has one pool per generation of the workload's SVID: a call signs its chain
//! token with the SVID current when it starts and is sent over a connection presenting that
//! same SVID, so the receiver can verify a version 2 token (which names its signer's
//! certificate) against the certificate of the connection. The first call after a rotation
//! opens the new generation's pool, and the previous pool closes once its last call ends, so
//! a rotation reaches new connections at once; a pooled connection is retired once it is
//! older than the maximum age or its peer's certificate expires, so none outlives the
//! identity it was verified with. Each pool is a [`Dialer`](super::dial::Dialer): its
//! connector is the only place that opens a socket, and it only ever returns a verified TLS
//! 1.3 stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::uri::{InvalidUri, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Frame;
use spiffe::SpiffeId;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use arc_swap::ArcSwap;

use super::client::{CallError, classify};
use super::dial::{By, ClientAuth, DialError, Dialer, ServerAuth};
use super::resilience::balance::Pool;
use super::resilience::breaker::{BreakerError, Transition};
use super::resilience::config::ResilienceConfig;
use super::resilience::fleet::FleetBudget;
use super::resilience::outlier::OutlierEvent;
use super::resilience::slot::Slot;
use super::resilience::stack::{Ended, Refusal, Stack, Trace};
use super::resilience::{Outcome, Sink};
use crate::admin::AuditMetrics;
use crate::chain::{CHAIN_HEADER, ChainMemo, ChainSigner, VerifiedChain};
use crate::registry::{Endpoint, ServiceRegistry};
use crate::telemetry::{AuditQueue, OutboundCallEvent, OutboundOutcome, Record};
use crate::tls::{Current, IdentityState};
use crate::trace::TraceParent;
use crate::wimse::sign::WptSigner;
use crate::wimse::{TokenHash, WIT_HEADER, WPT_HEADER, normalized_authority};

/// How long an outbound call may take, connection and response body included.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body an outbound call reads.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// The scheme of every outbound URI.
const HTTPS: &str = "https://";

// The names of the headers every call sends, made at compile time (`from_static` at run time
// checks the name again on every call).
const CHAIN: http::HeaderName = http::HeaderName::from_static(CHAIN_HEADER);
const TXN_TOKEN: http::HeaderName = http::HeaderName::from_static(TXN_TOKEN_HEADER);
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static(crate::trace::TRACEPARENT);
const TRACESTATE: http::HeaderName = http::HeaderName::from_static(crate::trace::TRACESTATE);
const WIT: http::HeaderName = http::HeaderName::from_static(WIT_HEADER);
const WPT: http::HeaderName = http::HeaderName::from_static(WPT_HEADER);

/// The transport's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) timeout: Duration,
    pub(crate) max_connection_age: Duration,
}

/// Outbound connectivity of one server: a pool per target service, shared by every client.
pub(crate) struct Transport {
    identity: Arc<IdentityState>,
    source: Arc<str>,
    registry: Option<Arc<dyn ServiceRegistry>>,
    audit: Arc<AuditQueue>,
    signer: ChainSigner,
    /// Signs the WIT/WPT headers, when the identity source issues WITs.
    wimse: Option<Arc<WptSigner>>,
    settings: Settings,
    resilience: ResilienceConfig,
    /// The fleet-wide retry budget, when one is configured.
    fleet: Option<Arc<FleetBudget>>,
    targets: RwLock<HashMap<&'static str, Arc<Target>>>,
    closing: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("settings", &self.settings)
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One target service: its expected identity, its connection pool, its endpoints with their
/// statistics, and the limits its calls go through.
pub(crate) struct Target {
    id: SpiffeId,
    name: Arc<str>,
    /// The pool of the newest SVID generation a call used.
    pool: ArcSwap<Generation>,
    server: ServerAuth,
    max_connection_age: Duration,
    endpoints: Endpoints,
    stack: Stack,
    /// Follows a watched endpoint set into `pool`; stopped with the target.
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
    }
}

/// The pool of one target whose connections present one generation of the SVID.
struct Generation {
    generation: u64,
    dialer: Dialer,
}

impl Target {
    /// The pool presenting the SVID of `current`: the kept one, or a new one on the first call
    /// after a rotation (a call still on an older generation gets a pool of its own).
    fn pool(&self, current: &Current) -> Result<Arc<Generation>, DialError> {
        let kept = self.pool.load();
        if kept.generation == current.generation {
            return Ok(arc_swap::Guard::into_inner(kept));
        }
        let fresh = Arc::new(Generation {
            generation: current.generation,
            dialer: dialer(&self.server, current, self.max_connection_age)?,
        });
        if current.generation > kept.generation {
            self.pool.store(fresh.clone());
        }
        Ok(fresh)
    }
}

/// A pool to a target authenticated by `server`, presenting the SVID of `current`.
fn dialer(
    server: &ServerAuth,
    current: &Current,
    max_connection_age: Duration,
) -> Result<Dialer, DialError> {
    Dialer::builder(
        server.clone(),
        ClientAuth::svid_generation(current.key.clone()),
    )
    .max_connection_age(max_connection_age)
    .build()
}

enum Endpoints {
    /// The registry pushes changes; the latest set is read without a call.
    Watched(watch::Receiver<Vec<Endpoint>>),
    /// The registry cannot watch; it is asked on every call.
    Resolved,
    /// No registry is configured.
    None,
}

/// One call, as the client built it.
pub(crate) struct Call {
    pub(crate) method: Method,
    /// The path and query, or why they are not a valid one (each attempt then fails to
    /// encode).
    pub(crate) path_and_query: Result<PathAndQuery, InvalidUri>,
    pub(crate) body: Option<Bytes>,
    pub(crate) txn: Option<HeaderValue>,
    /// The hashed sticky key, for a ring-hash balancer.
    pub(crate) key: Option<u64>,
    /// The W3C `traceparent` naming the call's span, and the `tracestate` forwarded.
    pub(crate) traceparent: TraceParent,
    pub(crate) tracestate: Option<HeaderValue>,
}

impl Transport {
    pub(crate) fn new(
        identity: Arc<IdentityState>,
        registry: Option<Arc<dyn ServiceRegistry>>,
        audit: Arc<AuditQueue>,
        signer: ChainSigner,
        wimse: Option<Arc<WptSigner>>,
        settings: Settings,
        resilience: ResilienceConfig,
    ) -> Self {
        Self {
            resilience,
            fleet: None,
            source: identity.spiffe_id().to_string().into(),
            identity,
            registry,
            audit,
            signer,
            wimse,
            settings,
            targets: RwLock::new(HashMap::new()),
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// Joins every target's retry budget to `fleet`.
    pub(crate) fn with_fleet_budget(mut self, fleet: Option<Arc<FleetBudget>>) -> Self {
        self.fleet = fleet;
        self
    }

    /// The pool and endpoints of `service`, made on first use.
    pub(crate) async fn target(&self, service: &'static str) -> Result<Arc<Target>, CallError> {
        if let Some(target) = self
            .targets
            .read()
            .ok()
            .and_then(|t| t.get(service).cloned())
        {
            return Ok(target);
        }
        let id = SpiffeId::new(service).map_err(|e| CallError::PeerIdentity {
            expected: service.to_owned(),
            address: String::new(),
            reason: format!("not a SPIFFE ID: {e}"),
        })?;
        let server = ServerAuth::spiffe(&self.identity, id.clone());
        let current = self.identity.current();
        let pool = Generation {
            generation: current.generation,
            dialer: dialer(&server, &current, self.settings.max_connection_age).map_err(|e| {
                CallError::Transport {
                    service: service.to_owned(),
                    source: Box::new(e),
                }
            })?,
        };
        drop(current);
        let endpoints = match &self.registry {
            None => Endpoints::None,
            Some(registry) => match registry.watch(service).await {
                Ok(rx) => Endpoints::Watched(rx),
                Err(_) => Endpoints::Resolved,
            },
        };
        let name: Arc<str> = service.into();
        let refused = |e: super::resilience::config::ConfigError| CallError::Transport {
            service: service.to_owned(),
            source: Box::new(e),
        };
        let config = &self.resilience.for_target(service);
        // Made while the watched set is borrowed: the pool copies the addresses it keeps.
        let watched = match &endpoints {
            Endpoints::Watched(rx) => Some(rx.borrow()),
            Endpoints::Resolved | Endpoints::None => None,
        };
        let initial = watched
            .as_deref()
            .map_or_else(Vec::new, |endpoints| eligible(endpoints, service));
        let metrics = self.audit.metrics();
        let stack = Stack::new(
            config,
            &initial,
            outlier_sink(name.clone(), metrics.cloned()),
            breaker_sink(name.clone(), metrics.cloned()),
        );
        drop(watched);
        let stack = stack.map_err(refused)?;
        let stack = match &self.fleet {
            Some(fleet) => stack.with_fleet(fleet.share(service)),
            None => stack,
        };
        let follower = match &endpoints {
            Endpoints::Watched(rx) => Some(tokio::spawn(follow(
                rx.clone(),
                stack.pool().clone(),
                name.clone(),
            ))),
            Endpoints::Resolved | Endpoints::None => None,
        };
        let target = Arc::new(Target {
            id: id.clone(),
            name,
            pool: ArcSwap::from_pointee(pool),
            server,
            max_connection_age: self.settings.max_connection_age,
            endpoints,
            stack,
            follower,
        });
        let mut targets = self
            .targets
            .write()
            .map_err(|_| CallError::Refused("outbound transport state poisoned"))?;
        Ok(targets.entry(service).or_insert(target).clone())
    }

    /// Runs one call to `target`: refused once shutdown began; otherwise counted in flight
    /// until it ends, bounded by the call timeout, and recorded.
    ///
    /// The clock is read once for the call's start (its deadline, its record's latency and,
    /// when nothing waited before it, the first attempt's breaker and balancer) and once as
    /// each attempt ends (the outcome's time, and the record's end); the wall clock once, for
    /// the chain token and the record.
    pub(crate) async fn call(
        &self,
        target: Arc<Target>,
        upstream: &VerifiedChain,
        memo: &ChainMemo,
        call: Call,
    ) -> Result<Bytes, CallError> {
        let target = &*target;
        let Some(_guard) = self.enter() else {
            return Err(CallError::Refused(
                "the outbound transport is shutting down",
            ));
        };
        let timestamp = SystemTime::now();
        let started = Instant::now();
        let mut trace = Trace::default();
        let by = By {
            instant: started + self.settings.timeout,
            wall: timestamp + self.settings.timeout,
        };
        let result = self
            .attempt_all(
                target, upstream, memo, &call, timestamp, started, by, &mut trace,
            )
            .await;
        let (outcome, status) = match &result {
            Ok(status) => (OutboundOutcome::Success, Some(status.0)),
            Err(e) => outcome_of(e),
        };
        let ended = trace.ended.unwrap_or_else(Instant::now);
        let event = OutboundCallEvent {
            timestamp,
            source: self.source.clone(),
            target: target.name.clone(),
            method: call.method,
            address: trace.address.unwrap_or_default(),
            outcome,
            status: status.map(|s| s.as_u16()),
            attempts: trace.attempts,
            latency: ended.saturating_duration_since(started),
        };
        // Moved into the audit queue, not copied: this is the calling task's path.
        self.audit.try_record(Record::Outbound(event));
        result.map(|(_, body)| body)
    }

    /// The call's attempts, within `by`: a bulkhead slot for the whole call, the chain token
    /// signed once (or the caller's last one, kept in `memo`, while still as good), then the
    /// attempts through the target's resilience stack. `started` is the call's start, which
    /// the first attempt uses as its time when nothing waited since.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call's inputs, each used once"
    )]
    async fn attempt_all(
        &self,
        target: &Target,
        upstream: &VerifiedChain,
        memo: &ChainMemo,
        call: &Call,
        now: SystemTime,
        started: Instant,
        by: By,
        trace: &mut Trace,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let refused = |refusal| refusal_error(target, refusal, self.settings.timeout);
        // A free slot is taken without waiting, and the call's start is still "now" for the
        // first attempt (the work between them does not wait: the chain header, taken from
        // the caller's memo or the signer's cache, or signed about every two and a half
        // minutes); after a wait in the bulkhead's queue or for the registry, the attempt
        // reads the clock.
        let (permit, mut fresh) = match target.stack.try_admit().map_err(refused)? {
            Some(permit) => (permit, Some(started)),
            None => (target.stack.admit(by.instant).await.map_err(refused)?, None),
        };
        // This hop's token on top of the verified upstream chain, addressed to the target
        // (cached by the signer: re-signed only at half its lifetime or after a rotation),
        // signed with the SVID the connections of the pool present.
        let current = self.identity.current();
        let chain = self
            .signer
            .header_memo(memo, &current, Some(upstream), &target.id, now)
            .map_err(CallError::Chain)?;
        let pool = target.pool(&current).map_err(|e| CallError::Transport {
            service: target.name.to_string(),
            source: Box::new(e),
        })?;
        drop(current);
        if self.resolve(target).await? {
            fresh = None;
        }
        let chain = &chain;
        let dialer = &pool.dialer;
        // Hashed once per call: every attempt's WPT binds the same Transaction Token.
        let tth = match (&self.wimse, &call.txn) {
            (Some(_), Some(txn)) => Some(TokenHash::of(txn.as_bytes())),
            _ => None,
        };
        let tth = tth.as_ref();
        target
            .stack
            .attempts(
                &permit,
                &call.method,
                call.key,
                by.instant,
                fresh,
                trace,
                |endpoint| async move {
                    self.exchange(target, dialer, call, chain, tth, by, &endpoint)
                        .await
                },
            )
            .await
            .map_err(|ended| match ended {
                Ended::Failed(error) => error,
                Ended::Refused(refusal) => refused(refusal),
            })
    }

    /// One attempt on `endpoint`: how it ended for the resilience stages, and its answer.
    #[allow(
        clippy::too_many_arguments,
        reason = "one attempt's inputs, each used once"
    )]
    async fn exchange(
        &self,
        target: &Target,
        dialer: &Dialer,
        call: &Call,
        chain: &HeaderValue,
        tth: Option<&TokenHash>,
        by: By,
        endpoint: &Slot,
    ) -> (Outcome, Result<(StatusCode, Bytes), CallError>) {
        // A request that cannot be encoded says nothing about the endpoint: it is neither
        // counted against it nor retried.
        let encode =
            |e: &dyn fmt::Display| (Outcome::ClientError, Err(CallError::Encode(e.to_string())));
        let address = endpoint.address();
        // The URI from parts parsed once: the endpoint's authority, the call's path.
        let (authority, path) = match (endpoint.authority(), &call.path_and_query) {
            (Ok(authority), Ok(path)) => (authority, path),
            (Err(e), _) | (_, Err(e)) => return encode(e),
        };
        // Signed per attempt: the WPT's `aud` is this attempt's target URI (scheme, authority,
        // path; no query), as the peer rebuilds it from the request it receives.
        let wimse = self.wimse.as_ref().and_then(|signer| {
            let authority = normalized_authority(address);
            let path = path.path();
            let mut aud = String::with_capacity(HTTPS.len() + authority.len() + path.len());
            aud.push_str(HTTPS);
            aud.push_str(&authority);
            aud.push_str(path);
            signer.headers(&aud, tth, SystemTime::now())
        });
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(path.clone());
        let uri = match Uri::from_parts(parts) {
            Ok(uri) => uri,
            Err(e) => return encode(&e),
        };
        let mut request = Request::new(Full::new(call.body.clone().unwrap_or_default()));
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = uri;
        // Sized once for the headers below: no growth and rehash on the way (and no smaller
        // than the map's first growth would make it, which keeps lookups of absent names,
        // as hyper and h2 make for connection headers, short).
        *request.headers_mut() = HeaderMap::with_capacity(
            (3 + usize::from(call.body.is_some())
                + usize::from(call.txn.is_some())
                + usize::from(call.tracestate.is_some())
                + if wimse.is_some() { 2 } else { 0 })
            .max(6),
        );
        let headers = request.headers_mut();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if call.body.is_some() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        headers.insert(CHAIN, chain.clone());
        if let Some(txn) = &call.txn {
            // A credential, and one that changes with every transaction: never indexed
            // (RFC 7541 §7.1.3), so that it neither sits in the connection's compression
            // table nor evicts the values that repeat, such as the chain.
            let mut txn = txn.clone();
            txn.set_sensitive(true);
            headers.insert(TXN_TOKEN, txn);
        }
        // A value new on every call is sent as a literal never indexed (RFC 7541 §6.2.3): in
        // HPACK's table it would only evict the values that do repeat, such as the chain.
        // Rendered per attempt rather than cloned: a clone of a fresh value allocates to
        // share it.
        let mut traceparent = call.traceparent.to_header();
        traceparent.set_sensitive(true);
        headers.insert(TRACEPARENT, traceparent);
        if let Some(state) = &call.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
        if let Some((wit, mut wpt)) = wimse {
            headers.insert(WIT, wit);
            // A proof new on every attempt, and a credential: never indexed either.
            wpt.set_sensitive(true);
            headers.insert(WPT, wpt);
        }
        // The call's deadline bounds the attempt (the resilience stack's timeout).
        let response = match dialer.send(request, by).await {
            Ok(response) => response,
            Err(error) => {
                let outcome = match &error {
                    // Sent, or possibly sent: the peer may have acted on it.
                    DialError::Http(_) | DialError::Body { .. } | DialError::Timeout(_) => {
                        Outcome::NoResponse
                    }
                    // Refused before a byte of the request left.
                    _ => Outcome::ConnectFailed,
                };
                return (outcome, Err(transport_error(target, address, error)));
            }
        };
        let status = response.status();
        // Only a refusal's `Retry-After` is read.
        let retry_after = if status.is_success() {
            None
        } else {
            response.headers().get(http::header::RETRY_AFTER).cloned()
        };
        // The body read whole, frame by frame: one data frame (the usual answer) is kept as
        // it came, without a list of frames; more are joined. Trailers are not kept.
        let mut frames = Limited::new(response.into_body(), MAX_RESPONSE_BODY);
        let mut body = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        while let Some(frame) = frames.frame().await {
            let data = match frame.map(Frame::into_data) {
                Ok(Ok(data)) => data,
                Ok(Err(_trailers)) => continue,
                Err(source) => {
                    let error = CallError::Transport {
                        service: target.name.to_string(),
                        source,
                    };
                    return (Outcome::NoResponse, Err(error));
                }
            };
            if data.is_empty() {
                continue;
            }
            if let Some(joined) = &mut joined {
                joined.extend_from_slice(&data);
            } else if body.is_empty() {
                body = data;
            } else {
                let mut both = BytesMut::with_capacity(body.len() + data.len());
                both.extend_from_slice(&body);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
        let body = joined.map_or(body, BytesMut::freeze);
        let outcome = Outcome::from_status(status);
        if status.is_success() {
            (outcome, Ok((status, body)))
        } else {
            let error = classify(&target.name, status, retry_after.as_ref(), body);
            (outcome, Err(error))
        }
    }

    /// Brings `target`'s endpoints up to date when its registry cannot push them (a watched
    /// set is followed by its own task). Returns whether it asked the registry (and waited).
    async fn resolve(&self, target: &Target) -> Result<bool, CallError> {
        if !matches!(target.endpoints, Endpoints::Resolved) {
            return Ok(false);
        }
        let Some(registry) = &self.registry else {
            return Ok(false);
        };
        let resolved = registry
            .resolve(&target.name)
            .await
            .map_err(|e| CallError::Transport {
                service: target.name.to_string(),
                source: Box::new(e),
            })?;
        target
            .stack
            .pool()
            .update(&eligible(&resolved, &target.name));
        Ok(true)
    }

    fn enter(&self) -> Option<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self);
        (!self.closing.load(Ordering::Acquire)).then_some(guard)
    }

    /// Refuses new calls, then waits for the calls in flight to end, until `deadline`.
    /// Returns the number of calls still running at the deadline.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        if let Ok(mut targets) = self.targets.write() {
            for target in targets.values() {
                target.stack.close();
            }
            // Dropping the pools closes their idle connections.
            targets.clear();
        }
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Counts one call in flight; the last one out wakes a waiting shutdown.
struct InFlight<'a>(&'a Transport);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Only a shutdown waits: outside one, the last call out wakes nobody (and takes no
        // lock). Sequentially consistent with `shutdown`'s store and load, so either this
        // sees `closing` or the shutdown sees no call in flight.
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.closing.load(Ordering::SeqCst)
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// The header that carries a Transaction Token (draft-ietf-oauth-transaction-tokens §7.1),
/// forwarded unchanged to the next hop.
pub const TXN_TOKEN_HEADER: &str = "txn-token";

fn outcome_of(error: &CallError) -> (OutboundOutcome, Option<StatusCode>) {
    match error {
        CallError::Denied { status, .. } | CallError::Status { status, .. } => {
            (OutboundOutcome::ServerError, Some(*status))
        }
        CallError::RateLimited { .. } => (
            OutboundOutcome::ServerError,
            Some(StatusCode::TOO_MANY_REQUESTS),
        ),
        CallError::NotReady { .. } => (
            OutboundOutcome::ServerError,
            Some(StatusCode::SERVICE_UNAVAILABLE),
        ),
        CallError::PeerIdentity { .. } => (OutboundOutcome::IdentityMismatch, None),
        CallError::CircuitOpen { .. } => (OutboundOutcome::CircuitOpen, None),
        CallError::Overloaded { .. } => (OutboundOutcome::Overloaded, None),
        CallError::Timeout { .. } => (OutboundOutcome::Timeout, None),
        CallError::Decode(_) => (OutboundOutcome::Success, None),
        CallError::NoEndpoints { .. }
        | CallError::Refused(_)
        | CallError::Encode(_)
        | CallError::Chain(_) => (OutboundOutcome::Refused, None),
        _ => (OutboundOutcome::ConnectError, None),
    }
}

/// The error of a call the resilience stack refused.
fn refusal_error(target: &Target, refusal: Refusal, timeout: Duration) -> CallError {
    let service = target.name.to_string();
    match refusal {
        Refusal::Overloaded(error) => CallError::Overloaded {
            service,
            reason: error.to_string(),
        },
        Refusal::CircuitOpen(error) => CallError::CircuitOpen {
            service,
            retry_after: match error {
                BreakerError::Open { retry_after } => Some(retry_after),
                _ => None,
            },
        },
        Refusal::NoEndpoints => CallError::NoEndpoints { service },
        Refusal::TimedOut => CallError::Timeout {
            service,
            after: timeout,
        },
    }
}

/// A connection failure, with a handshake that found another identity told apart.
fn transport_error(target: &Target, address: &str, error: DialError) -> CallError {
    match error {
        DialError::ServerCertificate { reason, .. } => CallError::PeerIdentity {
            expected: target.name.to_string(),
            address: address.to_owned(),
            reason,
        },
        error => CallError::Transport {
            service: target.name.to_string(),
            source: Box::new(error),
        },
    }
}

/// The addresses of the endpoints whose registry record names the expected SPIFFE ID (the
/// registry is a directory, not an identity authority: a record for another ID is skipped,
/// and the handshake checks the ID again).
fn eligible<'a>(endpoints: &'a [Endpoint], service: &str) -> Vec<&'a str> {
    endpoints
        .iter()
        .filter(|e| e.spiffe_id == service)
        .map(|e| e.address.as_str())
        .collect()
}

/// Follows a watched endpoint set into `pool` until the registry drops the watch; the pool
/// keeps the statistics of the endpoints that stay.
async fn follow(mut rx: watch::Receiver<Vec<Endpoint>>, pool: Arc<Pool>, service: Arc<str>) {
    while rx.changed().await.is_ok() {
        pool.update(&eligible(&rx.borrow_and_update(), &service));
    }
}

/// Ejections and reinstatements, as log events and in the admin listener's counters.
fn outlier_sink(service: Arc<str>, metrics: Option<Arc<AuditMetrics>>) -> Sink<OutlierEvent> {
    Arc::new(move |event: &OutlierEvent| match event {
        OutlierEvent::Ejected {
            address,
            reason,
            times,
            duration,
        } => {
            tracing::warn!(%service, %address, ?reason, times, ?duration, "endpoint ejected");
            if let Some(metrics) = &metrics {
                metrics.ejected(*reason);
            }
        }
        OutlierEvent::Reinstated { address } => {
            tracing::info!(%service, %address, "endpoint reinstated");
        }
    })
}

/// Circuit transitions, as log events and in the admin listener's counters.
fn breaker_sink(service: Arc<str>, metrics: Option<Arc<AuditMetrics>>) -> Sink<Transition> {
    Arc::new(move |transition: &Transition| {
        tracing::warn!(%service, from = ?transition.from, to = ?transition.to, "circuit breaker transition");
        if let Some(metrics) = &metrics {
            metrics.circuit(transition.to);
        }
    })
}
