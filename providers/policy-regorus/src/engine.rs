//! [`RegorusPolicy`]: the [`PolicyEngine`] on regorus, with atomic reload.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use ligand_runtime::{EvalRequest, EvalResponse, PolicyEngine, ProviderError};

use crate::compiled::Compiled;
use crate::config::RegorusConfig;
use crate::error::{EvalError, LoadError};
use crate::loader::Loader;

/// Rego policy on regorus: a folder or an OPA bundle, compiled once, evaluated for every
/// request on the blocking thread pool, and swapped atomically by
/// [`reload`](PolicyEngine::reload).
///
/// ```
/// use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
///
/// let dir = std::env::temp_dir().join(format!("ligand-doc-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("authz")).unwrap();
/// std::fs::write(
///     dir.join("authz/policy.rego"),
///     "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n",
/// )
/// .unwrap();
/// let policy = RegorusPolicy::new(&RegorusConfig::folder(&dir)).unwrap();
/// assert!(policy.is_loaded());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RegorusPolicy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    current: ArcSwapOption<Compiled>,
    loader: Loader,
    closed: AtomicBool,
}

// === impl RegorusPolicy ===

impl RegorusPolicy {
    /// An engine for `config`, with its folder or bundle loaded now. Fail-closed: an
    /// unreadable, unsigned (when required), wrongly signed or invalid policy is an error.
    /// With neither folder nor bundle configured the engine starts empty and waits for a
    /// bundle through [`reload`](PolicyEngine::reload); until then every evaluation fails.
    pub fn new(config: &RegorusConfig) -> Result<Self, LoadError> {
        let loader = Loader::new(config)?;
        let initial = match (&config.folder, &config.bundle) {
            (Some(dir), _) => Some(loader.load_folder(dir)?),
            (None, Some(path)) => Some(loader.load_archive_file(path)?),
            (None, None) => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                current: ArcSwapOption::new(initial.map(Arc::new)),
                loader,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Verifies and compiles the bundle `archive`, then swaps it in; on error the current
    /// policy stays. Returns the new revision. Runs on the calling thread.
    pub fn load_bundle(&self, archive: &[u8]) -> Result<Option<String>, LoadError> {
        Ok(self.inner.install(self.inner.loader.load_archive(archive)?))
    }

    /// Loads the policy folder `dir` (verified like a bundle), then swaps it in; on error the
    /// current policy stays. Returns the new revision. Runs on the calling thread.
    pub fn load_folder(&self, dir: &Path) -> Result<Option<String>, LoadError> {
        Ok(self.inner.install(self.inner.loader.load_folder(dir)?))
    }

    /// Whether a policy is loaded.
    pub fn is_loaded(&self) -> bool {
        self.inner.current.load().is_some()
    }

    /// The revision of the policy in force, from its bundle manifest.
    pub fn policy_version(&self) -> Option<String> {
        self.inner
            .current
            .load()
            .as_ref()
            .and_then(|c| c.version().map(str::to_owned))
    }

    /// Decides `request` on the calling thread. [`PolicyEngine::evaluate`] does the same on
    /// the blocking thread pool.
    pub fn evaluate_now(&self, request: &EvalRequest) -> Result<EvalResponse, EvalError> {
        let policy = self.inner.policy()?;
        policy.evaluate(input(request)?)
    }
}

/// The input document: exactly `serde_json::to_value(request)`.
fn input(request: &EvalRequest) -> Result<regorus::Value, EvalError> {
    serde_json::to_value(request)
        .map(regorus::Value::from)
        .map_err(EvalError::Input)
}

fn task_error(error: tokio::task::JoinError) -> EvalError {
    EvalError::Task(error.to_string())
}

// === impl Inner ===

impl Inner {
    /// The policy in force, pinned for one evaluation.
    fn policy(&self) -> Result<Arc<Compiled>, EvalError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EvalError::Closed);
        }
        self.current.load_full().ok_or(EvalError::NoPolicy)
    }

    /// Swaps `compiled` in; returns its revision.
    fn install(&self, compiled: Compiled) -> Option<String> {
        let version = compiled.version().map(str::to_owned);
        self.current.store(Some(Arc::new(compiled)));
        tracing::info!(revision = version.as_deref().unwrap_or(""), "policy loaded");
        version
    }
}

// === impl PolicyEngine for RegorusPolicy ===

#[async_trait]
impl PolicyEngine for RegorusPolicy {
    /// Pins the policy in force, then evaluates on the blocking pool so that a slow policy
    /// never stalls an async worker. A reload during the evaluation does not affect it.
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        let policy = self
            .inner
            .policy()
            .map_err(|e| ProviderError::backend("policy unavailable", e))?;
        let input = input(request).map_err(|e| ProviderError::backend("policy input", e))?;
        tokio::task::spawn_blocking(move || policy.evaluate(input))
            .await
            .map_err(task_error)
            .and_then(|decision| decision)
            .map_err(|e| ProviderError::backend("policy evaluation failed", e))
    }

    /// Verifies, compiles and swaps in the OPA bundle `bundle`. On any error the previous
    /// policy stays in force and the error says why (signature, Rego file and line, ...).
    async fn reload(&self, bundle: &[u8]) -> Result<(), ProviderError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let inner = self.inner.clone();
        let archive = bundle.to_vec();
        let loaded = tokio::task::spawn_blocking(move || {
            inner
                .loader
                .load_archive(&archive)
                .map(|c| inner.install(c))
        })
        .await
        .map_err(|e| ProviderError::backend("policy bundle load task failed", e))?;
        match loaded {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, "policy bundle rejected; the previous policy stays");
                Err(ProviderError::backend("policy bundle rejected", error))
            }
        }
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.current.store(None);
        Ok(())
    }
}
