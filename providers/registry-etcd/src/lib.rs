//! An etcd v3 service registry and registrar: instances publish themselves under a lease
//! ([`EtcdRegistrar`]) and callers resolve and watch them ([`EtcdRegistry`]). For fleets
//! whose addresses change: autoscaled, rescheduled, spread across machines.
//!
//! ```toml
//! [registry]
//! kind = "etcd"
//! endpoints = ["https://etcd-1.internal:2379", "https://etcd-2.internal:2379"]
//! advertise = "accounts-1.bank.internal:8443"
//! lease_ttl = "10s"
//! ca = "/etc/ligand/etcd-ca.pem"
//! cert = "/etc/ligand/etcd-client.pem"
//! key = "/etc/ligand/etcd-client.key"
//! ```
//!
//! ```no_run
//! use ligand_registry_etcd::{EtcdConfig, EtcdRegistrar, EtcdRegistry};
//! use ligand_runtime::{Config, ServiceRegistration};
//!
//! let etcd = EtcdConfig::new(["http://127.0.0.1:2379"]);
//! let config = Config::builder()
//!     .registry(EtcdRegistry::from_config(&etcd)?)
//!     .registrar(
//!         EtcdRegistrar::from_config(&etcd)?,
//!         ServiceRegistration::advertise("10.0.0.5:8443"),
//!     )
//!     .build();
//! # let _ = config;
//! # Ok::<(), ligand_registry_etcd::EtcdConfigError>(())
//! ```
//!
//! # Key layout
//!
//! One key per instance:
//!
//! ```text
//! <prefix>/services/<percent-encoded SPIFFE ID>/<percent-encoded host:port>
//!   → {"address":"10.0.0.5:8443","spiffe_id":"spiffe://bank.example/service/fraud","metadata":{"zone":"a"}}
//! ```
//!
//! The prefix defaults to `/ligand`. Both path segments are percent-encoded (everything but
//! ASCII letters, digits, `-`, `.`, `_` and `~`), so `spiffe://bank.example/service/fraud`
//! becomes `spiffe%3A%2F%2Fbank.example%2Fservice%2Ffraud` and a service's instances are
//! exactly the keys under `<prefix>/services/<encoded ID>/`. The key is attached to the
//! instance's lease: a process that dies stops renewing it and etcd removes the key after the
//! lease TTL.
//!
//! # Health
//!
//! An entry whose metadata has `health = "unhealthy"` is kept in etcd but never returned:
//! [`EtcdRegistrar`] writes it at shutdown, before deregistering, so callers stop choosing a
//! draining instance. Entries that do not parse, that name a different SPIFFE ID than their key,
//! or whose address is not `host:port`, are skipped with a warning.
//!
//! # Trust
//!
//! The registry is an address directory, not an identity authority: the outbound transport
//! dials an endpoint and accepts only a peer presenting the SPIFFE ID it asked for. A forged
//! entry can make calls fail, not reach another workload. Restrict writes under the prefix
//! with etcd's own authentication (`username`/`password` or client certificates) all the same.

#![forbid(unsafe_code)]

mod config;
mod entry;
mod registrar;
mod registry;

pub use self::config::{
    DEFAULT_DIAL_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_PREFIX, EtcdConfig, EtcdConfigError,
};
pub use self::entry::{UNHEALTHY, instance_key, service_prefix};
pub use self::registrar::EtcdRegistrar;
pub use self::registry::EtcdRegistry;
