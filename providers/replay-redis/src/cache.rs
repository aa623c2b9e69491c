//! [`RedisReplayCache`]: one `SET NX PXAT` per proof.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ligand_redis_client::{ClientConfig, ConnectError, Connector, SettingsError, TimedOut, within};
use ligand_runtime::{Recorded, ReplayCache, ReplayCacheError, ReplayKey};
use redis::aio::ConnectionManager;
use redis::{RedisError, Value};

/// How long one `SET` may take before the proof is refused.
pub const DEFAULT_TIMEOUT: Duration =
    Duration::from_millis(ligand_redis_client::DEFAULT_TIMEOUT_MS);
/// How long connecting may take at startup.
pub const DEFAULT_CONNECT_TIMEOUT: Duration =
    Duration::from_millis(ligand_redis_client::DEFAULT_CONNECT_TIMEOUT_MS);
/// The prefix of every key.
pub const DEFAULT_KEY_PREFIX: &str = "ligand:wpt:";

/// Where the cache lives and how long it may take.
///
/// `Debug` shows the URL with its password replaced by `***`.
#[derive(Debug, Clone)]
pub struct RedisReplayConfig {
    client: ClientConfig,
    key_prefix: String,
}

impl RedisReplayConfig {
    /// The store at `url` (`redis://` or `rediss://`), with the default prefix and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            client: ClientConfig::new(url),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    /// The prefix of every key (services sharing a store keep their proofs apart with it).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long one `SET` may take (whole milliseconds, at least 1).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// How long connecting may take (whole milliseconds, at least 1).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_connect_timeout(timeout);
        self
    }

    /// Checks the URL and timeouts as [`RedisReplayCache::connect`] does, without connecting:
    /// a configuration loader reports a bad setting before anything starts.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.client.validate()
    }

    /// Trusts the CA certificates in `path` for a `rediss://` store, instead of the system's
    /// roots.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client = self.client.with_ca_file(path);
        self
    }
}

/// Why one `SET` failed; the source of the [`ReplayCacheError::Backend`] it returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum RecordError {
    #[error(transparent)]
    Timeout(#[from] TimedOut),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("unexpected reply to SET NX: {0}")]
    BadReply(String),
}

/// A [`ReplayCache`] shared by every instance of a service, in Redis or Valkey.
pub struct RedisReplayCache {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    url: String,
}

impl fmt::Debug for RedisReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayCache")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisReplayCache {
    /// Checks the settings, connects and `PING`s: fails if Redis is unreachable (or the URL
    /// has a `#fragment`, or the CA file cannot be read), so that startup fails closed.
    pub async fn connect(config: RedisReplayConfig) -> Result<Self, ConnectError> {
        let connector = Connector::new(&config.client)?;
        let connection = connector.connect().await?;
        Ok(Self {
            connection,
            prefix: config.key_prefix,
            timeout: connector.timeout(),
            url: connector.url().to_owned(),
        })
    }

    async fn set(&self, key: &ReplayKey, expires_at: SystemTime) -> Result<Recorded, RecordError> {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        name.push_str(&hex::encode(key.as_bytes()));
        // An expiry before the epoch cannot happen for a proof that passed its `exp` check;
        // it is clamped to 1 ms, which the store treats as already expired.
        let expiry_ms = expires_at
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .max(1);
        let mut connection = self.connection.clone();
        let reply = redis::cmd("SET")
            .arg(&name)
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expiry_ms)
            .query_async::<Value>(&mut connection)
            .await?;
        match reply {
            Value::Okay => Ok(Recorded::Fresh),
            Value::Nil => Ok(Recorded::Replay),
            other => Err(RecordError::BadReply(format!("{other:?}"))),
        }
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn record(
        &self,
        key: ReplayKey,
        expires_at: SystemTime,
        _now: SystemTime,
    ) -> Result<Recorded, ReplayCacheError> {
        // The store judges expiry by its own clock: `now` is the verifier's.
        within(self.timeout, self.set(&key, expires_at))
            .await
            .map_err(RecordError::from)
            .and_then(|recorded| recorded)
            .map_err(|error| ReplayCacheError::Backend(Box::new(error)))
    }
}
