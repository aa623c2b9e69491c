//! The connection to Redis or Valkey that Ligand's Redis providers share: the fleet-wide rate
//! limiter (`ligand-ratelimit-redis`), the WIMSE proof replay cache (`ligand-replay-redis`)
//! and the fleet retry budget (`ligand-retrybudget-redis`).
//!
//! Each provider keeps its own settings (limits, key prefixes, scripts) and embeds a
//! [`ClientConfig`]: the URL, an optional CA file for `rediss://`, the per-command timeout and
//! the connect timeout, with their defaults and a `Debug` that never shows the password. A
//! [`Connector`] checks them and prepares the client; [`Connector::connect`] opens the
//! connection manager and `PING`s within the connect timeout, so a provider's startup fails
//! closed on an unreachable store with a typed [`ConnectError`]. [`within`] bounds one
//! command by the command timeout.
//!
//! ```no_run
//! use ligand_redis_client::{ClientConfig, Connector};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config: ClientConfig = ClientConfig::new("rediss://redis.internal:6380")
//!     .with_ca_file("/etc/ligand/redis-ca.pem");
//! let connector = Connector::new(&config)?;
//! let mut connection = connector.connect().await?; // fails if Redis is unreachable
//! let pong: String = ligand_redis_client::within(
//!     connector.timeout(),
//!     redis::cmd("PING").query_async(&mut connection),
//! )
//! .await??;
//! # let _ = pong; Ok(()) }
//! ```
//!
//! The server's certificate is always verified: a URL with a `#fragment` (above all the
//! redis client's `#insecure`) is refused, and a private CA is trusted with `ca_file`.

#![forbid(unsafe_code)]

mod config;
mod connect;
mod timeout;

pub use self::config::{
    ClientConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, SettingsError, check_url,
    redacted,
};
pub use self::connect::{ConnectError, Connector, RECONNECT_ATTEMPTS};
pub use self::timeout::{TimedOut, within};
