//! [`RegorusPolicy`]: the [`PolicyEngine`] on regorus, with atomic reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use ligand_opa_bundle::Bundle;
use ligand_runtime::{EvalRequest, EvalResponse, PolicyEngine, PolicyUpdate, ProviderError};
use tokio::sync::watch;

use crate::compiled::{Compiled, Uncached};
use crate::config::RegorusConfig;
use crate::error::{EvalError, LoadError};
use crate::loader::Loader;

/// Rego policy on regorus: a folder or an OPA bundle, compiled once, decided for every
/// request on the calling task (from the decision cache when the policy allows it), and
/// swapped atomically, cache included, by [`reload`](PolicyEngine::reload).
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
pub(crate) struct Inner {
    current: ArcSwapOption<Compiled>,
    loader: Loader,
    closed: AtomicBool,
    /// The folder to reload on change, when the configuration watches it.
    watched: Option<Watched>,
}

/// A watched folder and what was read from it at load, for the watch to compare with.
#[derive(Debug)]
struct Watched {
    dir: PathBuf,
    /// Taken by the watch when it starts.
    loaded: Mutex<Option<Bundle>>,
}

// === impl RegorusPolicy ===

impl RegorusPolicy {
    /// An engine for `config`, with its folder or bundle loaded now. Fail-closed: an
    /// unreadable, unsigned (when required), wrongly signed or invalid policy is an error.
    /// With neither folder nor bundle configured the engine starts empty and waits for a
    /// bundle through [`reload`](PolicyEngine::reload); until then every evaluation fails.
    pub fn new(config: &RegorusConfig) -> Result<Self, LoadError> {
        let loader = Loader::new(config)?;
        let mut watched = None;
        let initial = match (&config.folder, &config.bundle) {
            (Some(dir), _) => {
                let files = Loader::read_folder(dir)?;
                let compiled = loader.load_read_folder(&files, dir)?;
                if config.watches() {
                    watched = Some(Watched {
                        dir: dir.clone(),
                        loaded: Mutex::new(Some(files)),
                    });
                }
                Some(compiled)
            }
            (None, Some(path)) => Some(loader.load_archive_file(path)?),
            (None, None) => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                current: ArcSwapOption::new(initial.map(Arc::new)),
                loader,
                closed: AtomicBool::new(false),
                watched,
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

    /// The decision cache of the policy in force: `Ok` with the input fields its key is made
    /// of, or `Err` saying why decisions are not cached (turned off, or the policy calls a
    /// builtin such as `time.now_ns` whose answer can change for the same input).
    pub fn decision_cache(&self) -> Result<String, String> {
        let plan = self
            .inner
            .with_policy(Compiled::cache_plan)
            .map_err(|e| e.to_string())?;
        plan.map_err(|why| match why {
            Uncached::Disabled => "turned off by configuration".to_owned(),
            Uncached::Impure { builtin, location } => {
                format!("the policy calls {builtin} at {location}")
            }
        })
    }

    /// How many decisions the cache of the policy in force holds.
    pub fn cached_decisions(&self) -> usize {
        self.inner
            .current
            .load()
            .as_ref()
            .map_or(0, |policy| policy.cached_decisions())
    }

    /// The revision of the policy in force, from its bundle manifest.
    pub fn policy_version(&self) -> Option<String> {
        self.inner.version()
    }

    /// Decides `request` on the calling thread, as [`PolicyEngine::evaluate`] does.
    pub fn evaluate_now(&self, request: &EvalRequest) -> Result<EvalResponse, EvalError> {
        self.inner.with_policy(|policy| policy.decide(request))?
    }

    /// One decision, its errors as the framework's.
    fn decide(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        self.inner
            .with_policy(|policy| policy.decide(request))
            .map_err(|e| ProviderError::backend("policy unavailable", e))?
            .map_err(|e| ProviderError::backend("policy evaluation failed", e))
    }

    /// Evaluates `request` without the decision cache, on a fresh copy of the engine: the
    /// reference the cache is checked against.
    #[doc(hidden)]
    pub fn evaluate_uncached(&self, request: &EvalRequest) -> Result<EvalResponse, EvalError> {
        self.inner
            .with_policy(|policy| policy.decide_fresh(request))?
    }
}

// === impl Inner ===

impl Inner {
    /// `f` on the policy in force, pinned for the call without taking a reference count:
    /// `arc-swap` records the loan in a slot of this thread's, where `load_full`'s count
    /// would be two more writes a decision to a cache line that every deciding thread
    /// writes. A reload meanwhile waits for nothing: it pays the loan back with a count of
    /// its own, and an evaluation finishes on the policy it began with.
    fn with_policy<R>(&self, f: impl FnOnce(&Compiled) -> R) -> Result<R, EvalError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EvalError::Closed);
        }
        let current = self.current.load();
        current.as_deref().map(f).ok_or(EvalError::NoPolicy)
    }

    /// The revision of the policy in force.
    pub(crate) fn version(&self) -> Option<String> {
        self.current
            .load()
            .as_ref()
            .and_then(|c| c.version().map(str::to_owned))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Loads `files`, read from the folder `dir`, and swaps them in; on error the current
    /// policy stays.
    pub(crate) fn reload_folder(
        &self,
        files: &Bundle,
        dir: &Path,
    ) -> Result<Option<String>, LoadError> {
        Ok(self.install(self.loader.load_read_folder(files, dir)?))
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
    /// Pins the policy in force and decides on the calling task: a cached decision costs a
    /// key encoding and a lookup, a cold one a regorus evaluation bounded by the configured
    /// time limit. Handing each request to the blocking pool instead would cost more than
    /// most evaluations (a thread wake-up per request, and a pool that grows under load). A
    /// reload during the evaluation does not affect it.
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        self.decide(request)
    }

    /// Always decides inline: evaluation is in-process and bounded by the engine's own limits.
    fn evaluate_inline(
        &self,
        request: &EvalRequest,
    ) -> Option<Result<EvalResponse, ProviderError>> {
        Some(self.decide(request))
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

    /// With a watched folder, starts the watch: any change to a file in the folder (debounced,
    /// see the crate docs) reloads the whole folder, and the outcome is published. A change
    /// that does not load leaves the previous policy in force. The watch stops when the
    /// receiver is dropped or the engine is closed.
    fn watch(&self) -> Result<watch::Receiver<PolicyUpdate>, ProviderError> {
        if self.inner.is_closed() {
            return Err(ProviderError::Closed);
        }
        let watched = self
            .inner
            .watched
            .as_ref()
            .ok_or(ProviderError::NotSupported)?;
        // A second watch has nothing to compare with: its first check reloads.
        let loaded = watched
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        crate::watch::start(&self.inner, watched.dir.clone(), loaded)
            .map_err(|e| ProviderError::backend("policy folder watch", e))
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.current.store(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use ligand_runtime::{Action, Chain, Link, RequestLine, Resource};

    use super::*;

    fn write_policy(dir: &Path, revision: &str, allowed: bool) {
        std::fs::create_dir_all(dir.join("authz")).unwrap();
        std::fs::write(
            dir.join("authz/policy.rego"),
            format!(
                "package ligand.authz\n\nimport rego.v1\n\nallow := {allowed}\n\nreason := \"{revision}\"\n"
            ),
        )
        .unwrap();
    }

    fn request() -> EvalRequest {
        let peer = Link::workload("spiffe://example.org/service/caller");
        EvalRequest::new(
            Chain::from(vec![peer.clone()]),
            peer,
            Resource::http_path("/hello/{name}"),
            Action::new("GET"),
            RequestLine::new(http::Method::GET, "/hello/ada"),
            "spiffe://example.org/service/hello",
        )
    }

    #[test]
    fn an_evaluation_finishes_on_the_policy_it_pinned_and_the_cache_goes_with_it() {
        let old = tempfile::tempdir().unwrap();
        write_policy(old.path(), "old", true);
        let new = tempfile::tempdir().unwrap();
        write_policy(new.path(), "new", false);
        let policy = RegorusPolicy::new(&RegorusConfig::folder(old.path())).unwrap();
        let req = request();
        assert!(policy.evaluate_now(&req).unwrap().allowed);
        assert!(
            policy.evaluate_now(&req).unwrap().cached,
            "the second is a hit"
        );

        // An evaluation pins the policy before deciding; a reload in between changes nothing
        // for it.
        let finished = policy
            .inner
            .with_policy(|pinned| {
                policy.load_folder(new.path()).unwrap();
                pinned.decide(&req).unwrap()
            })
            .unwrap();
        assert!(finished.allowed && finished.cached);
        assert_eq!(finished.reason.as_deref(), Some("old"));

        // Evaluations after the reload see only the new policy: its cache starts empty.
        let fresh = policy.evaluate_now(&req).unwrap();
        assert!(!fresh.allowed && !fresh.cached);
        assert_eq!(fresh.reason.as_deref(), Some("new"));
        assert!(policy.evaluate_now(&req).unwrap().cached);
    }
}
