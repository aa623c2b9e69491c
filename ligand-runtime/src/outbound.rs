//! Outbound calls: the clients `#[ligand::client]` generates, and the one transport they call
//! through (bulkhead → circuit breaker → balanced endpoint → pooled mTLS connection verified
//! against the expected SPIFFE ID → signed chain → retries within a budget, all within the
//! per-call timeout).

mod client;
pub mod dial;
pub(crate) mod resilience;
mod transport;

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::future::Either;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

use crate::chain::{ChainMemo, VerifiedChain};
use crate::trace::TraceParent;

pub use self::client::{CallBuilder, CallError, Client};
pub use self::dial::DEFAULT_MAX_CONNECTION_AGE;
pub use self::resilience::balance::{BalancerConfig, Strategy, UnknownStrategy};
pub use self::resilience::breaker::BreakerConfig;
pub use self::resilience::bulkhead::BulkheadConfig;
pub use self::resilience::config::{
    ConfigError as ResilienceConfigError, ResilienceConfig, TargetResilience,
};
pub use self::resilience::fleet::{
    DEFAULT_FLEET_SYNC, FleetBudget, FleetDelta, FleetRetryBudget, FleetSyncError, FleetTotals,
    TargetBudget,
};
pub use self::resilience::outlier::{LatencyEjection, OutlierConfig, SuccessRateEjection};
pub use self::resilience::retry::RetryConfig;
pub use self::transport::{DEFAULT_CALL_TIMEOUT, MAX_RESPONSE_BODY, TXN_TOKEN_HEADER};
pub(crate) use self::transport::{Settings as TransportSettings, Transport};

/// A handle for calls to one service, bound to the context it came from: inside a handler it
/// forwards the request's verified chain and Transaction Token; from the server the chain
/// starts at this service. Generated clients hold one; cloning copies pointers.
#[derive(Clone)]
pub struct Caller {
    transport: Arc<Transport>,
    service: &'static str,
    upstream: VerifiedChain,
    txn: Option<HeaderValue>,
    /// The span of the request this handle serves, and its `tracestate`: calls are its
    /// children. Outside a request each call starts a new trace.
    trace: Option<(TraceParent, Option<HeaderValue>)>,
    /// The target this handle's first call found, so that later calls skip the lookup by
    /// name. Weak: a shutdown that drops the transport's targets closes their pools even
    /// while handles live.
    target: OnceLock<Weak<transport::Target>>,
    /// The chain header of this handle's last call (its upstream chain and target are the
    /// same on every call), reused while the signer would give the same one.
    chain: ChainMemo,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("service", &self.service)
            .field("forwards_txn_token", &self.txn.is_some())
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub(crate) fn new(
        transport: Arc<Transport>,
        service: &'static str,
        upstream: VerifiedChain,
        txn: Option<HeaderValue>,
    ) -> Self {
        Self {
            transport,
            service,
            upstream,
            txn,
            trace: None,
            target: OnceLock::new(),
            chain: ChainMemo::default(),
        }
    }

    /// The same handle making its calls children of `span` in its trace.
    pub(crate) fn in_trace(mut self, span: TraceParent, tracestate: Option<HeaderValue>) -> Self {
        self.trace = Some((span, tracestate));
        self
    }

    /// The SPIFFE ID this handle calls.
    pub fn service(&self) -> &str {
        self.service
    }

    /// Starts a call: `method` on the path `template` (`{param}` segments bound with
    /// [`CallBuilder::param`]).
    pub fn request(&self, method: Method, template: &'static str) -> CallBuilder<'_> {
        CallBuilder::new(self, method, template)
    }

    /// Prepares a call (the call's values, the target this handle found) and returns the
    /// transport's future for it. Only a handle's first call looks its target up, in a
    /// future of its own: the common one carries nothing for it.
    pub(crate) fn send(
        &self,
        method: Method,
        path_and_query: String,
        body: Option<Bytes>,
        key: Option<u64>,
    ) -> impl Future<Output = Result<Bytes, CallError>> + Send + '_ {
        let call = transport::Call {
            method,
            // Parsed once per call; every attempt's URI shares it.
            path_and_query: PathAndQuery::try_from(path_and_query),
            body,
            txn: self.txn.clone(),
            key,
            // The request's span is the callee's parent (the span an exporter records, so a
            // collector links caller and callee); outside a request, the root of a new trace.
            traceparent: match &self.trace {
                Some((span, _)) => *span,
                None => TraceParent::new_root(),
            },
            tracestate: self.trace.as_ref().and_then(|(_, state)| state.clone()),
        };
        match self.target.get().and_then(Weak::upgrade) {
            Some(target) => {
                Either::Left(
                    self.transport
                        .call(target, &self.upstream, &self.chain, call),
                )
            }
            None => Either::Right(Box::pin(async move {
                let target = self.transport.target(self.service).await?;
                let _ = self.target.set(Arc::downgrade(&target));
                self.transport
                    .call(target, &self.upstream, &self.chain, call)
                    .await
            })),
        }
    }
}
