//! The one outbound transport: registry resolve → round-robin endpoint → pooled connection
//! (HTTP/2 when the peer offers it, HTTP/1.1 keep-alive otherwise) → mTLS dial that presents
//! the current SVID and accepts exactly the expected SPIFFE ID → per-call timeout.
//!
//! Every connection is made with the SVID current at dial time, so a rotation reaches new
//! connections at once; a pooled connection is retired once it is older than the maximum age
//! or its peer's certificate expires, so none outlives the identity it was verified with.
//! Each target's pool is a [`Dialer`](super::dial::Dialer): its connector is the only place
//! that opens a socket, and it only ever returns a verified TLS 1.3 stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use spiffe::SpiffeId;
use tokio::sync::{Notify, watch};

use super::client::{CallError, classify};
use super::dial::{ClientAuth, DialError, Dialer, ServerAuth};
use crate::chain::{CHAIN_HEADER, ChainSigner, VerifiedChain};
use crate::registry::{Endpoint, ServiceRegistry};
use crate::telemetry::{AuditQueue, OutboundCallEvent, OutboundOutcome, Record};
use crate::tls::IdentityState;

/// How long an outbound call may take, connection and response body included.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body an outbound call reads.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// The scheme of every outbound URI.
const HTTPS: &str = "https://";

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
    settings: Settings,
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

/// One target service: its expected identity, its connection pool and its endpoints.
pub(crate) struct Target {
    id: SpiffeId,
    name: Arc<str>,
    dialer: Dialer,
    endpoints: Endpoints,
    next: AtomicUsize,
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
    pub(crate) path_and_query: String,
    pub(crate) body: Option<Bytes>,
    pub(crate) txn: Option<HeaderValue>,
}

impl Transport {
    pub(crate) fn new(
        identity: Arc<IdentityState>,
        registry: Option<Arc<dyn ServiceRegistry>>,
        audit: Arc<AuditQueue>,
        signer: ChainSigner,
        settings: Settings,
    ) -> Self {
        Self {
            source: identity.spiffe_id().to_string().into(),
            identity,
            registry,
            audit,
            signer,
            settings,
            targets: RwLock::new(HashMap::new()),
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }
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
        let dialer = Dialer::builder(
            ServerAuth::spiffe(&self.identity, id.clone()),
            ClientAuth::svid(&self.identity),
        )
        .max_connection_age(self.settings.max_connection_age)
        .build()
        .map_err(|e| CallError::Transport {
            service: service.to_owned(),
            source: Box::new(e),
        })?;
        let endpoints = match &self.registry {
            None => Endpoints::None,
            Some(registry) => match registry.watch(service).await {
                Ok(rx) => Endpoints::Watched(rx),
                Err(_) => Endpoints::Resolved,
            },
        };
        let target = Arc::new(Target {
            id: id.clone(),
            name: service.into(),
            dialer,
            endpoints,
            next: AtomicUsize::new(0),
        });
        let mut targets = self
            .targets
            .write()
            .map_err(|_| CallError::Refused("outbound transport state poisoned"))?;
        Ok(targets.entry(service).or_insert(target).clone())
    }

    /// Runs one call to `target`: refused once shutdown began; otherwise counted in flight
    /// until it ends, bounded by the call timeout, and recorded.
    pub(crate) async fn call(
        &self,
        target: &Target,
        upstream: &VerifiedChain,
        call: Call,
    ) -> Result<Bytes, CallError> {
        let started = Instant::now();
        let timestamp = SystemTime::now();
        let Some(_guard) = self.enter() else {
            return Err(CallError::Refused(
                "the outbound transport is shutting down",
            ));
        };
        let mut address = String::new();
        let method = call.method.clone();
        let result = tokio::time::timeout(
            self.settings.timeout,
            self.exchange(target, upstream, call, &mut address),
        )
        .await
        .unwrap_or_else(|_| {
            Err(CallError::Timeout {
                service: target.name.to_string(),
                after: self.settings.timeout,
            })
        });
        let (outcome, status) = match &result {
            Ok(status) => (OutboundOutcome::Success, Some(status.0)),
            Err(e) => outcome_of(e),
        };
        let event = OutboundCallEvent {
            timestamp,
            source: self.source.clone(),
            target: target.name.clone(),
            method,
            address,
            outcome,
            status: status.map(|s| s.as_u16()),
            latency: started.elapsed(),
        };
        // Moved into the audit queue, not copied: this is the calling task's path.
        self.audit.try_record(Record::Outbound(event));
        result.map(|(_, body)| body)
    }

    async fn exchange(
        &self,
        target: &Target,
        upstream: &VerifiedChain,
        call: Call,
        address: &mut String,
    ) -> Result<(StatusCode, Bytes), CallError> {
        // This hop's token on top of the verified upstream chain, addressed to the target
        // (cached by the signer: re-signed only at half its lifetime or after a rotation).
        let chain = self
            .signer
            .header(
                &self.identity,
                Some(upstream),
                &target.id,
                SystemTime::now(),
            )
            .map_err(CallError::Chain)?;
        self.pick(target, address).await?;
        let mut uri =
            String::with_capacity(HTTPS.len() + address.len() + call.path_and_query.len());
        uri.push_str(HTTPS);
        uri.push_str(address);
        uri.push_str(&call.path_and_query);
        let uri = Uri::try_from(uri).map_err(|e| CallError::Encode(e.to_string()))?;
        let mut request = Request::builder().method(call.method).uri(uri);
        let headers = request
            .headers_mut()
            .ok_or(CallError::Encode(String::new()))?;
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
        headers.insert(http::HeaderName::from_static(CHAIN_HEADER), chain);
        if let Some(txn) = call.txn {
            headers.insert(http::HeaderName::from_static(TXN_TOKEN_HEADER), txn);
        }
        let request = request
            .body(Full::new(call.body.unwrap_or_default()))
            .map_err(|e| CallError::Encode(e.to_string()))?;
        let response = target
            .dialer
            .send(request)
            .await
            .map_err(|e| transport_error(target, address, e))?;
        let status = response.status();
        let retry_after = response.headers().get(http::header::RETRY_AFTER).cloned();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| CallError::Transport {
                service: target.name.to_string(),
                source: e,
            })?
            .to_bytes();
        if status.is_success() {
            Ok((status, body))
        } else {
            Err(classify(&target.name, status, retry_after.as_ref(), body))
        }
    }

    /// The next endpoint of `target`, round robin over the endpoints whose registry record
    /// names the expected SPIFFE ID (the registry is a directory, not an identity authority:
    /// a record for another ID is skipped, and the handshake checks the ID again).
    async fn pick(&self, target: &Target, address: &mut String) -> Result<(), CallError> {
        let no_endpoints = || CallError::NoEndpoints {
            service: target.name.to_string(),
        };
        let resolved;
        let watched;
        let endpoints: &[Endpoint] = match &target.endpoints {
            Endpoints::Watched(rx) => {
                watched = rx.borrow();
                &watched
            }
            Endpoints::Resolved => {
                let registry = self.registry.as_ref().ok_or_else(no_endpoints)?;
                resolved =
                    registry
                        .resolve(&target.name)
                        .await
                        .map_err(|e| CallError::Transport {
                            service: target.name.to_string(),
                            source: Box::new(e),
                        })?;
                &resolved
            }
            Endpoints::None => &[],
        };
        let eligible = endpoints
            .iter()
            .filter(|e| e.spiffe_id == *target.name)
            .count();
        if eligible == 0 {
            return Err(no_endpoints());
        }
        let n = target.next.fetch_add(1, Ordering::Relaxed) % eligible;
        endpoints
            .iter()
            .filter(|e| e.spiffe_id == *target.name)
            .nth(n)
            .map(|e| address.push_str(&e.address))
            .ok_or_else(no_endpoints)
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
        CallError::Timeout { .. } => (OutboundOutcome::Timeout, None),
        CallError::Decode(_) => (OutboundOutcome::Success, None),
        CallError::NoEndpoints { .. }
        | CallError::Refused(_)
        | CallError::Encode(_)
        | CallError::Chain(_) => (OutboundOutcome::Refused, None),
        _ => (OutboundOutcome::ConnectError, None),
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
