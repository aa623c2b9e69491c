use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::error::ProviderError;
use crate::policy::{EvalRequest, EvalResponse, PolicyEngine};

/// Allows exactly the listed (peer principal, action, resource) triples; everything else is
/// denied with a reason. `"*"` in a rule matches anything.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    rules: Vec<(String, String, String)>,
    version: Option<std::sync::Arc<str>>,
}

impl AllowList {
    /// An empty list: everything is denied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `peer` (a principal such as a SPIFFE ID) to perform `action` on `resource`.
    pub fn allow(mut self, peer: &str, action: &str, resource: &str) -> Self {
        self.rules
            .push((peer.to_owned(), action.to_owned(), resource.to_owned()));
        self
    }

    /// Reports `version` as the policy version of every decision.
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(version.into());
        self
    }

    fn decide(&self, request: &EvalRequest) -> EvalResponse {
        let peer = request.peer.principal().unwrap_or("");
        let matches = |rule: &str, value: &str| rule == "*" || rule == value;
        let allowed = self.rules.iter().any(|(p, a, r)| {
            matches(p, peer)
                && matches(a, &request.action.name)
                && matches(r, &request.resource.value)
        });
        let mut response = if allowed {
            EvalResponse::allow()
        } else {
            EvalResponse::deny(format!(
                "{peer} may not {} {}",
                request.action.name, request.resource.value
            ))
        };
        response.policy_version.clone_from(&self.version);
        response
    }
}

#[async_trait]
impl PolicyEngine for AllowList {
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        Ok(self.decide(request))
    }
}

type BoxedDecision = Pin<Box<dyn Future<Output = Result<EvalResponse, ProviderError>> + Send>>;

/// A policy answering with a closure, to script failures and slow evaluations.
pub struct PolicyFn {
    decide: Box<dyn Fn(&EvalRequest) -> BoxedDecision + Send + Sync>,
}

impl std::fmt::Debug for PolicyFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyFn")
    }
}

impl PolicyFn {
    /// A policy calling `decide` for every request.
    pub fn new<F, Fut>(decide: F) -> Self
    where
        F: Fn(&EvalRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<EvalResponse, ProviderError>> + Send + 'static,
    {
        Self {
            decide: Box::new(move |request| Box::pin(decide(request))),
        }
    }
}

#[async_trait]
impl PolicyEngine for PolicyFn {
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        (self.decide)(request).await
    }
}
