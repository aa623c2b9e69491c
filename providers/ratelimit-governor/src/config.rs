//! The limiter's configuration: a default limit and ordered overrides, deserializable from a
//! `ligand.toml` section.

use std::time::Duration;

use ligand_runtime::{LimitError, LimitOverride, LimitRules};
use serde::{Deserialize, Serialize};

/// How often stale keys are evicted when the configuration does not say.
pub const DEFAULT_EVICTION_INTERVAL_MS: u64 = 10_000;

/// The limiter's configuration.
///
/// Every caller gets its own bucket of `burst` requests refilled at `rate` requests per second.
/// The first entry of `overrides` whose every given field matches the request replaces the
/// default limit for that request; the caller then has a separate bucket for that override.
/// `rate`, `burst` and `overrides` are validated as [`LimitRules`], the same rules (and the same
/// fields) every Ligand limiter takes.
///
/// ```
/// use ligand_ratelimit_governor::GovernorConfig;
///
/// let config: GovernorConfig = serde_json::from_str(r#"{
///     "rate": 100, "burst": 50,
///     "overrides": [
///         { "caller": "spiffe://bank.example/service/gateway", "rate": 1000, "burst": 200 },
///         { "resource": "/accounts/{id}/debit", "action": "debit", "rate": 5, "burst": 5 }
///     ]
/// }"#).unwrap();
/// assert_eq!(config.overrides.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernorConfig {
    /// Sustained requests per second allowed to each caller (may be fractional, such as `0.5`).
    pub rate: f64,
    /// Requests a caller may make at once before being held to `rate`.
    pub burst: u32,
    /// Per-caller and per-resource limits, tried in order; the first match applies.
    #[serde(default)]
    pub overrides: Vec<LimitOverride>,
    /// How often keys whose state has returned to "fresh" are dropped, in milliseconds.
    #[serde(default = "default_eviction_interval_ms")]
    pub eviction_interval_ms: u64,
}

fn default_eviction_interval_ms() -> u64 {
    DEFAULT_EVICTION_INTERVAL_MS
}

impl GovernorConfig {
    /// A configuration with one limit for every caller and no overrides.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst,
            overrides: Vec::new(),
            eviction_interval_ms: DEFAULT_EVICTION_INTERVAL_MS,
        }
    }

    /// Appends an override (tried after the ones already present).
    pub fn with_override(mut self, entry: LimitOverride) -> Self {
        self.overrides.push(entry);
        self
    }

    /// Sets how often stale keys are evicted.
    pub fn with_eviction_interval(mut self, interval: Duration) -> Self {
        self.eviction_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// Why a [`GovernorConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The default limit or an override is invalid.
    #[error(transparent)]
    Limits(#[from] LimitError),
    /// The eviction interval is zero.
    #[error("eviction_interval_ms must be at least 1")]
    ZeroEvictionInterval,
}

/// The validated rules: the limits, then how often stale keys are evicted.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) limits: LimitRules,
    pub(crate) eviction_interval: Duration,
}

impl Rules {
    pub(crate) fn new(config: &GovernorConfig) -> Result<Self, ConfigError> {
        let limits = LimitRules::new(config.rate, config.burst, &config.overrides)?;
        if config.eviction_interval_ms == 0 {
            return Err(ConfigError::ZeroEvictionInterval);
        }
        Ok(Self {
            limits,
            eviction_interval: Duration::from_millis(config.eviction_interval_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_limits_with_the_rule_named() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-320, 1e300] {
            assert!(
                matches!(
                    Rules::new(&GovernorConfig::new(rate, 1)),
                    Err(ConfigError::Limits(LimitError::InvalidRate { ref rule, .. })) if rule == "default"
                ),
                "rate {rate}"
            );
        }
        assert_eq!(
            Rules::new(&GovernorConfig::new(1.0, 0)).unwrap_err(),
            ConfigError::Limits(LimitError::ZeroBurst {
                rule: "default".into()
            })
        );
        let bad = GovernorConfig::new(1.0, 1).with_override(LimitOverride::caller("a", 1.0, 0));
        assert_eq!(
            Rules::new(&bad).unwrap_err().to_string(),
            "overrides[0]: burst must be at least 1"
        );
        let empty = GovernorConfig::new(1.0, 1).with_override(LimitOverride {
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
        let mut zero = GovernorConfig::new(1.0, 1);
        zero.eviction_interval_ms = 0;
        assert_eq!(
            Rules::new(&zero).unwrap_err(),
            ConfigError::ZeroEvictionInterval
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<GovernorConfig>(r#"{"rate":1,"burst":1,"brust":2}"#)
            .unwrap_err();
        assert!(error.to_string().contains("brust"), "{error}");
    }
}
