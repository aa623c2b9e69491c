//! `[outbound]` resilience settings as one section, their shared serde helpers and the
//! error every validation returns.
//!
//! ```toml
//! [outbound.balancer]
//! strategy = "p2c_ewma"
//!
//! [outbound.outlier]
//! consecutive_failures = 5
//! base_ejection_time = "30s"
//!
//! [outbound.breaker]
//! open_duration = "5s"
//!
//! [outbound.retry]
//! max_attempts = 3
//! treat_as_idempotent = ["POST"]
//!
//! # Calls to the fraud service alone: sticky endpoints and no retries.
//! [outbound.targets."spiffe://bank.example/service/fraud".balancer]
//! strategy = "ring_hash"
//! [outbound.targets."spiffe://bank.example/service/fraud".retry]
//! max_attempts = 1
//! ```
//!
//! Every section and field is optional; what is left out takes the documented default.
//! Durations are humantime strings (`"250ms"`, `"30s"`, `"5m"`).
//!
//! A section under `targets."<SPIFFE ID>"` replaces the top-level section of the same name
//! for calls to that service, whole: its missing fields take the documented defaults, not
//! the top-level values, so what applies to a target reads from one place.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::SpiffeId;

use super::balance::BalancerConfig;
use super::breaker::BreakerConfig;
use super::bulkhead::BulkheadConfig;
use super::outlier::OutlierConfig;
use super::retry::RetryConfig;

/// All resilience settings of the outbound transport.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ResilienceConfig {
    /// How endpoints are chosen.
    pub balancer: BalancerConfig,
    /// When endpoints are ejected.
    pub outlier: OutlierConfig,
    /// When a target's circuit opens.
    pub breaker: BreakerConfig,
    /// How many calls a target may have at once.
    pub bulkhead: BulkheadConfig,
    /// Which failures are retried, how often and how soon.
    pub retry: RetryConfig,
    /// Sections that replace the ones above for calls to one service, keyed by its SPIFFE ID.
    pub targets: BTreeMap<String, TargetResilience>,
}

/// The sections that apply to calls to one target service instead of the top-level ones;
/// a section left out keeps the top-level one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TargetResilience {
    /// How this target's endpoints are chosen.
    pub balancer: Option<BalancerConfig>,
    /// When this target's endpoints are ejected.
    pub outlier: Option<OutlierConfig>,
    /// When this target's circuit opens.
    pub breaker: Option<BreakerConfig>,
    /// How many calls this target may have at once.
    pub bulkhead: Option<BulkheadConfig>,
    /// Which failures of calls to this target are retried, how often and how soon.
    pub retry: Option<RetryConfig>,
}

impl ResilienceConfig {
    /// Checks every section, the targets' included; the first setting at fault is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sections()?;
        for target in self.targets.keys() {
            let in_target = |setting| ConfigError::Target {
                target: target.clone(),
                setting: Box::new(setting),
            };
            if let Err(e) = SpiffeId::new(target) {
                return Err(ConfigError::TargetId {
                    target: target.clone(),
                    reason: e.to_string(),
                });
            }
            self.for_target(target)
                .validate_sections()
                .map_err(in_target)?;
        }
        Ok(())
    }

    fn validate_sections(&self) -> Result<(), ConfigError> {
        self.balancer.validate()?;
        self.outlier.validate()?;
        self.breaker.validate()?;
        self.bulkhead.validate()?;
        self.retry.validate()
    }

    /// The settings that apply to calls to `service`: the top-level sections, each replaced by
    /// the target's own when it has one. Carries no `targets` of its own.
    pub fn for_target(&self, service: &str) -> Self {
        let own = self.targets.get(service).cloned().unwrap_or_default();
        Self {
            balancer: own.balancer.unwrap_or_else(|| self.balancer.clone()),
            outlier: own.outlier.unwrap_or_else(|| self.outlier.clone()),
            breaker: own.breaker.unwrap_or_else(|| self.breaker.clone()),
            bulkhead: own.bulkhead.unwrap_or_else(|| self.bulkhead.clone()),
            retry: own.retry.unwrap_or_else(|| self.retry.clone()),
            targets: BTreeMap::new(),
        }
    }
}

/// A resilience setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be longer than zero is zero.
    #[error("{setting}: must be longer than zero")]
    Zero {
        /// The setting, such as `outlier.interval`.
        setting: &'static str,
    },
    /// A value outside its range.
    #[error("{setting}: {value} is out of range; expected {expected}")]
    OutOfRange {
        /// The setting.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A maximum below its minimum.
    #[error("{setting}: must not be below {other}")]
    Order {
        /// The maximum.
        setting: &'static str,
        /// The minimum it is below.
        other: &'static str,
    },
    /// A `targets` key that is not a SPIFFE ID.
    #[error("targets.{target:?}: not a SPIFFE ID: {reason}")]
    TargetId {
        /// The key as given.
        target: String,
        /// Why it is not a SPIFFE ID.
        reason: String,
    },
    /// A setting of one target at fault.
    #[error("targets.{target:?}.{setting}")]
    Target {
        /// The target's SPIFFE ID.
        target: String,
        /// The setting at fault, named within the target.
        setting: Box<ConfigError>,
    },
    /// Not an HTTP method in its canonical (uppercase) spelling.
    #[error("{setting}: {value:?} is not an uppercase HTTP method such as \"POST\"")]
    Method {
        /// The setting.
        setting: &'static str,
        /// The value as given.
        value: String,
    },
}

/// A humantime duration (`"30s"`, `"250ms"`).
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration such as \"30s\" ({e})"))
    })
}

/// `value` unless it is zero.
pub(super) fn positive(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::Zero { setting });
    }
    Ok(())
}

/// `value` if it is a finite number in `[0, 1]`.
pub(super) fn unit_ratio(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(ConfigError::OutOfRange {
            setting,
            value: value.to_string(),
            expected: "a ratio from 0.0 to 1.0",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::resilience::balance::Strategy;

    /// The sections written as JSON: the runtime crate has no TOML parser, and the field
    /// names, value types and serde attributes are the same.
    fn parse(json: &str) -> Result<ResilienceConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_is_every_default_and_valid() {
        let config = parse("{}").unwrap();
        assert_eq!(config, ResilienceConfig::default());
        config.validate().unwrap();
        assert_eq!(config.balancer.strategy, Strategy::P2cEwma);
    }

    #[test]
    fn durations_are_humantime() {
        let config =
            parse(r#"{"outlier": {"base_ejection_time": "45s", "max_ejection_time": "10m"}}"#)
                .unwrap();
        assert_eq!(config.outlier.base_ejection_time, Duration::from_secs(45));
        assert_eq!(config.outlier.max_ejection_time, Duration::from_secs(600));
        let err = parse(r#"{"breaker": {"open_duration": "soon"}}"#).unwrap_err();
        assert!(err.contains("not a duration"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse(r#"{"retry": {"max_atempts": 2}}"#).unwrap_err();
        assert!(err.contains("max_atempts"), "{err}");
        assert!(parse(r#"{"balancing": {}}"#).is_err());
    }

    #[test]
    fn strategies_by_name() {
        for (name, strategy) in [
            ("p2c_ewma", Strategy::P2cEwma),
            ("least_request", Strategy::LeastRequest),
            ("round_robin", Strategy::RoundRobin),
            ("random", Strategy::Random),
            ("ring_hash", Strategy::RingHash),
        ] {
            let config = parse(&format!(r#"{{"balancer": {{"strategy": "{name}"}}}}"#)).unwrap();
            assert_eq!(config.balancer.strategy, strategy);
            assert_eq!(name.parse::<Strategy>().unwrap(), strategy);
            assert_eq!(strategy.to_string(), name);
        }
        let err = "fastest".parse::<Strategy>().unwrap_err();
        assert!(err.to_string().contains("fastest"), "{err}");
    }

    #[test]
    fn a_target_section_replaces_the_top_level_one_whole() {
        let fraud = "spiffe://bank.example/service/fraud";
        let config = parse(&format!(
            r#"{{"retry": {{"max_attempts": 4, "backoff_base": "50ms"}},
                "breaker": {{"open_duration": "9s"}},
                "targets": {{"{fraud}": {{
                    "balancer": {{"strategy": "ring_hash"}},
                    "retry": {{"max_attempts": 1}}}}}}}}"#
        ))
        .unwrap();
        config.validate().unwrap();

        let own = config.for_target(fraud);
        assert_eq!(own.balancer.strategy, Strategy::RingHash);
        assert_eq!(own.retry.max_attempts, 1);
        // Whole: the target's retry section does not inherit the top-level backoff.
        assert_eq!(own.retry.backoff_base, RetryConfig::default().backoff_base);
        // A section the target leaves out is the top-level one.
        assert_eq!(own.breaker.open_duration, Duration::from_secs(9));
        assert!(own.targets.is_empty());

        let other = config.for_target("spiffe://bank.example/service/accounts");
        assert_eq!(other.balancer.strategy, Strategy::P2cEwma);
        assert_eq!(other.retry.max_attempts, 4);
    }

    #[test]
    fn a_target_is_a_spiffe_id_with_valid_sections() {
        let err = parse(r#"{"targets": {"fraud": {}}}"#)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(matches!(err, ConfigError::TargetId { .. }), "{err}");
        assert!(err.to_string().starts_with(r#"targets."fraud""#), "{err}");

        let err =
            parse(r#"{"targets": {"spiffe://example.org/a": {"retry": {"max_attempts": 0}}}}"#)
                .unwrap()
                .validate()
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"targets."spiffe://example.org/a".retry.max_attempts: 0 is out of range; expected 1 to 10"#,
        );

        let err = parse(r#"{"targets": {"spiffe://example.org/a": {"retries": {}}}}"#).unwrap_err();
        assert!(err.contains("retries"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let cases = [
            (r#"{"outlier": {"interval": "0s"}}"#, "outlier.interval"),
            (
                r#"{"outlier": {"base_ejection_time": "10m"}}"#,
                "outlier.max_ejection_time",
            ),
            (
                r#"{"outlier": {"max_ejection_percent": 101}}"#,
                "outlier.max_ejection_percent",
            ),
            (
                r#"{"breaker": {"failure_ratio": 1.5}}"#,
                "breaker.failure_ratio",
            ),
            (
                r#"{"breaker": {"half_open_probes": 0}}"#,
                "breaker.half_open_probes",
            ),
            (
                r#"{"bulkhead": {"max_concurrent": 0}}"#,
                "bulkhead.max_concurrent",
            ),
            (r#"{"retry": {"max_attempts": 0}}"#, "retry.max_attempts"),
            (
                r#"{"retry": {"backoff_base": "2s", "backoff_max": "1s"}}"#,
                "retry.backoff_max",
            ),
            (
                r#"{"retry": {"treat_as_idempotent": ["post"]}}"#,
                "retry.treat_as_idempotent",
            ),
            (r#"{"retry": {"budget_ttl": "2m"}}"#, "retry.budget_ttl"),
            (r#"{"retry": {"budget_ratio": -0.1}}"#, "retry.budget_ratio"),
            (
                r#"{"balancer": {"virtual_nodes": 0}}"#,
                "balancer.virtual_nodes",
            ),
        ];
        for (json, setting) in cases {
            let err = parse(json).unwrap().validate().unwrap_err();
            assert!(err.to_string().starts_with(setting), "{json}: {err}");
        }
    }
}
