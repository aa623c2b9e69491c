//! Typed errors. They name the path, the HTTP status and OpenBao's own error messages (which
//! never carry secret values); never a secret, a token or a response body.

use std::path::PathBuf;

use ligand_runtime::ProviderError;

/// Why OpenBao could not deliver a secret, authenticate, or be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenBaoError {
    /// 403: the token may not read this path (or is invalid or expired).
    #[error("permission denied on {path:?}{}", messages(.errors))]
    PermissionDenied {
        /// The API path.
        path: String,
        /// OpenBao's error messages.
        errors: Vec<String>,
    },
    /// 404: no secret (or no current version of it) at this path.
    #[error("no secret at {path:?}")]
    NotFound {
        /// The API path.
        path: String,
    },
    /// 400: OpenBao refused the request (for a lease: it does not exist or was revoked).
    #[error("bad request on {path:?}{}", messages(.errors))]
    BadRequest {
        /// The API path.
        path: String,
        /// OpenBao's error messages.
        errors: Vec<String>,
    },
    /// 503 "Vault is sealed": the server is up but sealed.
    #[error("OpenBao is sealed (reading {path:?})")]
    Sealed {
        /// The API path.
        path: String,
    },
    /// 5xx (or 429): the server failed or is unavailable.
    #[error("OpenBao unavailable on {path:?}: HTTP {status}{}", messages(.errors))]
    Unavailable {
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// OpenBao's error messages.
        errors: Vec<String>,
    },
    /// Any other unexpected status.
    #[error("unexpected HTTP {status} on {path:?}{}", messages(.errors))]
    UnexpectedStatus {
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// OpenBao's error messages.
        errors: Vec<String>,
    },
    /// The server could not be reached (connection, TLS or protocol failure).
    #[error("OpenBao unreachable on {path:?}")]
    Transport {
        /// The API path.
        path: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server did not answer in time.
    #[error("OpenBao did not answer on {path:?} in time")]
    Timeout {
        /// The API path.
        path: String,
    },
    /// The answer is not what the API documents (the content is never quoted).
    #[error("invalid response on {path:?}: {reason}")]
    InvalidResponse {
        /// The API path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The secret name cannot be an OpenBao API path.
    #[error("invalid secret path {path:?}: {reason}")]
    InvalidPath {
        /// The name as asked for.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Logging in failed.
    #[error("{method} login failed")]
    Login {
        /// The auth method (`token`, `cert`, `jwt`).
        method: &'static str,
        /// Why.
        #[source]
        source: Box<OpenBaoError>,
    },
    /// No token was configured and neither `BAO_TOKEN` nor `VAULT_TOKEN` is set.
    #[error("no OpenBao token: configure one or set BAO_TOKEN or VAULT_TOKEN")]
    MissingToken,
    /// The JWT file could not be read.
    #[error("JWT file {path:?} could not be read")]
    JwtFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid OpenBao configuration: {0}")]
    Config(String),
    /// The TLS configuration could not be built.
    #[error("OpenBao TLS configuration rejected")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The provider has not been started (the framework starts it during `init`).
    #[error("the OpenBao provider is not started")]
    NotStarted,
}

fn messages(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

impl OpenBaoError {
    /// Whether the lease (or path) is gone: 400 or 404, the answers OpenBao gives for an
    /// unknown, expired or revoked lease.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::BadRequest { .. } | Self::NotFound { .. })
    }
}

impl From<OpenBaoError> for ProviderError {
    fn from(error: OpenBaoError) -> Self {
        ProviderError::backend(error.to_string(), error)
    }
}
