//! OpenBao / Vault secrets for Ligand: a [`Secrets`](ligand_runtime::Secrets) backend over
//! the HTTP API, with KV v2 reads, leased dynamic secrets, lease renewal and revocation
//! detection.
//!
//! ```no_run
//! use ligand_secrets_openbao::{Auth, OpenBaoSecrets};
//!
//! # fn build(ca_pem: &[u8]) -> Result<OpenBaoSecrets, ligand_secrets_openbao::OpenBaoError> {
//! let secrets = OpenBaoSecrets::builder("https://bao.internal:8200", ca_pem)
//!     .auth(Auth::cert(Some("accounts")))   // log in with the workload's X.509-SVID
//!     .build()?;
//! // Config::builder()…secrets(secrets): the framework starts it during init.
//! # Ok(secrets) }
//! ```
//!
//! # API
//!
//! The provider speaks the HTTP API v1 of OpenBao 2.x, which is that of Vault 1.x:
//!
//! | call | use |
//! |---|---|
//! | `GET /v1/<mount>/data/<path>` | KV v2 read: `data.data` is the value, `data.metadata.version` is recorded ([`OpenBaoSecrets::kv_version`]) |
//! | `GET /v1/<path>` | any other secret: `data` is the value; `lease_id`, `lease_duration` (the TTL) and `renewable` are its lease |
//! | `PUT /v1/sys/leases/renew` `{"lease_id","increment"}` | lease renewal (see below) |
//! | `PUT /v1/sys/leases/lookup` `{"lease_id"}` | revocation detection: 400/404 means the lease is gone |
//! | `GET /v1/auth/token/lookup-self`, `POST /v1/auth/token/renew-self` | token checks and renewal |
//! | `POST /v1/auth/<mount>/login` | certificate (`{"name"}`) and JWT (`{"role","jwt"}`) logins |
//!
//! Every call but the logins carries `X-Vault-Token`. A secret name is the full API path
//! (`secret/data/accounts/db`); names under a configured KV v2 mount (default `secret`) are
//! read as KV v2, others as leased or KV v1 secrets. The value handed to the framework is the
//! secret's JSON object of keys, which `#[ligand::secret]` structs decode.
//!
//! # Renewal and revocation
//!
//! The framework's cache re-fetches a secret before its TTL ends. For a renewable, valid
//! lease the provider then **renews** the lease and returns the same value with the new TTL;
//! it **re-reads** (new lease, new credentials) when the lease is not renewable, has expired,
//! was refused, or is near its maximum TTL. Leases handed out are looked up every
//! [`lease_poll_interval`](OpenBaoBuilder::lease_poll_interval); one OpenBao no longer knows
//! (revoked, 400/404) is reported as a [`SecretRevocation`](ligand_runtime::SecretRevocation),
//! and the cache evicts it and reads again. KV values get a TTL too
//! ([`kv_ttl`](OpenBaoBuilder::kv_ttl), default 5 minutes), so new versions are picked up.
//!
//! # Authentication
//!
//! - [`Auth::Token`] / [`Auth::TokenFromEnv`] (`BAO_TOKEN`, else `VAULT_TOKEN`): checked with
//!   `lookup-self` at start; renewed with `renew-self` at half its TTL when renewable.
//! - [`Auth::Cert`]: TLS certificate auth presenting the workload's current X.509-SVID (taken
//!   from the framework at start, rotation included).
//! - [`Auth::Jwt`]: JWT auth with a JWT-SVID read from a file at each login.
//!
//! A login-based token is renewed when renewable and otherwise replaced by a new login; a 403
//! also triggers one fresh login and retry.
//!
//! # TLS
//!
//! HTTPS only, TLS 1.3, the server verified by web PKI against the configured CA and the
//! address's host (OpenBao serves a CA-issued certificate, not an SVID), through the
//! framework's pooled [`Dialer`](ligand_runtime::dial::Dialer).
//!
//! # Errors
//!
//! Failures are typed [`OpenBaoError`]s (the source of the
//! [`ProviderError`](ligand_runtime::ProviderError)): 403 [`PermissionDenied`](OpenBaoError::PermissionDenied),
//! 404 [`NotFound`](OpenBaoError::NotFound), 503 "sealed" [`Sealed`](OpenBaoError::Sealed),
//! other 5xx [`Unavailable`](OpenBaoError::Unavailable), unreachable
//! [`Transport`](OpenBaoError::Transport). They name the path and may quote OpenBao's
//! `{"errors":[…]}` messages; never a value, a token or a body. Parse failures report only
//! their category and position. Response bodies are copied into zeroizing buffers and secret
//! data is taken from them as raw JSON, without intermediate parsed copies.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod config;
mod error;
mod http;
mod leases;
mod provider;
mod tls;

pub use self::config::{
    Auth, DEFAULT_KV_TTL, DEFAULT_LEASE_POLL_INTERVAL, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_TIMEOUT, OpenBaoBuilder,
};
pub use self::error::OpenBaoError;
pub use self::provider::OpenBaoSecrets;
