//! A policy compiled once and evaluated many times: the regorus engine, prepared, with the
//! decision module that reads the allow and reason rules in one evaluation, and its decision
//! cache.
//!
//! Evaluation runs on the calling thread. Each thread keeps its own copy of the prepared
//! engine for the revision in force and reuses it (regorus resets its evaluation state at
//! every evaluation), so a request neither hands off to another thread nor clones and drops
//! an engine. A slow policy is bounded by regorus's execution timer, set to the configured
//! time limit.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ligand_runtime::{EvalRequest, EvalResponse};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use crate::analysis::{Analysis, analyse};
use crate::cache::{Cached, DecisionCache, KeyPlan};
use crate::conflicts::{Conflict, find_conflict};
use crate::error::{EvalError, LoadError, rego_location};

/// The module the engine adds to every policy: it gathers the configured allow and reason
/// rules into one document, so one evaluation computes both and shares every rule they have
/// in common. Sets keep an undefined rule apart from a defined one (an empty set).
const DECISION_PACKAGE: &str = "ligand_decision__";
const DECISION_FILE: &str = "ligand:decision.rego";
const DECISION_RULE: &str = "data.ligand_decision__.decision";

/// How often (in interpreter work units) the time limit is checked.
const TIMER_CHECK_INTERVAL: NonZeroU32 = NonZeroU32::MIN.saturating_add(63);

/// The configured rules, validated as plain `data.a.b.c` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) allow: String,
    pub(crate) reason: String,
}

impl Rules {
    pub(crate) fn new(allow: &str, reason: &str) -> Result<Self, LoadError> {
        for (name, rule) in [("allow_rule", allow), ("reason_rule", reason)] {
            if !is_rule_path(rule) {
                return Err(LoadError::Config(format!(
                    "{name} {rule:?} is not a rule path such as \"data.ligand.authz.allow\""
                )));
            }
        }
        Ok(Self {
            allow: allow.to_owned(),
            reason: reason.to_owned(),
        })
    }

    fn decision_module(&self) -> String {
        format!(
            "package {DECISION_PACKAGE}\n\nimport rego.v1\n\n\
             decision := [{{value | value := {}}}, {{value | value := {}}}]\n",
            self.allow, self.reason
        )
    }
}

/// `data` followed by identifier segments; nothing else can reach the generated module.
fn is_rule_path(path: &str) -> bool {
    let mut segments = path.split('.');
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    segments.next() == Some("data") && {
        let rest: Vec<&str> = segments.collect();
        !rest.is_empty() && rest.iter().all(|s| is_ident(s))
    }
}

/// Whether and how much to cache decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheSettings {
    pub(crate) enabled: bool,
    pub(crate) capacity: usize,
}

/// Why a compiled policy has no decision cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Uncached {
    /// `cache = false` in the configuration.
    Disabled,
    /// A builtin the policy calls may answer differently for the same input.
    Impure { builtin: String, location: String },
}

/// A loaded, compiled policy. Immutable once built.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// Tells apart the per-thread engine copies of different revisions.
    id: u64,
    engine: Engine,
    version: Option<Arc<str>>,
    cache: Result<DecisionCache, Uncached>,
}

/// Identifies each compiled revision for the per-thread engine copies.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's copy of the prepared engine, with the id of the revision it belongs to.
    static ENGINE: RefCell<Option<(u64, Engine)>> = const { RefCell::new(None) };

    /// This thread's copy of the revision's version, with the revision's id: every response
    /// takes a count on it, and a version shared by every thread would have them all write
    /// the same cache line for it.
    static VERSION: RefCell<Option<(u64, Option<Arc<str>>)>> = const { RefCell::new(None) };
}

impl Compiled {
    /// Parses and compiles `modules` (`(file, source)`) with `data`, failing on the first
    /// invalid module with its file and line.
    pub(crate) fn new(
        modules: &[(String, String)],
        data: serde_json::Value,
        rules: &Rules,
        version: Option<String>,
        time_limit: Duration,
        cache: CacheSettings,
    ) -> Result<Self, LoadError> {
        if modules.is_empty() {
            return Err(LoadError::NoModules);
        }
        let mut engine = Engine::new();
        // Builtin errors (a failed `to_number`, a division by zero) fail the evaluation
        // rather than making the rule silently undefined.
        engine.set_strict_builtin_errors(true);
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: time_limit,
            check_interval: TIMER_CHECK_INTERVAL,
        });
        let mut declared = false;
        for (file, source) in modules {
            let package = engine
                .add_policy(file.clone(), source.clone())
                .map_err(|e| rego_error(file, &e))?;
            // The allow rule, relative to this module's package, if it lies below it.
            let relative = rules
                .allow
                .strip_prefix(package.as_str())
                .and_then(|rest| rest.strip_prefix('.'));
            declared |= relative.is_some_and(|rule| {
                engine
                    .has_declared_rule_rooted_at(file, rule)
                    .unwrap_or(false)
            });
        }
        if !declared {
            return Err(LoadError::MissingAllowRule(rules.allow.clone()));
        }
        engine
            .add_policy(DECISION_FILE.to_owned(), rules.decision_module())
            .map_err(|e| rego_error(DECISION_FILE, &e))?;
        // A value in `data` at a rule's path would replace the rule; the generated module is
        // checked with the others.
        if let Some(conflict) = find_conflict(engine.get_modules(), &data) {
            let Conflict {
                rule,
                data,
                file,
                line,
            } = conflict;
            return Err(LoadError::RuleDataConflict {
                rule,
                data,
                file,
                line,
            });
        }
        engine
            .add_data(Value::from(data))
            .map_err(|e| LoadError::Data(format!("{e:#}")))?;
        // Compiling analyses every module (unsafe variables, unknown functions, recursion)
        // and leaves the engine prepared, so evaluations never parse or analyse again.
        engine
            .compile_with_entrypoint(&DECISION_RULE.into())
            .map_err(|e| rego_error("<policy>", &e))?;
        let Analysis { reads, impure } = analyse(engine.get_modules());
        let cache = match (cache.enabled, impure) {
            (false, _) => Err(Uncached::Disabled),
            (true, Some(impurity)) => Err(Uncached::Impure {
                builtin: impurity.builtin,
                location: impurity.location,
            }),
            (true, None) => Ok(DecisionCache::new(KeyPlan::new(&reads), cache.capacity)),
        };
        match &cache {
            Ok(cache) => tracing::info!(key = %cache.plan(), "policy decision cache on"),
            Err(Uncached::Disabled) => tracing::info!("policy decision cache off (configured)"),
            Err(Uncached::Impure { builtin, location }) => tracing::info!(
                %builtin, %location,
                "policy decision cache off: the policy calls a builtin whose answer can change for the same input"
            ),
        }
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            engine,
            version: version.map(Arc::from),
            cache,
        })
    }

    /// The bundle revision.
    pub(crate) fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The decision cache's key, or why there is none.
    pub(crate) fn cache_plan(&self) -> Result<String, Uncached> {
        self.cache
            .as_ref()
            .map(|cache| cache.plan().to_string())
            .map_err(Clone::clone)
    }

    /// How many decisions the cache holds.
    pub(crate) fn cached_decisions(&self) -> usize {
        self.cache.as_ref().map_or(0, DecisionCache::len)
    }

    /// Decides `request`: from the decision cache when the policy allows caching and an
    /// input identical in every field it reads was decided before, by evaluation otherwise.
    pub(crate) fn decide(&self, request: &EvalRequest) -> Result<EvalResponse, EvalError> {
        let input = || crate::input::input(request);
        let evaluate = || self.with_engine(|engine| eval_decision(engine, input()));
        let (decision, cached) = match &self.cache {
            Ok(cache) => cache.get_or_decide(request, evaluate)?,
            Err(_) => (evaluate()?, false),
        };
        Ok(self.response(decision, cached))
    }

    /// Decides `request` by evaluation on a fresh copy of the prepared engine, bypassing the
    /// cache and this thread's copy: the reference the cache is checked against.
    pub(crate) fn decide_fresh(&self, request: &EvalRequest) -> Result<EvalResponse, EvalError> {
        let decision = eval_decision(&mut self.engine.clone(), crate::input::input(request))?;
        Ok(self.response(decision, false))
    }

    fn response(&self, decision: Cached, cached: bool) -> EvalResponse {
        EvalResponse::decided(decision.allowed)
            .with_reason(decision.reason)
            .with_policy_version(self.thread_version())
            .from_cache(cached)
    }

    /// The version, from this thread's copy (made for this revision if needed).
    fn thread_version(&self) -> Option<Arc<str>> {
        VERSION.with(|slot| {
            let Ok(mut slot) = slot.try_borrow_mut() else {
                return self.version.clone();
            };
            match &*slot {
                Some((id, version)) if *id == self.id => version.clone(),
                _ => {
                    let version = self.version.as_deref().map(Arc::from);
                    *slot = Some((self.id, version.clone()));
                    version
                }
            }
        })
    }

    /// Runs `f` on this thread's copy of the prepared engine, making it for this revision if
    /// needed. A copy whose evaluation failed is discarded rather than trusted again.
    fn with_engine<R, E>(&self, f: impl FnOnce(&mut Engine) -> Result<R, E>) -> Result<R, E> {
        ENGINE.with(|slot| {
            let Ok(mut slot) = slot.try_borrow_mut() else {
                // Re-entered on this thread (not expected): a private copy.
                return f(&mut self.engine.clone());
            };
            let engine = match &mut *slot {
                Some((id, engine)) if *id == self.id => engine,
                other => &mut other.insert((self.id, self.engine.clone())).1,
            };
            let result = f(engine);
            if result.is_err() {
                *slot = None;
            }
            result
        })
    }
}

/// Evaluates the decision document on `engine` for the input document `input`, and reads the
/// outcome and reason from it (`[allow set, reason set]`).
fn eval_decision(engine: &mut Engine, input: Value) -> Result<Cached, EvalError> {
    engine.set_input(input);
    let decision = engine
        .eval_rule(DECISION_RULE.to_owned())
        .map_err(|e| EvalError::Rego(format!("{e:#}")))?;
    let (allow, reason) = match &decision {
        Value::Array(items) if items.len() == 2 => (&items[0], &items[1]),
        other => {
            return Err(EvalError::Rego(format!(
                "decision document has an unexpected shape: {other}"
            )));
        }
    };
    // Only a single boolean `true` allows: undefined (empty set), `false`, any other
    // value, all deny.
    let allowed = matches!(allow, Value::Set(values)
        if values.len() == 1 && values.contains(&Value::Bool(true)));
    let reason = match reason {
        Value::Set(values) => values.iter().next().map(|value| match value {
            Value::String(s) => s.clone(),
            other => Arc::from(other.to_string()),
        }),
        _ => None,
    };
    Ok(Cached { allowed, reason })
}

/// A load error naming the module: regorus's own `--> file:line:col` marker when present.
fn rego_error(file: &str, error: &impl std::fmt::Display) -> LoadError {
    let message = format!("{error:#}");
    let (file, line) = match rego_location(&message) {
        Some((file, line)) => (file, Some(line)),
        None => (file.to_owned(), None),
    };
    LoadError::Rego {
        file,
        line,
        message: message.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths_are_plain_references() {
        assert!(is_rule_path("data.ligand.authz.allow"));
        assert!(is_rule_path("data.x"));
        assert!(is_rule_path("data._a1"));
        for bad in [
            "",
            "data",
            "data.",
            "allow",
            "input.allow",
            "data.a..b",
            "data.a[\"b\"]",
            "data.a\nallow := true",
            "data.1a",
            "data.a-b",
        ] {
            assert!(!is_rule_path(bad), "{bad:?}");
        }
    }
}
