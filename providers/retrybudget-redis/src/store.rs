//! [`RedisRetryBudget`]: the fleet store, one pipelined round trip per sync.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use ligand_redis_client::{Connector, within};
use ligand_runtime::{FleetDelta, FleetRetryBudget, FleetSyncError, FleetTotals};
use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use tokio::sync::OnceCell;

use crate::config::{ConfigError, RedisFleetConfig};
use crate::script;

/// How long keys outlive the window, so that a bucket is never dropped while still counted.
const TTL_SLACK_SECS: u64 = 5;

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

/// The shared connection's errors keep this type's variants and texts (each names its
/// setting), which users match on.
impl From<ligand_redis_client::ConnectError> for ConnectError {
    fn from(error: ligand_redis_client::ConnectError) -> Self {
        use ligand_redis_client::ConnectError as Shared;
        match error {
            Shared::Config(error) => Self::Config(error.into()),
            Shared::Url { url, source } => Self::Url { url, source },
            Shared::CaFile { path, source } => Self::CaFile { path, source },
            Shared::Unreachable { url, source } => Self::Unreachable { url, source },
            Shared::Timeout { url, timeout } => Self::Timeout { url, timeout },
        }
    }
}

/// The fleet store on Redis: implements [`FleetRetryBudget`] for
/// [`ligand_runtime::FleetBudget`].
pub struct RedisRetryBudget {
    connector: Connector,
    /// Made on the first sync that reaches Redis; reconnects by itself afterwards.
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    sha: String,
}

impl fmt::Debug for RedisRetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRetryBudget")
            .field("url", &self.connector.url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.connector.timeout())
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
        Ok(Self {
            connector: Connector::new(&config.client)?,
            connection: OnceCell::new(),
            prefix: config.key_prefix,
            sha: redis::Script::new(script::SYNC).get_hash().to_owned(),
        })
    }

    /// Validates `config`, connects and `PING`s within the connect timeout: fails when Redis
    /// is unreachable at start, so a wrong URL shows at once; later outages only make the
    /// fleet view stale.
    pub async fn connect(config: RedisFleetConfig) -> Result<Self, ConnectError> {
        let store = Self::new(config)?;
        let connection = store.connector.connect().await?;
        // The cell is new: nothing else can have filled it.
        let _ = store.connection.set(connection);
        Ok(store)
    }

    /// The connection, made on first use within the connect timeout; a connect timeout is an
    /// I/O time-out.
    async fn sync_connection(&self) -> Result<ConnectionManager, RedisError> {
        use ligand_redis_client::ConnectError as Shared;
        self.connection
            .get_or_try_init(|| self.connector.open())
            .await
            .cloned()
            .map_err(|error| match error {
                Shared::Unreachable { source, .. } => source,
                Shared::Timeout { .. } => {
                    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                }
                // `open` fails only as above; kept whole should that change.
                other => RedisError::from(std::io::Error::other(other)),
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
            return within(self.connector.timeout(), self.ping())
                .await
                .map_err(|timed_out| FleetSyncError(Box::new(timed_out)))?
                .map(|()| Vec::new())
                .map_err(|error| FleetSyncError(Box::new(error)));
        }
        let window_secs = window.as_secs().max(1);
        let replies = within(
            self.connector.timeout(),
            self.run(instance, window_secs, deltas),
        )
        .await
        .map_err(|timed_out| FleetSyncError(Box::new(timed_out)))?
        .map_err(|error| FleetSyncError(Box::new(error)))?;
        Ok(replies
            .into_iter()
            .map(|(calls, retries, instances)| FleetTotals::new(calls, retries, instances))
            .collect())
    }
}
