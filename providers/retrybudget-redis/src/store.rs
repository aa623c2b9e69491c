//! [`RedisRetryBudget`]: the fleet store, one pipelined round trip per sync.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use ligand_runtime::{FleetDelta, FleetRetryBudget, FleetSyncError, FleetTotals};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, ServerErrorKind, TlsCertificates};

use tokio::sync::OnceCell;

use crate::config::{ConfigError, RedisFleetConfig, redacted};
use crate::script;

/// Reconnection attempts per outage before giving up until the next sync.
const RECONNECT_ATTEMPTS: usize = 3;

/// How long keys outlive the window, so that a bucket is never dropped while still counted.
const TTL_SLACK_SECS: u64 = 5;

/// Why opening the connection failed.
enum Opened {
    Redis(RedisError),
    Timeout,
}

/// Why [`RedisRetryBudget::new`] or [`RedisRetryBudget::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `url` is not a Redis URL.
    #[error("url: invalid redis url {url}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },
    /// `ca_file` could not be read.
    #[error("ca_file: cannot read {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Redis could not be reached, or failed the `PING` or the script load.
    #[error("redis at {url} is unreachable")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },
    /// Connecting took longer than `connect_timeout_ms`.
    #[error("redis at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL, password redacted.
        url: String,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// The fleet store on Redis: implements [`FleetRetryBudget`] for
/// [`ligand_runtime::FleetBudget`].
pub struct RedisRetryBudget {
    client: Client,
    manager: ConnectionManagerConfig,
    /// Made on the first sync that reaches Redis; reconnects by itself afterwards.
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
    url: String,
    sha: String,
}

impl fmt::Debug for RedisRetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRetryBudget")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl RedisRetryBudget {
    /// Validates `config` and prepares the client without connecting: the first sync
    /// connects, and until it does the fleet view is stale (the local budget decides, and the
    /// budget reports Degraded). For configuration files, whose loading is synchronous.
    pub fn new(config: RedisFleetConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let url = redacted(&config.url);
        let timeout = Duration::from_millis(config.timeout_ms);
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let client = match &config.ca_file {
            None => Client::open(config.url.as_str()),
            Some(path) => {
                // A small file read once at startup.
                let pem = std::fs::read(path).map_err(|source| ConnectError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                let certificates = TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                Client::build_with_tls(config.url.as_str(), certificates)
            }
        }
        .map_err(|source| ConnectError::Url {
            url: url.clone(),
            source,
        })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_max_delay(timeout);
        Ok(Self {
            client,
            manager,
            connection: OnceCell::new(),
            prefix: config.key_prefix,
            timeout,
            connect_timeout,
            url,
            sha: redis::Script::new(script::SYNC).get_hash().to_owned(),
        })
    }

    /// Validates `config`, connects and `PING`s: fails when Redis is unreachable at start,
    /// so a wrong URL shows at once; later outages only make the fleet view stale.
    pub async fn connect(config: RedisFleetConfig) -> Result<Self, ConnectError> {
        let store = Self::new(config)?;
        let url = store.url.clone();
        let mut connection = store.connection().await.map_err(|error| match error {
            Opened::Redis(source) => ConnectError::Unreachable {
                url: url.clone(),
                source,
            },
            Opened::Timeout => ConnectError::Timeout {
                url: url.clone(),
                timeout: store.connect_timeout,
            },
        })?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|source| ConnectError::Unreachable { url, source })?;
        Ok(store)
    }

    /// The connection, made on first use within the connect timeout.
    async fn connection(&self) -> Result<ConnectionManager, Opened> {
        self.connection
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    self.connect_timeout,
                    ConnectionManager::new_with_config(self.client.clone(), self.manager.clone()),
                )
                .await
                .map_err(|_| Opened::Timeout)?
                .map_err(Opened::Redis)
            })
            .await
            .cloned()
    }

    /// [`connection`](Self::connection) for a sync: a connect timeout is an I/O time-out.
    async fn sync_connection(&self) -> Result<ConnectionManager, RedisError> {
        self.connection().await.map_err(|opened| match opened {
            Opened::Redis(error) => error,
            Opened::Timeout => RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        })
    }

    /// `PING`, on the shared connection.
    async fn ping(&self) -> Result<(), RedisError> {
        let mut connection = self.sync_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut connection).await
    }

    /// One pipeline of one `EVALSHA` per target.
    async fn run(
        &self,
        instance: &str,
        window_secs: u64,
        deltas: &[FleetDelta],
    ) -> Result<Vec<(u64, u64, u64)>, RedisError> {
        let mut connection = self.sync_connection().await?;
        let ttl = window_secs + TTL_SLACK_SECS;
        let mut pipe = redis::pipe();
        for delta in deltas {
            let bucket = format!("{}:{{{}}}", self.prefix, delta.target);
            let instances = format!("{bucket}:i");
            pipe.cmd("EVALSHA")
                .arg(&self.sha)
                .arg(2)
                .arg(bucket)
                .arg(instances)
                .arg(delta.calls)
                .arg(delta.retries)
                .arg(window_secs)
                .arg(instance)
                .arg(ttl);
        }
        match pipe.query_async(&mut connection).await {
            // The server lost its scripts (a restart or `SCRIPT FLUSH`): load it again and
            // resend once. The deltas were not applied, since no script ran.
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script::SYNC)
                    .query_async::<String>(&mut connection)
                    .await?;
                pipe.query_async(&mut connection).await
            }
            other => other,
        }
    }
}

#[async_trait]
impl FleetRetryBudget for RedisRetryBudget {
    async fn sync(
        &self,
        instance: &str,
        window: Duration,
        deltas: &[FleetDelta],
    ) -> Result<Vec<FleetTotals>, FleetSyncError> {
        if deltas.is_empty() {
            // Nothing to count yet: a PING keeps the health honest while no call goes out.
            return tokio::time::timeout(self.timeout, self.ping())
                .await
                .map_err(|_| {
                    FleetSyncError(format!("redis did not answer within {:?}", self.timeout).into())
                })?
                .map(|()| Vec::new())
                .map_err(|error| FleetSyncError(Box::new(error)));
        }
        let window_secs = window.as_secs().max(1);
        let replies = tokio::time::timeout(self.timeout, self.run(instance, window_secs, deltas))
            .await
            .map_err(|_| {
                FleetSyncError(format!("redis did not answer within {:?}", self.timeout).into())
            })?
            .map_err(|error| FleetSyncError(Box::new(error)))?;
        Ok(replies
            .into_iter()
            .map(|(calls, retries, instances)| FleetTotals::new(calls, retries, instances))
            .collect())
    }
}
