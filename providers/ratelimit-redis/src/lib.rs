//! Fleet-wide rate limiting for Ligand on Redis or Valkey: a GCRA per caller principal whose
//! state every instance of a service shares, updated by one atomic server-side Lua script per
//! check.
//!
//! Use it when a service runs as several instances and a caller's limit must hold across all
//! of them; a single process can use the in-process limiter (`ligand-ratelimit-governor`).
//! Both take the same limits: `rate` requests per second with a `burst`, plus ordered
//! per-caller and per-resource overrides (each a
//! [`LimitOverride`](ligand_runtime::LimitOverride)), validated as
//! [`ligand_runtime::LimitRules`]; this limiter also refuses a rate above one request per
//! microsecond, the resolution of Redis's clock.
//!
//! ```no_run
//! use ligand_ratelimit_redis::{RedisConfig, RedisLimiter};
//! use ligand_runtime::LimitOverride;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisLimiter::connect(
//!     RedisConfig::new("rediss://ratelimit.internal:6380", 100.0, 50)
//!         .with_ca_file("/etc/ligand/redis-ca.pem")
//!         .with_override(LimitOverride::resource("/accounts/{id}/debit", 5.0, 5).action("debit")),
//! )
//! .await?; // fails if Redis is unreachable: the service must not start
//! // Config::builder().rate_limiter(limiter) …
//! # Ok(()) }
//! ```
//!
//! Fail closed: a normal denial is `Ok` with `allowed: false` and a `retry_after` (429); any
//! Redis error, lost connection, malformed reply or a check slower than the timeout (default
//! 250 ms) is an error, on which the framework denies with 503. Nothing is allowed on error.
//! The connection manager reconnects by itself once Redis is back. The connection settings,
//! their checks and the connect error are those every Ligand Redis provider shares, from
//! `ligand-redis-client`.
//!
//! Requires Redis 5 or later (or any Valkey): the script writes after reading `TIME`, which
//! needs effect replication.

#![forbid(unsafe_code)]

mod config;
mod limiter;
mod script;

pub use self::config::{
    ConfigError, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_MS, RedisConfig,
};
pub use self::limiter::{CheckError, ConnectError, RedisLimiter};
pub use ligand_redis_client::SettingsError;
