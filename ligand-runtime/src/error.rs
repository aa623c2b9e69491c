//! Typed errors: what providers report, what `init` refuses, and what the pipeline denies.

use std::fmt;
use std::time::Duration;

use crate::chain::ChainRejection;
use crate::health::ProviderKind;
use crate::txn::TxnRejection;
use crate::wimse::WimseRejection;

/// A boxed error from a provider's backend, kept as the `source` of the typed errors below.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error every provider method returns.
///
/// [`ProviderError::NotSupported`] is not a failure: it says an optional capability is absent,
/// and the framework then applies that capability's safe default (the Go original's
/// `ErrNotSupported`). Every other variant is a failure and fails closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider does not implement this optional capability.
    #[error("capability not supported by this provider")]
    NotSupported,
    /// The provider's backend could not be reached or answered with an error.
    #[error("{context}")]
    Backend {
        /// What the provider was doing.
        context: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
    /// The provider answered with data the framework cannot use.
    #[error("invalid data from provider: {0}")]
    Invalid(String),
    /// The provider has been closed.
    #[error("provider is closed")]
    Closed,
}

impl ProviderError {
    /// A backend failure with a short description of what was being done.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Whether this is [`ProviderError::NotSupported`].
    pub fn is_not_supported(&self) -> bool {
        matches!(self, Self::NotSupported)
    }
}

/// Why [`init`](crate::init) refused to start the service. The process must not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// One or more required providers are absent; all of them are listed at once.
    #[error(transparent)]
    MissingRequiredProviders(#[from] MissingRequiredProviders),
    /// The identity provider could not supply an X.509 context.
    #[error("workload identity unavailable")]
    Identity(#[source] ProviderError),
    /// The identity provider returned an empty SVID list.
    #[error("identity provider returned no SVIDs")]
    NoSvids,
    /// The configured SPIFFE ID is not among the SVIDs the identity provider returned.
    #[error("identity provider returned no SVID for {0}")]
    SvidNotFound(String),
    /// The SVID or the trust bundle is unusable (bad key, bad certificate, empty bundle).
    #[error("workload identity rejected")]
    Tls(#[source] crate::tls::TlsError),
    /// A configured optional provider failed to start (an unreachable backend is fatal at init).
    #[error("{kind} provider failed to start")]
    Provider {
        /// Which provider failed.
        kind: ProviderKind,
        /// Its error.
        #[source]
        source: ProviderError,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The admin listener (health probes and metrics) could not listen on its address: the
    /// port is taken, or the address is not this host's. Set another address, or turn the
    /// admin listener off.
    #[error(
        "cannot listen on {address} for the admin listener (setting `admin.listen`; `admin.enabled = false` turns it off)"
    )]
    Admin {
        /// The configured address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The required providers missing from a [`Config`](crate::Config), all reported together so
/// that one run shows every gap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingRequiredProviders {
    /// Each required provider kind that was not configured.
    pub missing: Vec<ProviderKind>,
}

impl fmt::Display for MissingRequiredProviders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing required providers: ")?;
        for (i, kind) in self.missing.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{kind}")?;
        }
        Ok(())
    }
}

/// Why the enforcement pipeline refused a request. Every variant denies.
///
/// Each maps to a fixed HTTP status and a stable machine-readable code through
/// [`Denial::status`] and [`Denial::code`]; the public message never carries internal detail
/// (the detail goes to telemetry and logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The rate limiter refused the request within its normal operation (`ErrRateLimitDenial`).
    #[error("request denied by rate limiter")]
    RateLimited {
        /// When the caller may retry, if the limiter said.
        retry_after: Option<Duration>,
    },
    /// The rate limiter failed; the request is denied rather than let through
    /// (`ErrRateLimiterFailure`).
    #[error("rate limiter unavailable")]
    RateLimiterFailure,
    /// The policy denied the request (`ErrPolicyDenial`).
    #[error("request denied by policy")]
    PolicyDenied,
    /// Policy evaluation failed or timed out; the request is denied.
    #[error("policy evaluation unavailable")]
    PolicyFailure,
    /// The service is not ready (initializing, draining or a required provider unavailable).
    #[error("service not ready")]
    NotReady,
    /// The request carried no verified peer identity.
    #[error("peer identity not verified")]
    Unauthenticated,
    /// Request metadata the framework reads (a path parameter) was malformed.
    #[error("malformed request metadata")]
    BadRequest,
    /// The identity chain header did not verify; the code names the check that failed.
    #[error("{0}")]
    InvalidChain(ChainRejection),
    /// The Transaction Token was absent where required, malformed or invalid. The public
    /// message names only the class (`TXN_TOKEN_MISSING`, `TXN_TOKEN_MALFORMED`,
    /// `TXN_TOKEN_INVALID`); the failed check goes to the logs.
    #[error("{}", .0.public_message())]
    InvalidTxnToken(TxnRejection),
    /// The WIMSE Workload Identity Token / Workload Proof Token pair was absent where
    /// required, malformed, invalid or replayed. The public message names only the class
    /// (`WIMSE_MISSING`, `WIMSE_MALFORMED`, `WIMSE_INVALID`, `WIMSE_UNAVAILABLE`); the failed
    /// check goes to the logs.
    #[error("{}", .0.public_message())]
    InvalidWimse(WimseRejection),
    /// A gateway's external caller presented no access token, or one that did not validate
    /// (`ACCESS_TOKEN_MISSING`, `INVALID_TOKEN`); the failed check goes to the logs.
    #[error("{}", .0.public_message())]
    InvalidAccessToken(crate::gateway::AccessTokenRejection),
}

impl Denial {
    /// The stable machine-readable code sent as `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::RateLimiterFailure => "RATE_LIMITER_UNAVAILABLE",
            Self::PolicyDenied => "POLICY_DENIED",
            Self::PolicyFailure => "POLICY_UNAVAILABLE",
            Self::NotReady => "SERVICE_NOT_READY",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::BadRequest => "BAD_REQUEST",
            Self::InvalidChain(rejection) => rejection.code(),
            Self::InvalidTxnToken(rejection) => rejection.code(),
            Self::InvalidWimse(rejection) => rejection.code(),
            Self::InvalidAccessToken(rejection) => rejection.code(),
        }
    }

    /// Whether `code` is one only the enforcement pipeline sends (so a caller can tell a
    /// peer's refusal from a handler's own error status).
    pub(crate) fn is_enforcement_code(code: &str) -> bool {
        matches!(
            code,
            "RATE_LIMITED"
                | "RATE_LIMITER_UNAVAILABLE"
                | "POLICY_DENIED"
                | "POLICY_UNAVAILABLE"
                | "SERVICE_NOT_READY"
                | "UNAUTHENTICATED"
                | "BAD_REQUEST"
                | "ACCESS_TOKEN_MISSING"
                | "INVALID_TOKEN"
        ) || code.starts_with("CHAIN_")
            || code.starts_with("TXN_TOKEN_")
            || code.starts_with("WIMSE_")
    }

    /// The HTTP status this denial maps to.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PolicyDenied => StatusCode::FORBIDDEN,
            Self::RateLimiterFailure | Self::PolicyFailure | Self::NotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::BadRequest | Self::InvalidChain(_) => StatusCode::BAD_REQUEST,
            Self::InvalidTxnToken(rejection) => rejection.status(),
            Self::InvalidWimse(rejection) => rejection.status(),
            Self::InvalidAccessToken(rejection) => rejection.status(),
        }
    }
}

/// Why [`Server::serve`](crate::Server::serve) stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `serve` was called without a binding (a trust-boundary server without one).
    #[error("no binding configured: this server only enforces through Server::enforce")]
    NoBinding,
    /// A gateway service (`#[ligand::service(gateway)]`) was served without a gateway
    /// configuration (`[gateway]`, [`ConfigBuilder::gateway`](crate::ConfigBuilder::gateway)).
    #[error(
        "no gateway configured: a gateway service needs [gateway] listen and its token settings"
    )]
    NoGateway,
    /// `serve` was already called on this server.
    #[error("the server is already serving")]
    AlreadyServing,
    /// The server has been closed.
    #[error("the server is closed")]
    Closed,
    /// The binding failed (for example, the listen address is in use).
    #[error("binding failed")]
    Binding(#[source] BoxError),
    /// The registrar could not publish this instance; the binding was stopped.
    #[error("registering this instance failed")]
    Registration(#[source] ProviderError),
}

/// The error of a Ligand `main`: anything that stops the service from starting or serving.
///
/// A `main` that returns it prints it with `Debug`, so `Debug` reads like the message a
/// person needs: the error, then each cause on its own line (`{:#?}` keeps the structure).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Initialization refused to start the service.
    #[error(transparent)]
    Init(#[from] InitError),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The configuration could not be loaded.
    #[error("configuration could not be loaded")]
    Config(#[source] BoxError),
    /// The async runtime could not start.
    #[error("async runtime could not start")]
    Runtime(#[source] BoxError),
    /// An error from the service's own code.
    #[error(transparent)]
    Other(BoxError),
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return match self {
                Self::Init(e) => f.debug_tuple("Init").field(e).finish(),
                Self::Serve(e) => f.debug_tuple("Serve").field(e).finish(),
                Self::Config(e) => f.debug_tuple("Config").field(e).finish(),
                Self::Runtime(e) => f.debug_tuple("Runtime").field(e).finish(),
                Self::Other(e) => f.debug_tuple("Other").field(e).finish(),
            };
        }
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            write!(f, "\n  caused by: {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_chain_is_400_with_the_rejection_code_and_no_detail() {
        let denial = Denial::InvalidChain(ChainRejection::BadSignature);
        assert_eq!(denial.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(denial.code(), "CHAIN_BAD_SIGNATURE");
        assert!(Denial::is_enforcement_code(denial.code()));
        assert_eq!(
            denial.to_string(),
            "identity chain signature does not verify"
        );
    }

    #[test]
    fn a_refused_transaction_token_names_only_its_class() {
        let denial = Denial::InvalidTxnToken(TxnRejection::BadSignature);
        assert_eq!(denial.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(denial.code(), "TXN_TOKEN_INVALID");
        assert_eq!(denial.to_string(), "transaction token rejected");
        let malformed = Denial::InvalidTxnToken(TxnRejection::Malformed);
        assert_eq!(malformed.status(), http::StatusCode::BAD_REQUEST);
        for code in [
            "TXN_TOKEN_INVALID",
            "TXN_TOKEN_MISSING",
            "TXN_TOKEN_MALFORMED",
        ] {
            assert!(Denial::is_enforcement_code(code), "{code}");
        }
    }

    #[test]
    fn a_main_error_prints_its_causes_on_their_own_lines() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = Error::Config(Box::new(io));
        assert_eq!(
            format!("{error:?}"),
            "configuration could not be loaded\n  caused by: address in use"
        );
        assert!(format!("{error:#?}").starts_with("Config("));
    }
}
