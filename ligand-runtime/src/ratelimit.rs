//! The rate limiter contract.

mod limits;

pub use self::limits::{Limit, LimitError, LimitOverride, LimitRules};

use std::time::Duration;

use async_trait::async_trait;

use crate::chain::Chain;
use crate::error::ProviderError;
use crate::provider::ProviderContext;
use crate::request::{Action, Resource};

/// One rate-limit check, borrowing the request being enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitRequest<'a> {
    /// The chain with the verified immediate peer last; limiters key on the peer.
    pub chain: &'a Chain,
    /// What is being accessed, for per-resource limits.
    pub resource: &'a Resource,
    /// The operation.
    pub action: &'a Action,
}

/// A rate-limit decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitResponse {
    /// Whether the request is within the limit.
    pub allowed: bool,
    /// When a denied caller may retry, sent as `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The caller's observed rate, when the limiter reports it.
    pub current_rps: Option<f64>,
    /// The caller's configured limit, when the limiter reports it.
    pub limit_rps: Option<f64>,
}

impl RateLimitResponse {
    /// An allow decision.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            ..Self::default()
        }
    }

    /// A deny decision with a retry hint.
    pub fn deny(retry_after: Option<Duration>) -> Self {
        Self {
            allowed: false,
            retry_after,
            ..Self::default()
        }
    }
}

/// Enforces request rates before policy is evaluated.
///
/// `Ok` with `allowed: false` is a normal denial (429); an `Err` is a failure and also denies
/// (503): the framework never lets a request through because the limiter is broken.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Checks one request.
    async fn check(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Result<RateLimitResponse, ProviderError>;

    /// Checks one request without waiting, when the limiter can: `Some` is the answer,
    /// exactly what [`check`](Self::check) would give; `None` (the default) sends the request
    /// to `check`. An in-process limiter implements it so that the request path builds no
    /// future for a check that never waits (the framework calls it first, on every request).
    fn check_inline(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Option<Result<RateLimitResponse, ProviderError>> {
        let _ = request;
        None
    }

    /// Called once by `init` after the workload identity is established; a provider that
    /// reaches a backend connects (and checks it is reachable) here. An error fails init.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        Ok(())
    }

    /// Releases the limiter's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: RateLimiter + ?Sized> RateLimiter for std::sync::Arc<T> {
    async fn check(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Result<RateLimitResponse, ProviderError> {
        (**self).check(request).await
    }

    fn check_inline(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Option<Result<RateLimitResponse, ProviderError>> {
        (**self).check_inline(request)
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        (**self).start(context).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}
