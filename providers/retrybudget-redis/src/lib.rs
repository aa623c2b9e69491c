//! A fleet-wide retry budget for Ligand on Redis or Valkey: the store behind
//! [`ligand_runtime::FleetBudget`], so that the retries of every instance of a service
//! together stay within one budget and cannot amplify an outage of the services they call.
//!
//! Every sync period each instance sends its per-target calls and retries and reads back the
//! fleet's totals over the budget window, all targets in one pipelined round trip. The request
//! path never waits on Redis: it decides from the last view, and from the local budget alone
//! while Redis is unreachable (see [`ligand_runtime::FleetBudget`] for the arithmetic and why
//! that fallback is safe).
//!
//! ```no_run
//! use std::sync::Arc;
//! use ligand_retrybudget_redis::{RedisFleetConfig, RedisRetryBudget};
//! use ligand_runtime::{FleetBudget, RetryConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisRetryBudget::connect(
//!     RedisFleetConfig::new("rediss://retry.internal:6380").with_ca_file("/etc/ligand/redis-ca.pem"),
//! )
//! .await?;
//! let fleet = FleetBudget::new(Arc::new(store), &RetryConfig::default(), FleetBudget::DEFAULT_SYNC)?;
//! let _sync = fleet.spawn();
//! # Ok(()) }
//! ```
//!
//! **Keys.** Per target, a hash `<key_prefix>:{<target>}` of per-second buckets (`c<second>`
//! for calls, `r<second>` for retries) and a sorted set `<key_prefix>:{<target>}:i` of the
//! instances that synced within the window. Both share the `{<target>}` hash tag, so one
//! target's script touches one Redis Cluster slot; both expire a few seconds after the window
//! when no instance syncs any more, and buckets older than the window are deleted as they age
//! out.
//!
//! Requires Redis 5 or later (or any Valkey): the script writes after reading `TIME`, which
//! needs effect replication.

#![forbid(unsafe_code)]

mod config;
mod script;
mod store;

pub use self::config::{
    ConfigError, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_MS,
    RedisFleetConfig,
};
pub use self::store::{ConnectError, RedisRetryBudget};
