//! The policy engine contract.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::watch;

use crate::chain::Chain;
use crate::error::ProviderError;
use crate::provider::ProviderContext;
use crate::request::{Action, RequestLine, Resource};
use crate::txn::TxnClaims;

/// The outcome of one reload an engine made from its own source (see
/// [`PolicyEngine::watch`]): the revision now in force (`None` when the policy has none), or
/// why the change was refused, in which case the previous policy stays in force.
pub type PolicyUpdate = Result<Option<String>, String>;

/// One policy decision's input. It serializes to the documented Rego input:
/// `{"chain":[…], "peer":{…}, "resource":{"kind","value"}, "action":{"name"},
/// "request":{"method","path","params"}, "txn":{…}, "service":"<own SPIFFE ID>"}`.
///
/// `txn` is present only for a request that carried a verified Transaction Token: an object
/// of its claims `txn`, `sub`, `iat`, `exp` (always) and `scope`, `req_wl`, `iss`, `tctx`,
/// `rctx` (when the token has them); see [`TxnClaims`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EvalRequest {
    /// The full chain with the verified immediate peer as the last link.
    pub chain: Chain,
    /// The verified immediate peer (the last link of `chain`), repeated for convenience.
    pub peer: crate::chain::Link,
    /// What is being accessed.
    pub resource: Resource,
    /// The operation.
    pub action: Action,
    /// The concrete request line.
    pub request: RequestLine,
    /// This service's own SPIFFE ID.
    pub service: Arc<str>,
    /// The verified Transaction Token claims, when the request carried a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn: Option<Arc<TxnClaims>>,
}

impl EvalRequest {
    /// The input for `request` from `peer` (already the last link of `chain`), evaluated by
    /// the service `service`. The pipeline builds it; engines and their tests build it too.
    pub fn new(
        chain: Chain,
        peer: crate::chain::Link,
        resource: Resource,
        action: Action,
        request: RequestLine,
        service: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            chain,
            peer,
            resource,
            action,
            request,
            service: service.into(),
            txn: None,
        }
    }

    /// The same input with the verified Transaction Token claims `txn`.
    pub fn with_txn(mut self, txn: Option<Arc<TxnClaims>>) -> Self {
        self.txn = txn;
        self
    }
}

/// A policy decision. Its strings are shared, so an engine that caches decisions hands out
/// copies without copying bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvalResponse {
    /// Whether the request is allowed. Anything but `true` denies.
    pub allowed: bool,
    /// A human-readable reason, for audit records only; never sent to the caller.
    pub reason: Option<Arc<str>>,
    /// The version of the policy that decided, recorded in every decision event.
    pub policy_version: Option<Arc<str>>,
    /// Whether the engine answered from its decision cache (an earlier evaluation of an input
    /// identical in every field the policy reads, under the same policy revision).
    pub cached: bool,
}

impl EvalResponse {
    /// An allow decision.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            ..Self::default()
        }
    }

    /// A deny decision with a reason.
    pub fn deny(reason: impl Into<Arc<str>>) -> Self {
        Self {
            allowed: false,
            reason: Some(reason.into()),
            ..Self::default()
        }
    }

    /// An allow (`true`) or deny decision, without a reason.
    pub fn decided(allowed: bool) -> Self {
        Self {
            allowed,
            ..Self::default()
        }
    }

    /// The same decision with `reason` (or none).
    pub fn with_reason(mut self, reason: Option<Arc<str>>) -> Self {
        self.reason = reason;
        self
    }

    /// The same decision, made by policy version `version` (or an unversioned policy).
    pub fn with_policy_version(mut self, version: Option<Arc<str>>) -> Self {
        self.policy_version = version;
        self
    }

    /// The same decision, marked as answered from the engine's decision cache or not.
    pub fn from_cache(mut self, cached: bool) -> Self {
        self.cached = cached;
        self
    }
}

/// Evaluates access policy for every inbound request. Fail-closed: an error, a timeout or
/// `allowed: false` all deny.
#[async_trait]
pub trait PolicyEngine: Send + Sync + 'static {
    /// Decides one request. Called after identity verification and rate limiting, bounded by
    /// the configured policy timeout. Implementations must be safe under concurrent calls.
    ///
    /// This runs on the request path, on the async worker that received the request: an
    /// engine that computes in-process should decide inline (bounding its own work) rather
    /// than hand each request to another thread, and one that calls a backend awaits it.
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError>;

    /// Decides one request without waiting, when the engine can: `Some` is the decision,
    /// exactly what [`evaluate`](Self::evaluate) would answer; `None` (the default) sends the
    /// request to `evaluate`. An engine that computes in-process implements it so that the
    /// request path builds no future for a decision that never waits (the framework calls
    /// it first, on every request).
    fn evaluate_inline(
        &self,
        request: &EvalRequest,
    ) -> Option<Result<EvalResponse, ProviderError>> {
        let _ = request;
        None
    }

    /// Replaces the policy with `bundle` atomically: evaluations already running finish on the
    /// old policy. Optional; the default answers [`ProviderError::NotSupported`].
    async fn reload(&self, bundle: &[u8]) -> Result<(), ProviderError> {
        let _ = bundle;
        Err(ProviderError::NotSupported)
    }

    /// Follows the engine's own policy source (a local folder it reloads on change): the
    /// outcome of every reload it makes, starting with the policy in force; only the latest
    /// matters. Optional; the default answers [`ProviderError::NotSupported`] (the policy
    /// changes only through [`reload`](Self::reload)).
    ///
    /// The framework calls it once, after `start`, and follows the receiver until
    /// [`Server::close`](crate::Server::close) stops the watches: a refused change marks the
    /// policy Degraded with its cause, the next accepted one Ready again. Dropping the
    /// receiver stops the watch.
    fn watch(&self) -> Result<watch::Receiver<PolicyUpdate>, ProviderError> {
        Err(ProviderError::NotSupported)
    }

    /// Called once by `init` after the workload identity is established; a provider that
    /// reaches a backend connects (and checks it is reachable) here. An error fails init.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        Ok(())
    }

    /// Releases the engine's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: PolicyEngine + ?Sized> PolicyEngine for std::sync::Arc<T> {
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        (**self).evaluate(request).await
    }

    fn evaluate_inline(
        &self,
        request: &EvalRequest,
    ) -> Option<Result<EvalResponse, ProviderError>> {
        (**self).evaluate_inline(request)
    }

    async fn reload(&self, bundle: &[u8]) -> Result<(), ProviderError> {
        (**self).reload(bundle).await
    }

    fn watch(&self) -> Result<watch::Receiver<PolicyUpdate>, ProviderError> {
        (**self).watch()
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        (**self).start(context).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}
