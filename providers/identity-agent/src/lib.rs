//! The Ligand identity agent: a real SPIFFE Workload API server for development and tests,
//! and the same CA and JWT authority usable in-process.
//!
//! - **Workload API** (the published `workload.proto`, gRPC over a unix socket): X.509-SVIDs
//!   streamed with rotation at half-life, X.509 and JWT bundles, JWT-SVIDs and their
//!   validation. Any SPIFFE client (the `spiffe` crate, go-spiffe, py-spiffe) works unchanged:
//!   like SPIRE, the agent accepts the percent-encoded socket path that gRPC C-core (grpcio,
//!   so py-spiffe) sends as `:authority`, which the HTTP/2 server alone would reset as
//!   malformed; a relay in front of it drops such an authority, which the agent never reads.
//! - **Attestation by the kernel**: each connection's SO_PEERCRED (pid, uid, gid) and
//!   `/proc/<pid>/exe` become selectors (`unix:uid:N`, `unix:gid:N`, `unix:path:/…`), matched
//!   against registration entries; a caller matching none gets PermissionDenied. Nothing the
//!   client sends is trusted, and requests without `workload.spiffe.io: true` are rejected.
//!   Before an SVID is sent, the attested process is checked again (same pid and start time,
//!   same executable), so a caller that executed another program after connecting, or whose
//!   pid was reused, gets nothing. See [Limits of attestation](#limits-of-attestation).
//! - **Socket** created 0700 (configurable) in a 0700 directory; a stale socket is replaced,
//!   anything else at the path is refused.
//! - **CA**: ECDSA P-256, persisted as PEM (key 0600) or ephemeral; SVIDs meet the
//!   X.509-SVID specification (one URI SAN, not a CA, digitalSignature, serverAuth and
//!   clientAuth); default lifetime one hour, down to one second.
//! - **JWT authority**: ES256 (default) or RS256 JWT-SVIDs and WITs
//!   (draft-ietf-wimse-workload-creds, `typ: wit+jwt`, `cnf.jwk`), an OIDC discovery document
//!   and JWKS over HTTP, and key rotation that keeps retired keys published until their last
//!   token expires.
//! - **Embedded mode**: [`EmbeddedIdentity`] implements [`ligand_runtime::WorkloadIdentity`]
//!   from the same parts, when no socket is configured (with a loud warning).
//!
//! The binary `ligand-agent` runs the agent from a TOML file (see [`AgentConfig::parse`]):
//!
//! ```toml
//! trust_domain = "example.org"
//! state_dir = "/var/lib/ligand-agent"
//!
//! [socket]
//! path = "/run/ligand/agent.sock"
//! mode = 0o700
//!
//! [oidc]
//! listen = "127.0.0.1:8089"
//! algorithm = "ES256"
//! key_rotation = "24h"
//!
//! [[entry]]
//! spiffe_id = "spiffe://example.org/service/hello"
//! selectors = ["unix:uid:1000", "unix:path:/usr/local/bin/hello"]
//! x509_ttl = "1h"
//! jwt_ttl = "5m"
//! ```
//!
//! # Example
//!
//! ```no_run
//! use ligand_identity_agent::{Agent, AgentConfig, RegistrationEntry, Selector};
//! use ligand_runtime::{SpiffeId, TrustDomain};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = AgentConfig::new(TrustDomain::new("example.org")?, "/run/ligand/agent.sock")
//!     .entry(RegistrationEntry::new(
//!         SpiffeId::new("spiffe://example.org/service/hello")?,
//!         vec![Selector::Uid(1000)],
//!     ));
//! let agent = Agent::start(config).await?;
//! // Workloads now set SPIFFE_ENDPOINT_SOCKET to agent.endpoint().
//! agent.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Limits of attestation
//!
//! The kernel names the process that *connected*; the agent cannot know which process reads
//! the answer. A process can share its connection (fork, or pass the descriptor) with another
//! and leave the reading to it, and any process of the same user can control another one
//! (ptrace, `/proc/<pid>/mem`, `LD_PRELOAD` at its start). So callers of the same uid are not
//! separated from each other: whatever one of them may obtain, all of them may. A `unix:path`
//! selector alone even lets any user who can run that program obtain its identity; pair it
//! with `unix:uid`, run workloads that need distinct identities as distinct users, and keep
//! the socket 0700. The check before sending narrows the exec and pid-reuse races to the
//! instant between that check and the write; a pid reused between the connection and the
//! agent's first look at the caller is not detected.
//!
//! The Workload API has no WIT RPC, so WITs are issued in-process: through
//! [`EmbeddedIdentity`] (`fetch_wit`) or [`JwtAuthority::issue_wit`].

#![forbid(unsafe_code)]

mod agent;
mod attest;
mod authority;
mod ca;
mod config;
mod dev;
mod embedded;
mod error;
mod jwt;
pub mod oidc;
pub mod proto;
mod socket;
mod workload_api;

pub use self::agent::{Agent, RunningAgent};
pub use self::attest::{AttestError, PeerInfo, Selector, SelectorError};
pub use self::ca::{CaError, IssuedSvid, LocalCa};
pub use self::config::{
    AgentConfig, ConfigError, DEFAULT_JWT_KEY_ROTATION, DEFAULT_JWT_TTL, DEFAULT_OIDC_LISTEN,
    DEFAULT_SOCKET_MODE, DEFAULT_X509_TTL, MIN_TTL, OidcConfig, RegistrationEntry, SocketConfig,
};
pub use self::dev::{CallerCredentials, DEFAULT_CALLER, DEFAULT_CALLER_TTL, DevDir};
pub use self::embedded::{DEFAULT_WIT_TTL, EmbeddedIdentity};
pub use self::error::AgentError;
pub use self::jwt::{JwtAlgorithm, JwtAuthority, JwtError, JwtSvid, ValidatedJwt, WIT_TYP};
pub use self::socket::SocketError;
