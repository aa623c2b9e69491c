//! The limiter's configuration: where Redis is, a default limit and ordered overrides,
//! deserializable from a `ligand.toml` section.

use std::path::PathBuf;
use std::time::Duration;

use ligand_redis_client::{ClientConfig, SettingsError, check_url};
use ligand_runtime::{Limit, LimitError, LimitOverride, LimitRules};
use serde::{Deserialize, Serialize};

/// How long one check may take before it is denied, when the configuration does not say.
pub const DEFAULT_TIMEOUT_MS: u64 = ligand_redis_client::DEFAULT_TIMEOUT_MS;

/// How long connecting (and the first `PING`) may take, when the configuration does not say.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = ligand_redis_client::DEFAULT_CONNECT_TIMEOUT_MS;

/// The prefix of every key the limiter writes, when the configuration does not say.
pub const DEFAULT_KEY_PREFIX: &str = "ligand:ratelimit";

/// The limiter's configuration.
///
/// Every caller gets its own bucket of `burst` requests refilled at `rate` requests per second,
/// shared by every instance using the same Redis and `key_prefix`. The first entry of
/// `overrides` whose every given field matches the request replaces the default limit for that
/// request; the caller then has a separate bucket for that override. `rate`, `burst` and
/// `overrides` are validated as [`LimitRules`], the same rules (and the same fields) every
/// Ligand limiter takes.
///
/// Where Redis is and how long it may take are the [`ClientConfig`] every Ligand Redis
/// provider shares, whose keys (`url`, `ca_file`, `timeout_ms`, `connect_timeout_ms`) sit
/// beside the limiter's own; here `timeout_ms` bounds one check (default 250 ms).
///
/// ```
/// use ligand_ratelimit_redis::RedisConfig;
///
/// let config: RedisConfig = serde_json::from_str(r#"{
///     "url": "rediss://ratelimit.internal:6380/0",
///     "rate": 100, "burst": 50,
///     "timeout_ms": 100,
///     "overrides": [
///         { "resource": "/accounts/{id}/debit", "action": "debit", "rate": 5, "burst": 5 }
///     ]
/// }"#).unwrap();
/// assert_eq!(config.key_prefix, "ligand:ratelimit");
/// assert_eq!(config.client.timeout_ms, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Where Redis is (`url`, `ca_file`) and how long a check (`timeout_ms`, default 250) and
    /// connecting (`connect_timeout_ms`, default 5000) may take, in milliseconds; a slower
    /// Redis denies the request. The server's certificate is always verified: the redis
    /// client's `#insecure` fragment is refused ([`SettingsError::InsecureTls`]), as is any
    /// other fragment.
    #[serde(flatten)]
    pub client: ClientConfig<DEFAULT_TIMEOUT_MS>,
    /// Sustained requests per second allowed to each caller (may be fractional, such as `0.5`).
    pub rate: f64,
    /// Requests a caller may make at once before being held to `rate`.
    pub burst: u32,
    /// Per-caller and per-resource limits, tried in order; the first match applies.
    #[serde(default)]
    pub overrides: Vec<LimitOverride>,
    /// The prefix of the limiter's keys; instances sharing it share their limits.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

impl RedisConfig {
    /// A configuration with one limit for every caller and no overrides.
    pub fn new(url: impl Into<String>, rate: f64, burst: u32) -> Self {
        Self {
            client: ClientConfig::new(url),
            rate,
            burst,
            overrides: Vec::new(),
            key_prefix: default_key_prefix(),
        }
    }

    /// Appends an override (tried after the ones already present).
    pub fn with_override(mut self, entry: LimitOverride) -> Self {
        self.overrides.push(entry);
        self
    }

    /// Sets how long one check may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// Sets how long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_connect_timeout(timeout);
        self
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Checks the URL, limits and timeouts as [`RedisLimiter::connect`] does, without
    /// connecting: a configuration loader reports a bad setting before anything starts.
    ///
    /// [`RedisLimiter::connect`]: crate::RedisLimiter::connect
    pub fn validate(&self) -> Result<(), ConfigError> {
        Rules::new(self).map(drop)
    }

    /// Trusts the CA certificates in `path` for a `rediss://` server.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client = self.client.with_ca_file(path);
        self
    }
}

/// Why a [`RedisConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The default limit or an override is invalid. Besides what [`LimitRules`] refuses, a
    /// rate whose interval (`1 / rate`) is under one microsecond, the resolution of Redis's
    /// clock, is an [`InvalidRate`](LimitError::InvalidRate).
    #[error(transparent)]
    Limits(#[from] LimitError),
    /// A burst window (`burst / rate`) too long for the script's microsecond arithmetic
    /// (more than about 71 years).
    #[error("{rule}: burst / rate is too long a window")]
    WindowTooLong {
        /// `default` or `overrides[i]`.
        rule: String,
    },
    /// A connection setting is invalid: a zero timeout, or a URL with a fragment (above all
    /// the redis client's `#insecure`, which would turn off certificate verification).
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// A validated limit as the script takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScriptLimit {
    /// Requests per second, as configured.
    pub(crate) rate: f64,
    /// Time between two conforming requests at the sustained rate (`1 / rate`), in whole
    /// microseconds; at least 1.
    pub(crate) interval_us: u64,
    /// Requests allowed at once; at least 1.
    pub(crate) burst: u32,
}

/// The largest integer a Lua number (a double) holds exactly.
const MAX_EXACT_LUA_INTEGER: u128 = 1 << 53;

impl ScriptLimit {
    /// Checks that the script can enforce `limit`; `index` names the rule in errors.
    fn new(index: Option<usize>, limit: &Limit) -> Result<Self, ConfigError> {
        let rule = || LimitRules::rule_name(index);
        let invalid = || LimitError::InvalidRate {
            rule: rule(),
            rate: limit.rate(),
        };
        let interval_us = limit.interval().as_micros();
        if interval_us == 0 {
            return Err(invalid().into());
        }
        // The script adds the window to the current time in microseconds since the epoch
        // (about 2^51 today); keep the sum exact.
        if interval_us * u128::from(limit.burst().get()) > MAX_EXACT_LUA_INTEGER / 4 {
            return Err(ConfigError::WindowTooLong { rule: rule() });
        }
        Ok(Self {
            rate: limit.rate(),
            interval_us: u64::try_from(interval_us).map_err(|_| invalid())?,
            burst: limit.burst().get(),
        })
    }
}

/// The validated rules: the limits as the script takes them (the connection settings are
/// checked too, and kept by the [`Connector`](ligand_redis_client::Connector)).
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) limits: LimitRules,
    pub(crate) default: ScriptLimit,
    /// One per override, at the override's index in `limits`.
    pub(crate) overrides: Vec<ScriptLimit>,
}

impl Rules {
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, ConfigError> {
        check_url(&config.client.url)?;
        let limits = LimitRules::new(config.rate, config.burst, &config.overrides)?;
        let default = ScriptLimit::new(None, limits.default_limit())?;
        let overrides = limits
            .overrides()
            .enumerate()
            .map(|(index, (_, limit))| ScriptLimit::new(Some(index), limit))
            .collect::<Result<_, _>>()?;
        config.client.validate()?;
        Ok(Self {
            limits,
            default,
            overrides,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "redis://127.0.0.1:1";

    #[test]
    fn rejects_bad_limits_with_the_rule_named() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-320, 2e6] {
            assert!(
                matches!(
                    Rules::new(&RedisConfig::new(URL, rate, 1)),
                    Err(ConfigError::Limits(LimitError::InvalidRate { ref rule, .. })) if rule == "default"
                ),
                "rate {rate}"
            );
        }
        assert_eq!(
            Rules::new(&RedisConfig::new(URL, 1.0, 0)).unwrap_err(),
            ConfigError::Limits(LimitError::ZeroBurst {
                rule: "default".into()
            })
        );
        assert_eq!(
            Rules::new(&RedisConfig::new(URL, 1e-9, u32::MAX)).unwrap_err(),
            ConfigError::WindowTooLong {
                rule: "default".into()
            }
        );
        let fast = RedisConfig::new(URL, 1.0, 1).with_override(LimitOverride::caller("a", 2e6, 1));
        assert_eq!(
            Rules::new(&fast).unwrap_err(),
            ConfigError::Limits(LimitError::InvalidRate {
                rule: "overrides[0]".into(),
                rate: 2e6
            })
        );
        let bad = RedisConfig::new(URL, 1.0, 1).with_override(LimitOverride::caller("a", 1.0, 0));
        assert_eq!(
            Rules::new(&bad).unwrap_err().to_string(),
            "overrides[0]: burst must be at least 1"
        );
        let empty = RedisConfig::new(URL, 1.0, 1).with_override(LimitOverride {
            caller: None,
            resource: None,
            action: None,
            rate: 1.0,
            burst: 1,
        });
        assert_eq!(
            Rules::new(&empty).unwrap_err(),
            ConfigError::Limits(LimitError::EmptyOverride { index: 0 })
        );
        assert_eq!(
            Rules::new(&RedisConfig::new(URL, 1.0, 1).with_timeout(Duration::ZERO)).unwrap_err(),
            ConfigError::Settings(SettingsError::ZeroTimeout("timeout_ms"))
        );
    }

    #[test]
    fn urls_that_turn_off_certificate_verification_are_refused() {
        for url in [
            "rediss://redis.internal:6380/0#insecure",
            "rediss://redis.internal:6380#insecure",
            "valkeys://redis.internal/#insecure",
            "redis://redis.internal/#insecure",
            "rediss://redis.internal/0#INSECURE",
            "rediss://redis.internal/0#insec\ture",
            "rediss://redis.internal/0#\ninsecure",
        ] {
            let error = Rules::new(&RedisConfig::new(url, 1.0, 1)).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Settings(SettingsError::InsecureTls { .. })
                ),
                "{url:?}: {error:?}"
            );
        }
        // The password stays out of the error.
        let error = Rules::new(&RedisConfig::new(
            "rediss://user:hunter2@redis.internal:6380/0#insecure",
            1.0,
            1,
        ))
        .unwrap_err();
        assert_eq!(
            error,
            ConfigError::Settings(SettingsError::InsecureTls {
                url: "rediss://***@redis.internal:6380/0#insecure".into()
            })
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
        // Any other fragment too.
        assert!(matches!(
            Rules::new(&RedisConfig::new("rediss://redis.internal/0#other", 1.0, 1)),
            Err(ConfigError::Settings(SettingsError::UrlFragment { .. }))
        ));
        // Without a fragment the URL is the client's to check.
        Rules::new(&RedisConfig::new(
            "rediss://user:p%23ss@redis.internal/0",
            1.0,
            1,
        ))
        .unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<RedisConfig>(
            r#"{"url":"redis://h","rate":1,"burst":1,"timeout":5}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
    }

    #[test]
    fn the_connection_keys_sit_beside_the_limits() {
        let config: RedisConfig = serde_json::from_str(
            r#"{"url":"rediss://h","ca_file":"/ca.pem","rate":1,"burst":2,"timeout_ms":7,
                "connect_timeout_ms":9,"key_prefix":"p"}"#,
        )
        .unwrap();
        assert_eq!(
            config,
            RedisConfig::new("rediss://h", 1.0, 2)
                .with_ca_file("/ca.pem")
                .with_timeout(Duration::from_millis(7))
                .with_connect_timeout(Duration::from_millis(9))
                .with_key_prefix("p")
        );
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<RedisConfig>(&json).unwrap(), config);
        let defaults: RedisConfig =
            serde_json::from_str(r#"{"url":"redis://h","rate":1,"burst":1}"#).unwrap();
        assert_eq!(defaults, RedisConfig::new("redis://h", 1.0, 1));
        assert_eq!(defaults.client.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(
            defaults.client.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS
        );
        assert_eq!(defaults.client.ca_file, None);
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let config = RedisConfig::new("rediss://user:hunter2@redis.internal:6380/0", 1.0, 1);
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("rediss://***@redis.internal:6380/0"),
            "{debug}"
        );
    }
}
