//! [`Connector`]: a checked configuration turned into a client, and the connection made from
//! it within the connect timeout.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, TlsCertificates};

use crate::config::{ClientConfig, SettingsError, redacted};

/// Reconnection attempts the connection manager makes per outage before giving up until the
/// next command; the command's own timeout bounds how long a request waits for them.
pub const RECONNECT_ATTEMPTS: usize = 3;

/// Why a [`Connector`] could not be made or could not connect. A provider's startup fails on
/// any of them: the service must not start.
///
/// `E` is the configuration error: [`SettingsError`] from the [`Connector`]; a provider that
/// checks more settings of its own names its error type here (with
/// [`map_config`](Self::map_config)), so that one enum describes its whole startup.
///
/// Not `#[non_exhaustive]`, for the reason given on [`SettingsError`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError<E = SettingsError> {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] E),
    /// The URL is not a Redis URL.
    #[error("invalid redis url {url}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },
    /// The CA file could not be read.
    #[error("cannot read redis CA file {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Redis could not be reached, refused the connection (or its TLS certificate did not
    /// verify) or failed the `PING`.
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

impl<E> ConnectError<E> {
    /// The same error with the configuration error converted by `f`.
    pub fn map_config<F>(self, f: impl FnOnce(E) -> F) -> ConnectError<F> {
        match self {
            Self::Config(error) => ConnectError::Config(f(error)),
            Self::Url { url, source } => ConnectError::Url { url, source },
            Self::CaFile { path, source } => ConnectError::CaFile { path, source },
            Self::Unreachable { url, source } => ConnectError::Unreachable { url, source },
            Self::Timeout { url, timeout } => ConnectError::Timeout { url, timeout },
        }
    }
}

/// A checked [`ClientConfig`]: the client (with the CA file's roots for `rediss://`) and the
/// connection manager's settings, ready to connect.
///
/// Making one reads the CA file but opens no connection, so a configuration loader can make
/// it synchronously and connect later.
#[derive(Clone)]
pub struct Connector {
    client: Client,
    manager: ConnectionManagerConfig,
    url: String,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Checks `config` ([`ClientConfig::validate`]), reads the CA file if there is one and
    /// parses the URL. Connects to nothing.
    pub fn new<const TIMEOUT_MS: u64>(
        config: &ClientConfig<TIMEOUT_MS>,
    ) -> Result<Self, ConnectError> {
        config.validate()?;
        let url = redacted(&config.url);
        let timeout = config.timeout();
        let connect_timeout = config.connect_timeout();
        let client = match &config.ca_file {
            None => Client::open(config.url.as_str()),
            Some(path) => {
                // A small file read once at startup, before the service serves.
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
            url,
            timeout,
            connect_timeout,
        })
    }

    /// Opens the connection manager and `PING`s, both within the connect timeout: fails if
    /// Redis is unreachable, so that startup fails closed. The manager reconnects by itself
    /// after later outages.
    pub async fn connect(&self) -> Result<ConnectionManager, ConnectError> {
        self.within_connect_timeout(async {
            let mut connection = self.manager().await?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
                .map_err(|source| self.unreachable(source))?;
            Ok(connection)
        })
        .await
    }

    /// Opens the connection manager within the connect timeout, without a `PING`: for a
    /// provider that connects on first use.
    pub async fn open(&self) -> Result<ConnectionManager, ConnectError> {
        self.within_connect_timeout(self.manager()).await
    }

    /// Runs `step` (part of connecting, such as loading a script) within the connect timeout;
    /// a Redis error is [`ConnectError::Unreachable`].
    pub async fn setup<T>(
        &self,
        step: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, ConnectError> {
        self.within_connect_timeout(async { step.await.map_err(|source| self.unreachable(source)) })
            .await
    }

    /// The URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long one command may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long connecting may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    async fn manager(&self) -> Result<ConnectionManager, ConnectError> {
        ConnectionManager::new_with_config(self.client.clone(), self.manager.clone())
            .await
            .map_err(|source| self.unreachable(source))
    }

    async fn within_connect_timeout<T>(
        &self,
        step: impl Future<Output = Result<T, ConnectError>>,
    ) -> Result<T, ConnectError> {
        tokio::time::timeout(self.connect_timeout, step)
            .await
            .map_err(|_| ConnectError::Timeout {
                url: self.url.clone(),
                timeout: self.connect_timeout,
            })?
    }

    fn unreachable(&self, source: RedisError) -> ConnectError {
        ConnectError::Unreachable {
            url: self.url.clone(),
            source,
        }
    }
}
