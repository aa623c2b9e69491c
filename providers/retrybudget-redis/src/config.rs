//! Where the fleet's Redis is and how long the store may take, deserializable from a
//! `ligand.toml` section.
//!
//! The URL rules are those of `ligand-ratelimit-redis` (TLS verified, no `#fragment`), kept
//! here as a small separate copy: the code is Redis-specific, so it belongs in neither the
//! provider-neutral runtime nor another provider.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one sync may take, when the configuration does not say.
pub const DEFAULT_TIMEOUT_MS: u64 = 500;

/// How long connecting (and the first `PING`) may take, when the configuration does not say.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The prefix of every key the store writes, when the configuration does not say.
pub const DEFAULT_KEY_PREFIX: &str = "ligand:retry";

/// The store's configuration.
///
/// ```
/// use ligand_retrybudget_redis::RedisFleetConfig;
///
/// let config: RedisFleetConfig =
///     serde_json::from_str(r#"{ "url": "rediss://retry.internal:6380/0", "timeout_ms": 200 }"#)
///         .unwrap();
/// assert_eq!(config.key_prefix, "ligand:retry");
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisFleetConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. The server's
    /// certificate is always verified: a `#fragment` (the redis client's `#insecure`) is
    /// refused.
    pub url: String,
    /// A PEM file of CA certificates that a `rediss://` server must chain to, instead of the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The prefix of the store's keys; instances sharing it (and a target) share a budget.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// How long one sync may take, in milliseconds; a slower sync counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long connecting may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

impl fmt::Debug for RedisFleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleetConfig")
            .field("url", &redacted(&self.url))
            .field("ca_file", &self.ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

impl RedisFleetConfig {
    /// The defaults for a Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            key_prefix: default_key_prefix(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }

    /// Trusts the CA certificates in `path` for a `rediss://` server.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets how long one sync may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Checks every setting; the error names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_url(&self.url)?;
        if self.key_prefix.is_empty() {
            return Err(ConfigError::EmptyKeyPrefix);
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::ZeroTimeout("timeout_ms"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(ConfigError::ZeroTimeout("connect_timeout_ms"));
        }
        Ok(())
    }
}

/// Why a [`RedisFleetConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `url` ends in `#insecure`, the redis client's marker for skipping the server
    /// certificate's verification.
    #[error(
        "url: {url} turns off TLS certificate verification (#insecure); \
         trust a private CA with ca_file instead"
    )]
    InsecureTls {
        /// The URL, password redacted.
        url: String,
    },
    /// `url` has another `#fragment`; redis URLs take none.
    #[error("url: {url} has a #fragment; redis urls take none")]
    UrlFragment {
        /// The URL, password redacted.
        url: String,
    },
    /// `key_prefix` is empty.
    #[error("key_prefix: must not be empty")]
    EmptyKeyPrefix,
    /// A timeout is zero.
    #[error("{0}: must be at least 1")]
    ZeroTimeout(&'static str),
}

/// Refuses any URL fragment, above all `#insecure`; tabs and newlines, which the client's
/// parser drops, are ignored in the comparison.
fn check_url(url: &str) -> Result<(), ConfigError> {
    let Some((base, fragment)) = url.split_once('#') else {
        return Ok(());
    };
    let fragment: String = fragment
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let url = format!("{}#{fragment}", redacted(base));
    if fragment.trim().eq_ignore_ascii_case("insecure") {
        Err(ConfigError::InsecureTls { url })
    } else {
        Err(ConfigError::UrlFragment { url })
    }
}

/// `url` with any password replaced, for logs and errors.
pub(crate) fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}
