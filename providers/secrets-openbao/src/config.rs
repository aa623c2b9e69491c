//! Configuration: the address, the CA that signs OpenBao's certificate, the auth method and
//! the timings.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::error::OpenBaoError;
use crate::provider::OpenBaoSecrets;

/// The default interval between lease lookups that detect revocations.
pub const DEFAULT_LEASE_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The default validity of a KV value in the framework's cache before it is read again.
pub const DEFAULT_KV_TTL: Duration = Duration::from_secs(300);

/// The default bound on one HTTP exchange.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The default largest response body accepted (1 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How the provider authenticates to OpenBao.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// A token (`X-Vault-Token`), renewed with `auth/token/renew-self` when renewable.
    Token(SecretString),
    /// The token in `BAO_TOKEN`, else `VAULT_TOKEN`, read when the provider is built.
    TokenFromEnv,
    /// TLS certificate auth (`POST auth/<mount>/login`) presenting the workload's X.509-SVID.
    Cert {
        /// The auth mount, `cert` by default.
        mount: String,
        /// The certificate role to log in as; `None` lets OpenBao pick the matching one.
        role: Option<String>,
    },
    /// JWT auth (`POST auth/<mount>/login` with `{"role","jwt"}`) with a JWT-SVID read from a
    /// file at each login, so a rotated token is picked up.
    Jwt {
        /// The auth mount, `jwt` by default.
        mount: String,
        /// The JWT role.
        role: String,
        /// The file holding the JWT.
        jwt_path: PathBuf,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::TokenFromEnv => f.write_str("TokenFromEnv"),
            Self::Cert { mount, role } => f
                .debug_struct("Cert")
                .field("mount", mount)
                .field("role", role)
                .finish(),
            Self::Jwt {
                mount,
                role,
                jwt_path,
            } => f
                .debug_struct("Jwt")
                .field("mount", mount)
                .field("role", role)
                .field("jwt_path", jwt_path)
                .finish(),
        }
    }
}

impl Auth {
    /// Token auth with `token`.
    pub fn token(token: impl Into<String>) -> Self {
        Self::Token(SecretString::from(token.into()))
    }

    /// Certificate auth on the `cert` mount, as `role` (or the role OpenBao matches).
    pub fn cert(role: Option<&str>) -> Self {
        Self::Cert {
            mount: "cert".to_owned(),
            role: role.map(str::to_owned),
        }
    }

    /// JWT auth on the `jwt` mount as `role`, with the JWT read from `jwt_path`.
    pub fn jwt(role: &str, jwt_path: impl Into<PathBuf>) -> Self {
        Self::Jwt {
            mount: "jwt".to_owned(),
            role: role.to_owned(),
            jwt_path: jwt_path.into(),
        }
    }

    /// The same method on another auth mount (for `Cert` and `Jwt`).
    pub fn mount(mut self, path: &str) -> Self {
        if let Self::Cert { mount, .. } | Self::Jwt { mount, .. } = &mut self {
            path.trim_matches('/').clone_into(mount);
        }
        self
    }

    pub(crate) fn method(&self) -> &'static str {
        match self {
            Self::Token(_) | Self::TokenFromEnv => "token",
            Self::Cert { .. } => "cert",
            Self::Jwt { .. } => "jwt",
        }
    }
}

/// The settings a started provider uses.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) address: String,
    pub(crate) ca_pem: Vec<u8>,
    pub(crate) auth: Auth,
    pub(crate) kv_v2_mounts: Vec<String>,
    pub(crate) kv_ttl: Option<Duration>,
    pub(crate) lease_poll_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: usize,
}

/// Configures an [`OpenBaoSecrets`]; obtained from [`OpenBaoSecrets::builder`].
#[derive(Debug, Clone)]
pub struct OpenBaoBuilder {
    settings: Settings,
}

impl OpenBaoBuilder {
    pub(crate) fn new(address: &str, ca_pem: &[u8]) -> Self {
        Self {
            settings: Settings {
                address: address.to_owned(),
                ca_pem: ca_pem.to_owned(),
                auth: Auth::TokenFromEnv,
                kv_v2_mounts: vec!["secret".to_owned()],
                kv_ttl: Some(DEFAULT_KV_TTL),
                lease_poll_interval: DEFAULT_LEASE_POLL_INTERVAL,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            },
        }
    }

    /// The auth method (default: [`Auth::TokenFromEnv`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.settings.auth = auth;
        self
    }

    /// The KV v2 mounts (default: `secret`). A name `<mount>/data/<path>` under one of them is
    /// read as KV v2; any other name is read as a leased (dynamic) or KV v1 secret.
    pub fn kv_v2_mounts<I, S>(mut self, mounts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings.kv_v2_mounts = mounts
            .into_iter()
            .map(|m| m.into().trim_matches('/').to_owned())
            .collect();
        self
    }

    /// How long a KV value stays in the framework's cache before it is read again, so that a
    /// new version is picked up (default [`DEFAULT_KV_TTL`]; `None`: never re-read).
    pub fn kv_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.settings.kv_ttl = ttl;
        self
    }

    /// The interval between lease lookups that detect revoked leases (default
    /// [`DEFAULT_LEASE_POLL_INTERVAL`]).
    pub fn lease_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.lease_poll_interval = interval;
        self
    }

    /// The bound on one HTTP exchange (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// The largest response body accepted (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.settings.max_response_bytes = limit;
        self
    }

    /// Checks the configuration and builds the provider. It connects when the framework
    /// starts it, during `init`.
    pub fn build(mut self) -> Result<OpenBaoSecrets, OpenBaoError> {
        let settings = &mut self.settings;
        let uri: http::Uri = settings
            .address
            .parse()
            .map_err(|_| OpenBaoError::Config("the address is not a URI".into()))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(OpenBaoError::Config(
                "the address must be https://host[:port]".into(),
            ));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(OpenBaoError::Config(
                "the address must not carry a path or query".into(),
            ));
        }
        if matches!(settings.auth, Auth::TokenFromEnv) {
            let token = ["BAO_TOKEN", "VAULT_TOKEN"]
                .iter()
                .find_map(|var| std::env::var(var).ok().filter(|t| !t.is_empty()))
                .ok_or(OpenBaoError::MissingToken)?;
            settings.auth = Auth::token(token);
        }
        if settings.lease_poll_interval.is_zero() || settings.request_timeout.is_zero() {
            return Err(OpenBaoError::Config(
                "intervals and timeouts must be positive".into(),
            ));
        }
        crate::tls::root_store(&settings.ca_pem)?;
        Ok(OpenBaoSecrets::from_settings(self.settings))
    }
}
