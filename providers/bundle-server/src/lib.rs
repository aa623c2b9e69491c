//! The Ligand bundle server: builds one signed OPA policy bundle per service from a policy
//! repository folder and serves it over mTLS with the OPA bundle protocol, so that every
//! service (through `ligand-bundle-fetcher-http`) or any OPA fetches exactly its own policy.
//!
//! - **Layout.** `services/<name>/**` holds a service's modules (`*.rego`) and data
//!   (`data.json`); `lib/**` is overlaid onto every bundle. Paths are bundle paths, mirroring
//!   data and package paths (`services/accounts/ligand/authz/data.json` becomes
//!   `data.ligand.authz`). See [`BundleStore`].
//! - **Revisions.** A bundle's revision is the SHA-256 of its files ([`revision`]): identical
//!   content gives an identical revision on any server instance, so a fleet of stateless
//!   servers agrees on ETags. The `.manifest` carries the revision and the [`roots`]; the bundle
//!   is signed in OPA's `.signatures.json` format (ES256 by default, RS256 supported).
//! - **Protocol.** `GET /bundles/<name>` answers `200` with the archive and `ETag: "<revision>"`,
//!   or `304` when `If-None-Match` names the current revision. With `Prefer: wait=N` (capped at
//!   60 s by default) a current client is held until a new revision appears or N seconds pass
//!   (then `304`). See the [`protocol`] module.
//! - **Scoping.** The caller's SPIFFE ID, verified in the mTLS handshake, selects the only bundle
//!   it may fetch ([`Scoping`]): an explicit mapping, or `<name>` for exactly
//!   `spiffe://<own domain>/service/<name>`; any other name is refused with `403` whether it
//!   exists or not.
//!   Every request writes one audit line on the `ligand::audit` tracing target with the caller,
//!   the bundle, the revision and the status.
//! - **Changes.** [`watch`] rebuilds on filesystem events (debounced) and on a periodic rescan;
//!   a new revision wakes the long polls waiting on that bundle. A service folder that fails to
//!   build keeps its previous bundle.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use ligand_bundle_server::{BundleServer, BundleStore, Scoping, WatchOptions, watch};
//! use ligand_opa_bundle::SigningKey;
//! use ligand_runtime::tls::IdentityState;
//!
//! # async fn run(identity: Arc<IdentityState>, key_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::from_pem("bundle-key", "ES256", key_pem)?;
//! let store = Arc::new(BundleStore::open("/srv/policy", key, None)?);
//! let _watch = watch(store.clone(), WatchOptions::default());
//! let scoping = Scoping::new(identity.spiffe_id().trust_domain().clone());
//! let server = BundleServer::bind("0.0.0.0:8443", &identity, store, scoping).await?;
//! let handle = server.spawn();
//! // ... until a signal:
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod error;
mod layout;
pub mod protocol;
mod scope;
mod server;
mod store;
mod watch;

pub use self::error::{BuildError, RepoError, ServerError};
pub use self::layout::{LIB_DIR, SERVICES_DIR, is_valid_bundle_name, revision, roots};
pub use self::scope::{SERVICE_PREFIX, Scoping, default_bundle_name};
pub use self::server::{BundleServer, DEFAULT_DRAIN_TIMEOUT, HANDSHAKE_TIMEOUT, ServerHandle};
pub use self::store::{BuiltBundle, BundleStore, Rescan};
pub use self::watch::{DEFAULT_DEBOUNCE, DEFAULT_RESCAN_INTERVAL, RepoWatch, WatchOptions, watch};
