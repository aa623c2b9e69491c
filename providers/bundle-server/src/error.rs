//! Typed errors of the repository, the store and the server.

use std::path::PathBuf;

/// Why the policy repository as a whole could not be read. Nothing is replaced: the bundles
/// already built stay served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The repository root, or its `services/` folder, is missing or unreadable.
    #[error("policy repository folder {path:?} is unreadable")]
    Unreadable {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The shared `lib/` folder could not be read; every bundle depends on it.
    #[error("shared library folder is unusable")]
    Lib(#[source] ligand_opa_bundle::BundleError),
}

/// Why one service's bundle could not be built. Its previous bundle, if any, stays served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The service folder could not be read.
    #[error("service folder is unusable")]
    Read(#[source] ligand_opa_bundle::BundleError),
    /// A file of the service folder has the same bundle path as a file of `lib/`.
    #[error("{path:?} exists both in lib/ and in the service folder")]
    Conflict {
        /// The bundle path both files claim.
        path: String,
    },
    /// The folder holds no policy file (`*.rego` or `data.json`).
    #[error("service folder holds no .rego or data.json file")]
    Empty,
    /// Signing failed (for example, a `data.json` that is not valid JSON cannot be hashed).
    #[error("bundle could not be signed")]
    Sign(#[source] ligand_opa_bundle::SignatureError),
    /// The archive could not be written.
    #[error("bundle archive could not be written")]
    Archive(#[source] ligand_opa_bundle::BundleError),
}

/// Why the bundle server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server's own identity could not be turned into a TLS configuration.
    #[error("server identity rejected")]
    Tls(#[source] ligand_runtime::tls::TlsError),
}
