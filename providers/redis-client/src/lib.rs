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
//!
//! # What is shared and what is not
//!
//! Shared, because it is the same in all three: the connection settings and their checks,
//! URL redaction, reading the CA file, the connection manager's settings (connect timeout,
//! the command timeout as its response timeout, [`RECONNECT_ATTEMPTS`] with the command
//! timeout as the longest back-off), connecting with a `PING` within the connect timeout, the
//! typed connect error and the command timeout.
//!
//! Each provider's own: its settings (limits, key prefixes), the default command timeout
//! (250 ms on the request path, 500 ms for the retry budget's background sync, hence
//! `ClientConfig`'s parameter), its scripts and their loading (the limiter loads its script
//! at startup, the retry budget on `NOSCRIPT`), when it connects (the limiter and the replay
//! cache at startup; the retry budget may defer to its first sync, so that configuration
//! files load without Redis), how a failure reaches the framework (a limiter error, a replay
//! cache error, a failed sync that degrades the budget's health) and the texts of the errors
//! its users already match on (the retry budget's name their setting, `url: …`).
//!
//! This crate is Redis-specific, so it belongs neither in the provider-neutral runtime nor
//! in one of the providers (which never depend on each other).

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
