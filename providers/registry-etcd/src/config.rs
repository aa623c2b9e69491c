//! Connection settings shared by the registry and the registrar.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use ligand_runtime::ProviderError;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/ligand";
/// The default registration lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The default time to connect to etcd, and the deadline of each request.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach etcd and where the registry lives in it. Build with [`EtcdConfig::new`] and
/// the setters; [`EtcdRegistry::from_config`](crate::EtcdRegistry::from_config) and
/// [`EtcdRegistrar::from_config`](crate::EtcdRegistrar::from_config) validate it.
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Client URLs: `http://host:2379`, or `https://…` with [`ca`](Self::ca) set.
    pub endpoints: Vec<String>,
    /// The key prefix (default [`DEFAULT_PREFIX`]): starts with `/`, does not end with one.
    pub prefix: String,
    /// The registration lease TTL, in whole seconds (default [`DEFAULT_LEASE_TTL`]). etcd
    /// removes an instance this long after its process stops renewing.
    pub lease_ttl: Duration,
    /// How long renewals may fail before the registrar reports its registration lost and the
    /// service turns Degraded (default: the lease TTL).
    pub grace_period: Option<Duration>,
    /// Time to connect, and deadline of each request (default [`DEFAULT_DIAL_TIMEOUT`]).
    pub dial_timeout: Duration,
    /// The CA bundle (PEM) that etcd's server certificate must chain to; required for
    /// `https://` endpoints.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM) for etcd's client-certificate authentication; needs
    /// [`key`](Self::key).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// etcd user name, with [`password`](Self::password).
    pub username: Option<String>,
    /// etcd password.
    pub password: Option<String>,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("grace_period", &self.grace_period)
            .field("dial_timeout", &self.dial_timeout)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A configuration that cannot be used. Each message names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdConfigError {
    /// No endpoint was given.
    #[error("endpoints: at least one etcd endpoint is required")]
    NoEndpoints,
    /// An endpoint is not an `http://` or `https://` URL with a host.
    #[error("endpoints: {endpoint:?} is not an http:// or https:// URL with a host")]
    Endpoint {
        /// The endpoint as written.
        endpoint: String,
    },
    /// Some endpoints use TLS and others do not.
    #[error("endpoints: mixing http:// and https:// endpoints is refused")]
    MixedSchemes,
    /// TLS files were given for `http://` endpoints, which would not use them.
    #[error("{setting}: set for http:// endpoints, which do not use TLS; use https://")]
    TlsWithoutHttps {
        /// `ca`, `cert` or `key`.
        setting: &'static str,
    },
    /// `https://` endpoints without a CA to verify the server with.
    #[error("ca: https:// endpoints need the CA bundle that etcd's certificate chains to")]
    MissingCa,
    /// A client certificate without its key, or the reverse.
    #[error("cert and key: a client certificate needs both")]
    IncompleteClientCert,
    /// A password sent in the clear to a non-loopback endpoint.
    #[error("password: refused over plaintext http:// to {endpoint}; use https://")]
    PlaintextPassword {
        /// The non-loopback endpoint.
        endpoint: String,
    },
    /// A user name without a password, or the reverse.
    #[error("username and password: etcd authentication needs both")]
    IncompleteCredentials,
    /// A file could not be read.
    #[error("{setting}: reading {path}: {source}")]
    Read {
        /// `ca`, `cert` or `key`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The prefix is not an absolute key path.
    #[error("prefix: {prefix:?} must start with '/', not end with '/', and not be \"/\"")]
    Prefix {
        /// The prefix as written.
        prefix: String,
    },
    /// The lease TTL is not a whole number of seconds of at least one.
    #[error("lease_ttl: {ttl:?} must be a whole number of seconds, at least 1s")]
    LeaseTtl {
        /// The TTL given.
        ttl: Duration,
    },
    /// A duration that must be positive is zero.
    #[error("{setting}: must be longer than zero")]
    ZeroDuration {
        /// `grace_period` or `dial_timeout`.
        setting: &'static str,
    },
}

impl EtcdConfig {
    /// Plaintext or TLS `endpoints` (`http://127.0.0.1:2379`), every other setting at its
    /// default.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            lease_ttl: DEFAULT_LEASE_TTL,
            grace_period: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            ca: None,
            cert: None,
            key: None,
            username: None,
            password: None,
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the registration lease TTL.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets how long renewals may fail before the registration is reported lost.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = Some(grace);
        self
    }

    /// Sets the connect and request deadline.
    #[must_use]
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Verifies etcd's certificate with the CA bundle at `ca`, and optionally presents a
    /// client certificate.
    #[must_use]
    pub fn tls(mut self, ca: impl Into<PathBuf>, client: Option<(PathBuf, PathBuf)>) -> Self {
        self.ca = Some(ca.into());
        (self.cert, self.key) = client.map_or((None, None), |(c, k)| (Some(c), Some(k)));
        self
    }

    /// Authenticates as `username`.
    #[must_use]
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Checks every setting and reads the TLS files.
    pub(crate) fn validate(&self) -> Result<Settings, EtcdConfigError> {
        if self.endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoints);
        }
        let mut tls = None;
        for endpoint in &self.endpoints {
            let (https, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
                (true, rest)
            } else if let Some(rest) = endpoint.strip_prefix("http://") {
                (false, rest)
            } else {
                return Err(EtcdConfigError::Endpoint {
                    endpoint: endpoint.clone(),
                });
            };
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if host.is_empty() || host.contains('@') {
                return Err(EtcdConfigError::Endpoint {
                    endpoint: endpoint.clone(),
                });
            }
            if *tls.get_or_insert(https) != https {
                return Err(EtcdConfigError::MixedSchemes);
            }
            if !https && self.password.is_some() && !is_loopback(host) {
                return Err(EtcdConfigError::PlaintextPassword {
                    endpoint: endpoint.clone(),
                });
            }
        }
        let https = tls.unwrap_or_default();
        if !https {
            for (setting, set) in [
                ("ca", self.ca.is_some()),
                ("cert", self.cert.is_some()),
                ("key", self.key.is_some()),
            ] {
                if set {
                    return Err(EtcdConfigError::TlsWithoutHttps { setting });
                }
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(EtcdConfigError::IncompleteClientCert);
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(EtcdConfigError::IncompleteCredentials);
        }
        let tls = if https {
            let ca = self.ca.as_deref().ok_or(EtcdConfigError::MissingCa)?;
            let mut options =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read("ca", ca)?));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                options =
                    options.identity(Identity::from_pem(read("cert", cert)?, read("key", key)?));
            }
            Some(options)
        } else {
            None
        };
        let prefix = &self.prefix;
        if !prefix.starts_with('/') || prefix.ends_with('/') {
            return Err(EtcdConfigError::Prefix {
                prefix: prefix.clone(),
            });
        }
        let ttl = self.lease_ttl;
        if ttl.subsec_nanos() != 0 || ttl.as_secs() == 0 || i64::try_from(ttl.as_secs()).is_err() {
            return Err(EtcdConfigError::LeaseTtl { ttl });
        }
        let grace = self.grace_period.unwrap_or(ttl);
        if grace.is_zero() {
            return Err(EtcdConfigError::ZeroDuration {
                setting: "grace_period",
            });
        }
        if self.dial_timeout.is_zero() {
            return Err(EtcdConfigError::ZeroDuration {
                setting: "dial_timeout",
            });
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_timeout(self.dial_timeout);
        if let Some(tls) = tls {
            connect = connect.with_tls(tls);
        }
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            connect = connect.with_user(user.clone(), password.clone());
        }
        Ok(Settings {
            endpoints: self.endpoints.clone(),
            connect,
            prefix: prefix.clone(),
            lease_ttl: ttl,
            grace,
            timeout: self.dial_timeout,
        })
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    std::fs::read(path).map_err(|source| EtcdConfigError::Read {
        setting,
        path: path.to_owned(),
        source,
    })
}

/// `127.0.0.0/8`, `[::1]` or `localhost`, with or without a port.
fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A validated configuration.
#[derive(Clone)]
pub(crate) struct Settings {
    endpoints: Vec<String>,
    connect: ConnectOptions,
    pub(crate) prefix: String,
    pub(crate) lease_ttl: Duration,
    pub(crate) grace: Duration,
    /// The deadline of each request.
    pub(crate) timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Connects, and checks that etcd answers.
    pub(crate) async fn connect(&self) -> Result<Client, ProviderError> {
        let connecting = async {
            let mut client = Client::connect(&self.endpoints, Some(self.connect.clone()))
                .await
                .map_err(|e| ProviderError::backend("connecting to etcd", e))?;
            client
                .status()
                .await
                .map_err(|e| ProviderError::backend("asking etcd for its status", e))?;
            Ok(client)
        };
        self.deadline("connecting to etcd", connecting).await?
    }

    /// Runs `request` within the request deadline.
    pub(crate) async fn deadline<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = T>,
    ) -> Result<T, ProviderError> {
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| {
                ProviderError::backend(
                    what,
                    format!("no answer from etcd within {:?}", self.timeout),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: EtcdConfig) -> String {
        match config.validate() {
            Ok(_) => panic!("accepted: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let settings = EtcdConfig::new(["http://127.0.0.1:2379"]).validate();
        let Ok(settings) = settings else {
            panic!("{settings:?}")
        };
        assert_eq!(settings.prefix, "/ligand");
        assert_eq!(settings.lease_ttl, Duration::from_secs(10));
        assert_eq!(settings.grace, Duration::from_secs(10));
    }

    #[test]
    fn bad_settings_are_named() {
        let local = || EtcdConfig::new(["http://127.0.0.1:2379"]);
        assert!(refused(EtcdConfig::new(Vec::<String>::new())).starts_with("endpoints:"));
        assert!(refused(EtcdConfig::new(["127.0.0.1:2379"])).starts_with("endpoints:"));
        assert!(refused(EtcdConfig::new(["http://"])).starts_with("endpoints:"));
        assert!(refused(EtcdConfig::new(["http://a:1", "https://b:1"])).contains("mixing"));
        assert!(refused(EtcdConfig::new(["https://a:1"])).starts_with("ca:"));
        assert!(refused(local().tls("/ca.pem", None)).starts_with("ca:"));
        assert!(refused(local().prefix("ligand")).starts_with("prefix:"));
        assert!(refused(local().prefix("/ligand/")).starts_with("prefix:"));
        assert!(refused(local().prefix("/")).starts_with("prefix:"));
        assert!(refused(local().lease_ttl(Duration::from_millis(1500))).starts_with("lease_ttl:"));
        assert!(refused(local().lease_ttl(Duration::ZERO)).starts_with("lease_ttl:"));
        assert!(refused(local().grace_period(Duration::ZERO)).starts_with("grace_period:"));
        assert!(refused(local().dial_timeout(Duration::ZERO)).starts_with("dial_timeout:"));
        let mut half = local();
        half.username = Some("svc".into());
        assert!(refused(half).starts_with("username and password:"));
        assert!(
            refused(EtcdConfig::new(["http://etcd.internal:2379"]).credentials("svc", "pw"))
                .starts_with("password:")
        );
        assert!(local().credentials("svc", "pw").validate().is_ok());
        let mut cert_only = EtcdConfig::new(["https://a:1"]);
        cert_only.ca = Some("/ca.pem".into());
        cert_only.cert = Some("/c.pem".into());
        assert!(refused(cert_only).starts_with("cert and key:"));
        let missing = EtcdConfig::new(["https://a:1"]).tls("/nonexistent/ca.pem", None);
        assert!(matches!(
            missing.validate(),
            Err(EtcdConfigError::Read { setting: "ca", .. })
        ));
    }

    #[test]
    fn passwords_are_not_printed() {
        let config = EtcdConfig::new(["http://127.0.0.1:2379"]).credentials("svc", "hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

/// The client, connected at first use.
#[derive(Default)]
pub(crate) struct Connection(tokio::sync::OnceCell<Client>);

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("connected", &self.0.initialized())
            .finish()
    }
}

impl Connection {
    /// The client, connecting (and checking etcd answers) the first time.
    pub(crate) async fn get(&self, settings: &Settings) -> Result<Client, ProviderError> {
        self.0.get_or_try_init(|| settings.connect()).await.cloned()
    }
}
