//! In-process rate limiting for Ligand: a GCRA (the `governor` crate) per caller, keyed by the
//! verified identity of the immediate peer.
//!
//! This is the embedded default limiter: one process, no infrastructure. Each caller principal
//! gets a bucket of `burst` requests refilled at `rate` requests per second; overrides give
//! particular callers, resources or actions their own limits. The limits are
//! [`ligand_runtime::LimitRules`], built from the same `rate`, `burst` and `overrides` fields
//! (each a [`LimitOverride`](ligand_runtime::LimitOverride)) as every Ligand limiter. A fleet of instances that must
//! share one limit uses the Redis limiter (`ligand-ratelimit-redis`) instead.
//!
//! ```
//! use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};
//! use ligand_runtime::{
//!     Action, Chain, LimitOverride, Link, RateLimitRequest, RateLimiter, Resource,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = GovernorLimiter::new(
//!     GovernorConfig::new(10.0, 2)
//!         .with_override(LimitOverride::caller("spiffe://example.org/service/batch", 1.0, 1)),
//! )?;
//!
//! let chain = Chain::from(vec![Link::workload("spiffe://example.org/service/web")]);
//! let (resource, action) = (Resource::http_path("/hello/{name}"), Action::new("GET"));
//! let request = RateLimitRequest { chain: &chain, resource: &resource, action: &action };
//! assert!(limiter.check(&request).await?.allowed);
//! assert!(limiter.check(&request).await?.allowed);
//! let denied = limiter.check(&request).await?;
//! assert!(!denied.allowed);
//! assert!(denied.retry_after.is_some_and(|wait| wait <= std::time::Duration::from_millis(100)));
//! # Ok(()) }
//! ```
//!
//! Denials are `Ok` with `allowed: false` (the framework answers 429 with `Retry-After`); a
//! request with no peer principal, or a check after `close`, is an error, which the framework
//! also denies (503). The limiter never lets a request through on an error.
//!
//! Time comes from tokio's clock, so tests drive the limiter with paused time
//! (`#[tokio::test(start_paused = true)]` and `tokio::time::advance`).

#![forbid(unsafe_code)]

mod clock;
mod config;
mod limiter;

pub use self::config::{ConfigError, DEFAULT_EVICTION_INTERVAL_MS, GovernorConfig};
pub use self::limiter::GovernorLimiter;
