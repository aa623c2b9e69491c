//! [`RedisReplayCache`]: one `SET NX PXAT` per proof.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ligand_runtime::{Recorded, ReplayCache, ReplayCacheError, ReplayKey};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Value};

/// How long one `SET` may take before the proof is refused.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long connecting may take at startup.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The prefix of every key.
pub const DEFAULT_KEY_PREFIX: &str = "ligand:wpt:";
/// Reconnection attempts per outage before giving up until the next proof.
const RECONNECT_ATTEMPTS: usize = 3;

/// Where the cache lives and how long it may take.
#[derive(Clone)]
pub struct RedisReplayConfig {
    url: String,
    key_prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisReplayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayConfig")
            .field("url", &redacted(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl RedisReplayConfig {
    /// The store at `url` (`redis://` or `rediss://`), with the default prefix and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The prefix of every key (services sharing a store keep their proofs apart with it).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long one `SET` may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Why [`RedisReplayCache::connect`] failed: the service must not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    #[error("invalid redis url {url}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },
    /// Redis could not be reached or failed the `PING`.
    #[error("redis at {url} is unreachable")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },
    /// Connecting took longer than the connect timeout.
    #[error("redis at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL, password redacted.
        url: String,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// Why one `SET` failed; the source of the [`ReplayCacheError::Backend`] it returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum RecordError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
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
    /// Connects and `PING`s: fails if Redis is unreachable, so that startup fails closed.
    pub async fn connect(config: RedisReplayConfig) -> Result<Self, ConnectError> {
        let url = redacted(&config.url);
        let client = Client::open(config.url.as_str()).map_err(|source| ConnectError::Url {
            url: url.clone(),
            source,
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_max_delay(config.timeout);
        let unreachable = |source| ConnectError::Unreachable {
            url: url.clone(),
            source,
        };
        let connection = tokio::time::timeout(config.connect_timeout, async {
            let mut connection = ConnectionManager::new_with_config(client, manager_config)
                .await
                .map_err(unreachable)?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
                .map_err(unreachable)?;
            Ok::<_, ConnectError>(connection)
        })
        .await
        .map_err(|_| ConnectError::Timeout {
            url: url.clone(),
            timeout: config.connect_timeout,
        })??;
        Ok(Self {
            connection,
            prefix: config.key_prefix,
            timeout: config.timeout,
            url,
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
        tokio::time::timeout(self.timeout, self.set(&key, expires_at))
            .await
            .map_err(|_| RecordError::Timeout(self.timeout))
            .and_then(|recorded| recorded)
            .map_err(|error| ReplayCacheError::Backend(Box::new(error)))
    }
}

/// `url` with any password replaced by `***`.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}
