//! Resilience of outbound calls: load balancing, outlier ejection, circuit breaking,
//! bulkheads and retries, as pure logic over injected time (`tokio::time::Instant`) and an
//! injected random source, so every decision is reproducible in a test.
//!
//! The transport applies them to one call in this order:
//!
//! 1. **Bulkhead** ([`Bulkhead::acquire`](bulkhead::Bulkhead::acquire)): a permit for the target service, or a fast
//!    [`BulkheadError::Full`](bulkhead::BulkheadError::Full) when both the concurrency limit and the pending queue are full.
//!    The permit is held for the whole call, retries included.
//! 2. **Retry budget deposit** ([`RetryBudget::deposit`](retry::RetryBudget::deposit)), once per call (not per attempt).
//! 3. Per attempt:
//!    1. **Circuit breaker** ([`Breaker::allow`](breaker::Breaker::allow)): an [`Admission`](breaker::Admission), or a fast
//!       [`BreakerError`](breaker::BreakerError) while the target's circuit is open (or its half-open probes are
//!       taken).
//!    2. **Balancer** ([`Pool::pick_for`](balance::Pool::pick_for)): an endpoint, skipping
//!       ejected ones, by the call's sticky key for a ring-hash balancer, and another than the
//!       last one on a retry; the [`Picked`](balance::Picked) guard counts the attempt in flight.
//!    3. The call itself.
//!    4. **Record the outcome** ([`Pool::record`](balance::Pool::record), which feeds the endpoint's peak-EWMA
//!       latency and the outlier detector; [`Admission::record`](breaker::Admission::record) for the breaker), both
//!       with the same [`Outcome`].
//!    5. **Retry decision** ([`Retry::decide`](retry::Retry::decide)): the policy (is this outcome retryable for
//!       this method?), the attempt cap, then the budget; a retry waits the returned
//!       full-jitter backoff before going back to step 3.1.
//!
//! A breaker rejection or an empty pool ends the call without touching the retry budget:
//! retrying into an open circuit only adds load where the breaker is shedding it.
//!
//! Defaults follow the systems these pieces come from, each named where it is defined:
//! Linkerd (peak-EWMA balancing, retry budgets), Envoy (outlier detection, bulkhead
//! limits), Finagle and tower (the retry budget's shape) and the AWS "full jitter" backoff.

pub(crate) mod balance;
pub(crate) mod breaker;
pub(crate) mod bulkhead;
pub(crate) mod config;
pub(crate) mod fleet;
pub(crate) mod outlier;
pub(crate) mod retry;
mod ring;
pub(crate) mod rng;
pub(crate) mod slot;
pub(crate) mod stack;

use std::sync::Arc;

use http::StatusCode;

/// Receives the events a resilience piece emits (an ejection, a breaker transition), for
/// the transport to turn into telemetry and health. Called outside every internal lock.
pub(crate) type Sink<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// A sink that drops every event.
#[cfg(test)]
pub(crate) fn discard<E>() -> Sink<E> {
    Arc::new(|_: &E| {})
}

/// How one attempt ended, as every resilience piece sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    /// A response below 400.
    Success,
    /// A 4xx response: the caller's fault, so never a sign of an unhealthy endpoint and
    /// never retried.
    ClientError,
    /// A 5xx response.
    ServerError,
    /// The request never left: connect, TLS handshake or peer-identity failure, or a
    /// pooled connection refused before the request was written. Always safe to retry.
    ConnectFailed,
    /// The request was sent and no response came: a timeout or a connection lost
    /// mid-call. The server may have acted on it.
    NoResponse,
}

impl Outcome {
    /// The outcome of a response with `status`.
    pub(crate) fn from_status(status: StatusCode) -> Self {
        if status.is_server_error() {
            Self::ServerError
        } else if status.is_client_error() {
            Self::ClientError
        } else {
            Self::Success
        }
    }

    /// Whether this outcome counts against the endpoint and the circuit: 5xx, connect
    /// failures and missing responses do; 4xx does not (Envoy's `consecutive_5xx` and
    /// success-rate accounting make the same split).
    pub(crate) fn is_failure(self) -> bool {
        matches!(
            self,
            Self::ServerError | Self::ConnectFailed | Self::NoResponse
        )
    }

    /// A small code for storing the last outcome in an atomic.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Success => 1,
            Self::ClientError => 2,
            Self::ServerError => 3,
            Self::ConnectFailed => 4,
            Self::NoResponse => 5,
        }
    }

    /// The outcome stored as [`code`](Self::code); `None` for 0 (nothing recorded yet).
    #[cfg(test)]
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Success,
            2 => Self::ClientError,
            3 => Self::ServerError,
            4 => Self::ConnectFailed,
            5 => Self::NoResponse,
            _ => return None,
        })
    }
}
