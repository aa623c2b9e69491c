//! The engine's configuration, deserializable from `ligand.toml`'s `[policy]` table.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The default rule whose value decides a request.
pub const DEFAULT_ALLOW_RULE: &str = "data.ligand.authz.allow";

/// The default rule whose value, when a string, is reported as the decision's reason.
pub const DEFAULT_REASON_RULE: &str = "data.ligand.authz.reason";

/// The default CPU budget of one evaluation, inside the interpreter.
pub const DEFAULT_EVAL_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Where policy comes from, which rules decide, and how bundles are verified.
///
/// ```
/// use ligand_policy_regorus::RegorusConfig;
///
/// let config: RegorusConfig = serde_json::from_value(serde_json::json!({
///     "bundle": "/etc/ligand/bundle.tar.gz",
///     "signing": {
///         "keys": [{ "id": "bundle-key", "algorithm": "ES256", "path": "/etc/ligand/bundle.pub.pem" }],
///         "scope": "accounts"
///     }
/// }))
/// .unwrap();
/// assert!(config.signing.is_required());
/// assert_eq!(config.allow_rule, "data.ligand.authz.allow");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegorusConfig {
    /// A folder of `*.rego` modules and `data.json` documents (OPA's bundle layout, unpacked).
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// An OPA bundle archive (`.tar.gz`). At most one of `folder` and `bundle` may be set;
    /// with neither, the engine starts empty and waits for
    /// [`PolicyEngine::reload`](ligand_runtime::PolicyEngine::reload) (a bundle fetcher), and
    /// every evaluation before that fails, which denies.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// The rule that decides (default `data.ligand.authz.allow`). Only a boolean `true` allows.
    #[serde(default = "default_allow_rule")]
    pub allow_rule: String,
    /// The rule whose value is reported as the reason (default `data.ligand.authz.reason`).
    /// The policy need not define it.
    #[serde(default = "default_reason_rule")]
    pub reason_rule: String,
    /// Bundle signature verification.
    #[serde(default)]
    pub signing: SigningConfig,
    /// The most wall-clock time one evaluation may take inside the interpreter, in
    /// milliseconds (default 5000); past it the evaluation fails, which denies.
    #[serde(default = "default_eval_time_limit_ms")]
    pub eval_time_limit_ms: u64,
    /// Whether to cache decisions (default `true`). The cache is used only when it is sound
    /// for the policy in force: every builtin the policy calls is pure (no `time.*`,
    /// `rand.*`, `uuid.*`, `http.send`, `net.*`, `opa.runtime`, `io.jwt.*`, ...), and each
    /// decision is keyed on exactly the `input` fields the policy can read plus the revision.
    /// Errors are never cached; a reload starts an empty cache with the new revision.
    #[serde(default = "default_cache")]
    pub cache: bool,
    /// The most decisions the cache keeps (default 10000); the least useful are evicted.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
    /// Whether to reload the policy when a file in `folder` changes (default `true` with a
    /// folder; ignored for a bundle, which a bundle fetcher reloads). A change that does not
    /// load leaves the previous policy in force.
    #[serde(default)]
    pub watch: Option<bool>,
    /// A candidate policy folder, evaluated beside the enforced policy on live traffic and
    /// never enforced: the framework logs and counts where the two disagree. It loads with
    /// this configuration's rules and limits, and is watched like `folder`.
    #[serde(default)]
    pub shadow: Option<PathBuf>,
}

/// The default number of decisions the cache keeps.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

fn default_cache() -> bool {
    true
}

fn default_cache_capacity() -> usize {
    DEFAULT_CACHE_CAPACITY
}

fn default_allow_rule() -> String {
    DEFAULT_ALLOW_RULE.to_owned()
}

fn default_reason_rule() -> String {
    DEFAULT_REASON_RULE.to_owned()
}

fn default_eval_time_limit_ms() -> u64 {
    DEFAULT_EVAL_TIME_LIMIT.as_millis() as u64
}

impl Default for RegorusConfig {
    fn default() -> Self {
        Self {
            folder: None,
            bundle: None,
            allow_rule: default_allow_rule(),
            reason_rule: default_reason_rule(),
            signing: SigningConfig::default(),
            eval_time_limit_ms: default_eval_time_limit_ms(),
            cache: default_cache(),
            cache_capacity: default_cache_capacity(),
            watch: None,
            shadow: None,
        }
    }
}

impl RegorusConfig {
    /// Policy from the folder at `path`, with every other setting at its default.
    pub fn folder(path: impl Into<PathBuf>) -> Self {
        Self {
            folder: Some(path.into()),
            ..Self::default()
        }
    }

    /// Policy from the bundle archive at `path`, with every other setting at its default.
    pub fn bundle(path: impl Into<PathBuf>) -> Self {
        Self {
            bundle: Some(path.into()),
            ..Self::default()
        }
    }

    /// No initial policy: the engine waits for a bundle through `reload`.
    pub fn awaiting_bundle() -> Self {
        Self::default()
    }

    /// Sets the signature verification.
    pub fn with_signing(mut self, signing: SigningConfig) -> Self {
        self.signing = signing;
        self
    }

    /// Turns the decision cache on (the default) or off.
    pub fn with_cache(mut self, cache: bool) -> Self {
        self.cache = cache;
        self
    }

    /// Sets the allow and reason rules.
    pub fn with_rules(mut self, allow: impl Into<String>, reason: impl Into<String>) -> Self {
        self.allow_rule = allow.into();
        self.reason_rule = reason.into();
        self
    }

    /// Turns the folder watch on (the default with a folder) or off.
    pub fn with_watch(mut self, watch: bool) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Sets the shadow policy folder: evaluated on live traffic, never enforced.
    pub fn with_shadow(mut self, folder: impl Into<PathBuf>) -> Self {
        self.shadow = Some(folder.into());
        self
    }

    /// Whether the engine reloads its folder on change: with a folder, unless turned off.
    pub fn watches(&self) -> bool {
        self.folder.is_some() && self.watch.unwrap_or(true)
    }

    /// The configuration of the shadow policy, when one is set: this configuration with the
    /// shadow folder as its folder.
    pub fn shadow_config(&self) -> Option<RegorusConfig> {
        self.shadow.as_ref().map(|folder| RegorusConfig {
            folder: Some(folder.clone()),
            bundle: None,
            shadow: None,
            ..self.clone()
        })
    }

    /// The per-evaluation time limit.
    pub fn eval_time_limit(&self) -> Duration {
        Duration::from_millis(self.eval_time_limit_ms)
    }
}

/// How bundle signatures are verified (OPA's bundle signing format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The public keys signatures may be made with, by key ID.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// The scope signatures must carry (OPA's `scope`); none means signatures must carry none.
    #[serde(default)]
    pub scope: Option<String>,
    /// Whether every bundle must be signed. Defaults to `true` when keys are configured. With
    /// `false`, an unsigned bundle is accepted but a signed one must still verify.
    #[serde(default)]
    pub required: Option<bool>,
}

impl SigningConfig {
    /// Verification with `keys`, signatures required.
    pub fn keys(keys: impl IntoIterator<Item = KeyConfig>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Sets the scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Whether unsigned bundles are refused: as configured, else whenever keys are configured.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(!self.keys.is_empty())
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key ID signatures name (the JWT `kid`).
    pub id: String,
    /// The JWT algorithm the key verifies: `ES256`, `RS256` (also `ES384`, `PS256`, `EdDSA`, ...).
    pub algorithm: String,
    /// The PEM public key inline. Exactly one of `pem` and `path` is set.
    #[serde(default)]
    pub pem: Option<String>,
    /// A file holding the PEM public key.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl KeyConfig {
    /// A key given inline as PEM.
    pub fn pem(
        id: impl Into<String>,
        algorithm: impl Into<String>,
        pem: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            algorithm: algorithm.into(),
            pem: Some(pem.into()),
            path: None,
        }
    }

    /// A key read from a PEM file.
    pub fn path(
        id: impl Into<String>,
        algorithm: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> Self {
        Self {
            id: id.into(),
            algorithm: algorithm.into(),
            pem: None,
            path: Some(path.into()),
        }
    }
}
