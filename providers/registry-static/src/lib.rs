//! A service registry from configuration: each SPIFFE ID maps to a fixed list of `host:port`
//! endpoints. The embedded default, and enough for any deployment whose addresses are known
//! ahead (a laptop, a compose file, Kubernetes Services).
//!
//! ```toml
//! [services."spiffe://bank.example/service/fraud"]
//! endpoints = ["127.0.0.1:9001", "fraud.bank.svc:8443"]
//! ```
//!
//! ```
//! use ligand_registry_static::StaticRegistry;
//! let registry = StaticRegistry::new()
//!     .service("spiffe://bank.example/service/fraud", ["127.0.0.1:9001"])
//!     .unwrap();
//! ```
//!
//! The registry is an address directory, not an identity authority: every endpoint it
//! returns carries the SPIFFE ID it is listed under, and the outbound transport accepts only a
//! peer presenting exactly that ID. A wrong address fails the call; it cannot redirect it.
//! Entries are validated when the registry is built (a malformed ID or address is an error
//! naming it), so a typo fails startup, not the first call.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use ligand_runtime::{Endpoint, ProviderError, ServiceRegistry, SpiffeId};
use serde::Deserialize;
use tokio::sync::watch;

/// `[services]` of `ligand.toml`: SPIFFE ID → its endpoints.
pub type StaticRegistryConfig = BTreeMap<String, ServiceEntry>;

/// One service of `[services]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceEntry {
    /// `host:port` addresses (`[::1]:8443` for IPv6).
    pub endpoints: Vec<String>,
}

/// A registry entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StaticRegistryError {
    /// The key is not a SPIFFE ID of a workload.
    #[error("services.\"{id}\": not a workload SPIFFE ID: {reason}")]
    SpiffeId {
        /// The key as written.
        id: String,
        /// Why it was refused.
        reason: String,
    },
    /// An endpoint is not `host:port`.
    #[error("services.\"{id}\": endpoint {address:?} is not host:port: {reason}")]
    Address {
        /// The service.
        id: String,
        /// The endpoint as written.
        address: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

/// SPIFFE ID → endpoints, fixed at build time; [`update`](Self::update) replaces a service's
/// endpoints at run time (callers watching it see the change at their next call).
#[derive(Debug, Default)]
pub struct StaticRegistry {
    services: Mutex<HashMap<String, watch::Sender<Vec<Endpoint>>>>,
}

impl StaticRegistry {
    /// An empty registry: every call fails with "no endpoints".
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry `[services]` describes.
    pub fn from_config(config: &StaticRegistryConfig) -> Result<Self, StaticRegistryError> {
        config
            .iter()
            .try_fold(Self::new(), |registry, (id, entry)| {
                registry.service(id, &entry.endpoints)
            })
    }

    /// Adds (or replaces) `spiffe_id` with `addresses`.
    pub fn service<I, A>(self, spiffe_id: &str, addresses: I) -> Result<Self, StaticRegistryError>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<str>,
    {
        self.update(spiffe_id, addresses)?;
        Ok(self)
    }

    /// Replaces the endpoints of `spiffe_id`.
    pub fn update<I, A>(&self, spiffe_id: &str, addresses: I) -> Result<(), StaticRegistryError>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<str>,
    {
        let id = workload_id(spiffe_id)?;
        let mut endpoints = Vec::new();
        for address in addresses {
            let address = address.as_ref();
            check_address(address).map_err(|reason| StaticRegistryError::Address {
                id: id.clone(),
                address: address.to_owned(),
                reason,
            })?;
            if !endpoints.iter().any(|e: &Endpoint| e.address == address) {
                endpoints.push(Endpoint {
                    address: address.to_owned(),
                    spiffe_id: id.clone(),
                    metadata: BTreeMap::new(),
                });
            }
        }
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services
            .entry(id)
            .or_insert_with(|| watch::Sender::new(Vec::new()))
            .send_replace(endpoints);
        Ok(())
    }

    fn receiver(&self, spiffe_id: &str) -> watch::Receiver<Vec<Endpoint>> {
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // An unknown service gets a channel too, so a later `update` reaches its callers.
        services
            .entry(spiffe_id.to_owned())
            .or_insert_with(|| watch::Sender::new(Vec::new()))
            .subscribe()
    }
}

#[async_trait]
impl ServiceRegistry for StaticRegistry {
    async fn resolve(&self, spiffe_id: &str) -> Result<Vec<Endpoint>, ProviderError> {
        Ok(self.receiver(spiffe_id).borrow().clone())
    }

    async fn watch(
        &self,
        spiffe_id: &str,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ProviderError> {
        Ok(self.receiver(spiffe_id))
    }
}

/// A SPIFFE ID that names a workload, in its canonical form.
fn workload_id(id: &str) -> Result<String, StaticRegistryError> {
    let refused = |reason: String| StaticRegistryError::SpiffeId {
        id: id.to_owned(),
        reason,
    };
    let parsed = SpiffeId::new(id).map_err(|e| refused(e.to_string()))?;
    if parsed.path().is_empty() {
        return Err(refused(
            "the trust domain's own ID names no workload".into(),
        ));
    }
    let canonical = parsed.to_string();
    if canonical != id {
        return Err(refused(format!(
            "not in canonical form (that is {canonical})"
        )));
    }
    Ok(canonical)
}

/// `host:port` with a non-zero port; IPv6 hosts in brackets.
fn check_address(address: &str) -> Result<(), &'static str> {
    let (host, port) = address.rsplit_once(':').ok_or("no port")?;
    match port.parse::<u16>() {
        Ok(0) => return Err("port 0"),
        Ok(_) => {}
        Err(_) => return Err("port is not a number from 1 to 65535"),
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => {
            let v6 = v6.strip_suffix(']').ok_or("unclosed [")?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "not an IPv6 address in brackets")?;
            return Ok(());
        }
        None => host,
    };
    if host.is_empty() {
        return Err("no host");
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !valid || host.len() > 253 {
        return Err("host is not a DNS name or IPv4 address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_configured_services() {
        let config: StaticRegistryConfig = toml::from_str(
            r#"
            ["spiffe://bank.example/service/fraud"]
            endpoints = ["127.0.0.1:9001", "fraud.bank.svc:8443", "[::1]:9002", "127.0.0.1:9001"]
            "#,
        )
        .unwrap_or_default();
        let registry = StaticRegistry::from_config(&config);
        let registry = registry.as_ref().map_err(ToString::to_string);
        let Ok(registry) = registry else {
            panic!("{registry:?}")
        };
        let endpoints = registry
            .resolve("spiffe://bank.example/service/fraud")
            .await
            .unwrap_or_default();
        let addresses: Vec<_> = endpoints.iter().map(|e| e.address.as_str()).collect();
        assert_eq!(
            addresses,
            ["127.0.0.1:9001", "fraud.bank.svc:8443", "[::1]:9002"]
        );
        assert!(
            endpoints
                .iter()
                .all(|e| e.spiffe_id == "spiffe://bank.example/service/fraud")
        );
        assert_eq!(
            registry
                .resolve("spiffe://bank.example/service/other")
                .await
                .ok(),
            Some(Vec::new())
        );
    }

    #[tokio::test]
    async fn watchers_see_updates() {
        let registry = StaticRegistry::new();
        let id = "spiffe://bank.example/service/fraud";
        let Ok(mut rx) = registry.watch(id).await else {
            panic!("watch refused")
        };
        assert!(rx.borrow().is_empty());
        assert_eq!(registry.update(id, ["10.0.0.1:443"]), Ok(()));
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(rx.borrow_and_update()[0].address, "10.0.0.1:443");
    }

    #[test]
    fn bad_entries_are_named() {
        for id in [
            "https://bank.example/x",
            "spiffe://bank.example",
            "spiffe://Bank.example/x",
            "spiffe://bank.example/a//b",
        ] {
            assert!(
                matches!(
                    StaticRegistry::new().service(id, ["127.0.0.1:1"]),
                    Err(StaticRegistryError::SpiffeId { .. })
                ),
                "{id}"
            );
        }
        for address in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":80",
            "[::1:80",
            "[zz]:80",
            "a b:80",
            "http://x:80",
        ] {
            let err = StaticRegistry::new().service("spiffe://td/x", [address]);
            assert!(
                matches!(&err, Err(StaticRegistryError::Address { address: a, .. }) if a == address),
                "{address}: {err:?}"
            );
        }
        let config: Result<StaticRegistryConfig, _> =
            toml::from_str("[\"spiffe://td/x\"]\nendpoint = [\"a:1\"]\n");
        assert!(config.is_err(), "unknown field accepted");
    }

    proptest::proptest! {
        #[test]
        fn address_check_never_panics(address in "\\PC{0,40}") {
            let _ = check_address(&address);
        }
    }
}
