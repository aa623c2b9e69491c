//! The limits every rate limiter takes: a default `rate` and `burst` plus ordered overrides for
//! particular callers, resources or actions, validated once at startup.
//!
//! Limiter providers keep these fields at the top of their own configuration, so every limiter
//! reads the same `ligand.toml` shape, and build [`LimitRules`] from them.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::request::{Action, Resource};

/// A limit that replaces the default for the requests it matches.
///
/// Unset fields match anything; at least one must be set. In a limiter's configuration the
/// overrides are a list, tried in order: the first match applies.
///
/// # Example
///
/// ```
/// use ligand_runtime::LimitOverride;
///
/// let gateway = LimitOverride::caller("spiffe://bank.example/service/gateway", 1000.0, 200);
/// let debit = LimitOverride::resource("/accounts/{id}/debit", 5.0, 5).action("debit");
/// let parsed: LimitOverride = serde_json::from_str(
///     r#"{ "resource": "/accounts/{id}/debit", "action": "debit", "rate": 5, "burst": 5 }"#,
/// )?;
/// assert_eq!(parsed, debit);
/// assert_ne!(parsed, gateway);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverride {
    /// The caller's principal (a SPIFFE ID for workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The resource value, such as the route template `/accounts/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The action name, such as `GET` or `debit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Sustained requests per second for each matching caller.
    pub rate: f64,
    /// Burst for each matching caller.
    pub burst: u32,
}

impl LimitOverride {
    /// An override for one caller on every resource.
    pub fn caller(caller: impl Into<String>, rate: f64, burst: u32) -> Self {
        Self {
            caller: Some(caller.into()),
            resource: None,
            action: None,
            rate,
            burst,
        }
    }

    /// An override for every caller on one resource.
    pub fn resource(resource: impl Into<String>, rate: f64, burst: u32) -> Self {
        Self {
            caller: None,
            resource: Some(resource.into()),
            action: None,
            rate,
            burst,
        }
    }

    /// Narrows the override to one action.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Whether this override applies to `caller` doing `action` on `resource`.
    fn matches(&self, caller: &str, resource: &Resource, action: &Action) -> bool {
        self.caller.as_deref().is_none_or(|c| c == caller)
            && self.resource.as_deref().is_none_or(|r| r == resource.value)
            && self.action.as_deref().is_none_or(|a| a == action.name)
    }

    fn is_empty(&self) -> bool {
        self.caller.is_none() && self.resource.is_none() && self.action.is_none()
    }
}

/// A validated limit: the GCRA's emission interval and burst.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use ligand_runtime::{Limit, LimitError};
///
/// let limit = Limit::new("default", 4.0, 10)?;
/// assert_eq!(limit.interval(), Duration::from_millis(250));
/// assert_eq!(limit.burst().get(), 10);
/// assert_eq!(
///     Limit::new("default", 4.0, 0).unwrap_err().to_string(),
///     "default: burst must be at least 1",
/// );
/// # Ok::<(), LimitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    rate: f64,
    interval: Duration,
    burst: NonZeroU32,
}

impl Limit {
    /// Validates `rate` requests per second with a `burst`; `rule` names the limit in errors
    /// (`default` or `overrides[i]`).
    ///
    /// The rate must be positive and finite, with an interval (`1 / rate`) that a [`Duration`]
    /// represents and that is not zero; the burst must be at least 1.
    pub fn new(rule: &str, rate: f64, burst: u32) -> Result<Self, LimitError> {
        let invalid = || LimitError::InvalidRate {
            rule: rule.to_owned(),
            rate,
        };
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid());
        }
        let interval = Duration::try_from_secs_f64(1.0 / rate).map_err(|_| invalid())?;
        if interval.is_zero() {
            return Err(invalid());
        }
        let burst = NonZeroU32::new(burst).ok_or_else(|| LimitError::ZeroBurst {
            rule: rule.to_owned(),
        })?;
        Ok(Self {
            rate,
            interval,
            burst,
        })
    }

    /// Requests per second, as configured.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Time between two conforming requests at the sustained rate (`1 / rate`); never zero.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Requests allowed at once.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }
}

/// The validated rules of a limiter: the overrides in order, then the default.
///
/// A limiter keeps one bucket per rule and caller; [`select`](Self::select) says which rule a
/// request falls under.
///
/// # Example
///
/// ```
/// use ligand_runtime::{Action, LimitOverride, LimitRules, Resource};
///
/// let rules = LimitRules::new(
///     100.0,
///     50,
///     &[LimitOverride::resource("/accounts/{id}/debit", 5.0, 5).action("debit")],
/// )?;
/// let debit = Resource::http_path("/accounts/{id}/debit");
///
/// let (rule, limit) = rules.select("spiffe://bank.example/web", &debit, &Action::new("debit"));
/// assert_eq!((rule, limit.rate()), (Some(0), 5.0));
/// let (rule, limit) = rules.select("spiffe://bank.example/web", &debit, &Action::new("GET"));
/// assert_eq!((rule, limit.rate()), (None, 100.0));
/// # Ok::<(), ligand_runtime::LimitError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LimitRules {
    default: Limit,
    overrides: Vec<(LimitOverride, Limit)>,
}

impl LimitRules {
    /// Validates the default limit (`rate`, `burst`) and every override, refusing an override
    /// that names neither a caller, a resource nor an action.
    pub fn new(rate: f64, burst: u32, overrides: &[LimitOverride]) -> Result<Self, LimitError> {
        let default = Limit::new(&Self::rule_name(None), rate, burst)?;
        let overrides = overrides
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                if entry.is_empty() {
                    return Err(LimitError::EmptyOverride { index });
                }
                let limit = Limit::new(&Self::rule_name(Some(index)), entry.rate, entry.burst)?;
                Ok((entry.clone(), limit))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, overrides })
    }

    /// The rule for `caller` doing `action` on `resource`: the index of the first matching
    /// override, or `None` for the default, with its limit.
    pub fn select(
        &self,
        caller: &str,
        resource: &Resource,
        action: &Action,
    ) -> (Option<usize>, &Limit) {
        self.overrides
            .iter()
            .enumerate()
            .find(|(_, (entry, _))| entry.matches(caller, resource, action))
            .map_or((None, &self.default), |(index, (_, limit))| {
                (Some(index), limit)
            })
    }

    /// The limit of requests no override matches.
    pub fn default_limit(&self) -> &Limit {
        &self.default
    }

    /// The overrides with their limits, in the order they are tried; the position of each is
    /// the index [`select`](Self::select) returns.
    pub fn overrides(&self) -> impl ExactSizeIterator<Item = (&LimitOverride, &Limit)> {
        self.overrides.iter().map(|(entry, limit)| (entry, limit))
    }

    /// The name errors give a rule: `default` for `None`, `overrides[i]` for `Some(i)`.
    pub fn rule_name(index: Option<usize>) -> String {
        match index {
            None => "default".to_owned(),
            Some(index) => format!("overrides[{index}]"),
        }
    }
}

/// Why [`LimitRules`] or a [`Limit`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A rate is not a positive, finite number of requests per second whose interval
    /// (`1 / rate`) is representable and not zero.
    #[error("{rule}: rate must be a positive finite number of requests per second, got {rate}")]
    InvalidRate {
        /// `default` or `overrides[i]`.
        rule: String,
        /// The rate given.
        rate: f64,
    },
    /// A burst is zero: no request could ever pass.
    #[error("{rule}: burst must be at least 1")]
    ZeroBurst {
        /// `default` or `overrides[i]`.
        rule: String,
    },
    /// An override names neither a caller, a resource nor an action.
    #[error("overrides[{index}] must name a caller, a resource or an action")]
    EmptyOverride {
        /// The override's position.
        index: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_limits_with_the_rule_named() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-320, 1e300] {
            assert!(
                matches!(
                    LimitRules::new(rate, 1, &[]),
                    Err(LimitError::InvalidRate { ref rule, .. }) if rule == "default"
                ),
                "rate {rate}"
            );
        }
        assert_eq!(
            LimitRules::new(1.0, 0, &[]).unwrap_err(),
            LimitError::ZeroBurst {
                rule: "default".into()
            }
        );
        assert_eq!(
            LimitRules::new(1.0, 1, &[LimitOverride::caller("a", 1.0, 0)])
                .unwrap_err()
                .to_string(),
            "overrides[0]: burst must be at least 1"
        );
        assert_eq!(
            LimitRules::new(1.0, 1, &[LimitOverride::caller("a", -1.0, 1)])
                .unwrap_err()
                .to_string(),
            "overrides[0]: rate must be a positive finite number of requests per second, got -1"
        );
        let empty = LimitOverride {
            caller: None,
            resource: None,
            action: None,
            rate: 1.0,
            burst: 1,
        };
        let valid = LimitOverride::caller("a", 1.0, 1);
        assert_eq!(
            LimitRules::new(1.0, 1, &[valid, empty]).unwrap_err(),
            LimitError::EmptyOverride { index: 1 }
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            serde_json::from_str::<LimitOverride>(r#"{"caller":"a","rate":1,"burst":1,"brust":2}"#)
                .unwrap_err();
        assert!(error.to_string().contains("brust"), "{error}");
    }

    #[test]
    fn override_matches_only_given_fields() {
        let resource = Resource::http_path("/accounts/{id}");
        let get = Action::new("GET");
        let debit = Action::new("debit");
        let entry = LimitOverride::resource("/accounts/{id}", 1.0, 1).action("debit");
        assert!(entry.matches("anyone", &resource, &debit));
        assert!(!entry.matches("anyone", &resource, &get));
        assert!(!entry.matches("anyone", &Resource::http_path("/other"), &debit));
        let caller = LimitOverride::caller("spiffe://a/b", 1.0, 1);
        assert!(caller.matches("spiffe://a/b", &resource, &get));
        assert!(!caller.matches("spiffe://a/c", &resource, &get));
    }

    #[test]
    fn first_matching_override_wins_else_default() {
        let rules = LimitRules::new(
            10.0,
            10,
            &[
                LimitOverride::resource("/accounts/{id}", 1.0, 1).action("debit"),
                LimitOverride::caller("spiffe://a/bob", 2.0, 2),
                LimitOverride::resource("/accounts/{id}", 3.0, 3),
            ],
        )
        .unwrap();
        let accounts = Resource::http_path("/accounts/{id}");
        let other = Resource::http_path("/other");
        let (get, debit) = (Action::new("GET"), Action::new("debit"));
        let rule = |caller, resource, action| {
            let (index, limit) = rules.select(caller, resource, action);
            (index, limit.rate())
        };
        assert_eq!(rule("spiffe://a/bob", &accounts, &debit), (Some(0), 1.0));
        assert_eq!(rule("spiffe://a/bob", &accounts, &get), (Some(1), 2.0));
        assert_eq!(rule("spiffe://a/alice", &accounts, &get), (Some(2), 3.0));
        assert_eq!(rule("spiffe://a/alice", &other, &get), (None, 10.0));
        assert_eq!(rules.default_limit().burst().get(), 10);
        let rates: Vec<_> = rules.overrides().map(|(_, limit)| limit.rate()).collect();
        assert_eq!(rates, [1.0, 2.0, 3.0]);
    }
}
