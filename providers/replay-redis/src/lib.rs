//! A fleet-wide replay cache for WIMSE Workload Proof Tokens on Redis or Valkey: every
//! instance of a service records the proofs it admits in one shared store, so a proof
//! captured on its way to one instance is refused by all of them.
//!
//! The in-process [`InMemoryReplayCache`](ligand_runtime::InMemoryReplayCache) catches a
//! replay against the instance that saw the proof first; behind a load balancer the replay
//! may reach another instance. This cache closes that gap with one atomic command per proof:
//! `SET <prefix><key> 1 NX PXAT <expiry in ms>`. `OK` is a fresh proof; no reply is a replay.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ligand_replay_redis::{RedisReplayCache, RedisReplayConfig};
//! use ligand_runtime::WimseConfig;
//!
//! # async fn run(jwks: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let cache = RedisReplayCache::connect(RedisReplayConfig::new("rediss://replay.internal:6380")).await?;
//! let wimse = WimseConfig::from_jwks_json(jwks)?.replay_cache(Arc::new(cache));
//! // Config::builder().wimse(wimse) …
//! # let _ = wimse; Ok(()) }
//! ```
//!
//! Fail closed: a Redis error, a lost connection, an unexpected reply or a command slower than
//! the timeout (default 250 ms) is a [`ReplayCacheError::Backend`](ligand_runtime::ReplayCacheError),
//! on which the request is refused (`WIMSE_UNAVAILABLE`). Run the store with
//! `maxmemory-policy noeviction`: evicting a live entry would reopen its proof's replay window,
//! while a store that refuses writes when full makes new proofs fail closed instead. Entries
//! expire by the store's clock at the proof's `exp` plus the verifier's leeway; keep the
//! clocks within that leeway. Requires Redis 6.2 or later (`PXAT`), or any Valkey.
//!
//! The connection (URL checks, a private CA for `rediss://`, the connect timeout and its
//! `PING`) is the one every Ligand Redis provider shares, from `ligand-redis-client`: a URL
//! with a `#fragment` (the redis client's `#insecure`) is refused, so the store's certificate
//! is always verified.

#![forbid(unsafe_code)]

mod cache;

pub use self::cache::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, RedisReplayCache,
    RedisReplayConfig,
};
/// Why [`RedisReplayCache::connect`] failed (the service must not start), and why its settings
/// were refused: the errors of the connection every Ligand Redis provider shares.
pub use ligand_redis_client::{ConnectError, SettingsError};
