//! Where the fleet's Redis is and how long the store may take, deserializable from a
//! `ligand.toml` section.
//!
//! The connection settings and their URL rules (TLS verified, no `#fragment`) are the ones
//! every Ligand Redis provider shares, from `ligand-redis-client`; this store adds its key
//! prefix and its longer default timeout (a sync runs in the background, off the request
//! path).

use std::path::PathBuf;
use std::time::Duration;

use ligand_redis_client::{ClientConfig, SettingsError, check_url};
use serde::{Deserialize, Serialize};

/// How long one sync may take, when the configuration does not say.
pub const DEFAULT_TIMEOUT_MS: u64 = 500;

/// How long connecting (and the first `PING`) may take, when the configuration does not say.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = ligand_redis_client::DEFAULT_CONNECT_TIMEOUT_MS;

/// The prefix of every key the store writes, when the configuration does not say.
pub const DEFAULT_KEY_PREFIX: &str = "ligand:retry";

/// The store's configuration.
///
/// Where Redis is and how long it may take are the [`ClientConfig`] every Ligand Redis
/// provider shares, whose keys (`url`, `ca_file`, `timeout_ms`, `connect_timeout_ms`) sit
/// beside the store's `key_prefix`; here `timeout_ms` bounds one sync (default 500 ms).
///
/// ```
/// use ligand_retrybudget_redis::RedisFleetConfig;
///
/// let config: RedisFleetConfig =
///     serde_json::from_str(r#"{ "url": "rediss://retry.internal:6380/0", "timeout_ms": 200 }"#)
///         .unwrap();
/// assert_eq!(config.key_prefix, "ligand:retry");
/// assert_eq!(config.client.timeout_ms, 200);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisFleetConfig {
    /// Where Redis is (`url`, `ca_file`) and how long a sync (`timeout_ms`, default 500; a
    /// slower sync counts as failed) and connecting (`connect_timeout_ms`, default 5000) may
    /// take, in milliseconds. The server's certificate is always verified: a `#fragment` (the
    /// redis client's `#insecure`) is refused.
    #[serde(flatten)]
    pub client: ClientConfig<DEFAULT_TIMEOUT_MS>,
    /// The prefix of the store's keys; instances sharing it (and a target) share a budget.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

impl RedisFleetConfig {
    /// The defaults for a Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            client: ClientConfig::new(url),
            key_prefix: default_key_prefix(),
        }
    }

    /// Trusts the CA certificates in `path` for a `rediss://` server.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client = self.client.with_ca_file(path);
        self
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets how long one sync may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// Sets how long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_connect_timeout(timeout);
        self
    }

    /// Checks every setting; the error names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_url(&self.client.url)?;
        if self.key_prefix.is_empty() {
            return Err(ConfigError::EmptyKeyPrefix);
        }
        self.client.validate()?;
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

/// The shared settings' errors keep this type's variants and texts (each names its setting),
/// which users match on.
impl From<SettingsError> for ConfigError {
    fn from(error: SettingsError) -> Self {
        match error {
            SettingsError::InsecureTls { url } => Self::InsecureTls { url },
            SettingsError::UrlFragment { url } => Self::UrlFragment { url },
            SettingsError::ZeroTimeout(setting) => Self::ZeroTimeout(setting),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_keys_sit_beside_the_prefix_with_this_stores_defaults() {
        let defaults: RedisFleetConfig = serde_json::from_str(r#"{"url":"redis://h"}"#).unwrap();
        assert_eq!(defaults, RedisFleetConfig::new("redis://h"));
        assert_eq!(defaults.client.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(
            defaults.client.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS
        );
        assert_eq!(defaults.key_prefix, DEFAULT_KEY_PREFIX);
        let config: RedisFleetConfig = serde_json::from_str(
            r#"{"url":"rediss://h","ca_file":"/ca.pem","timeout_ms":7,"connect_timeout_ms":9,
                "key_prefix":"p"}"#,
        )
        .unwrap();
        assert_eq!(
            config,
            RedisFleetConfig::new("rediss://h")
                .with_ca_file("/ca.pem")
                .with_timeout(Duration::from_millis(7))
                .with_connect_timeout(Duration::from_millis(9))
                .with_key_prefix("p")
        );
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<RedisFleetConfig>(&json).unwrap(),
            config
        );
        let error = serde_json::from_str::<RedisFleetConfig>(r#"{"url":"redis://h","sync":1}"#)
            .unwrap_err();
        assert!(error.to_string().contains("sync"), "{error}");
    }

    #[test]
    fn errors_name_the_setting_and_hide_the_password() {
        let config = RedisFleetConfig::new("rediss://u:hunter2@h/0#insecure");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "url: rediss://***@h/0#insecure turns off TLS certificate verification \
             (#insecure); trust a private CA with ca_file instead"
        );
        assert_eq!(
            RedisFleetConfig::new("redis://h/0#x")
                .validate()
                .unwrap_err()
                .to_string(),
            "url: redis://h/0#x has a #fragment; redis urls take none"
        );
        assert_eq!(
            RedisFleetConfig::new("redis://h")
                .with_connect_timeout(Duration::ZERO)
                .validate(),
            Err(ConfigError::ZeroTimeout("connect_timeout_ms"))
        );
    }
}
