//! The agent's top-level error.

use crate::ca::CaError;
use crate::config::ConfigError;
use crate::jwt::JwtError;
use crate::socket::SocketError;

/// Why the agent (or the embedded identity) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Workload API socket could not be bound.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The CA could not be created or loaded.
    #[error("certificate authority unavailable")]
    Ca(#[from] CaError),
    /// The JWT authority could not be created.
    #[error("JWT authority unavailable")]
    Jwt(#[from] JwtError),
    /// The OIDC discovery endpoint could not listen.
    #[error("cannot listen on {addr} for the OIDC discovery endpoint")]
    OidcListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
