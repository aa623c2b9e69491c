//! Which bundle each caller may fetch.

use std::collections::HashMap;

use spiffe::{SpiffeId, TrustDomain};

use crate::layout::is_valid_bundle_name;

/// Maps a caller's verified SPIFFE ID to the one bundle it may fetch.
///
/// An explicit entry wins. Otherwise only a service ID of the server's own trust domain,
/// exactly `spiffe://<own domain>/service/<name>`, gets the bundle `<name>`: the name stands
/// for that one SPIFFE ID, so no other workload reaches it. Every other ID gets nothing unless
/// mapped explicitly: `spiffe://bank.example/dev/service/accounts` or
/// `spiffe://bank.example/ns/dev/sa/accounts` sharing a last segment with the accounts service
/// does not make them the accounts service, and a federated domain must not obtain a local
/// service's policy by choosing a matching path.
///
/// ```
/// use ligand_bundle_server::Scoping;
/// use spiffe::{SpiffeId, TrustDomain};
///
/// let scoping = Scoping::new(TrustDomain::new("bank.example")?)
///     .map(SpiffeId::new("spiffe://partner.example/ns/fraud")?, "fraud");
/// let accounts = SpiffeId::new("spiffe://bank.example/service/accounts")?;
/// assert_eq!(scoping.bundle_for(&accounts).as_deref(), Some("accounts"));
/// let dev = SpiffeId::new("spiffe://bank.example/dev/service/accounts")?;
/// assert_eq!(scoping.bundle_for(&dev), None);
/// let partner = SpiffeId::new("spiffe://partner.example/ns/fraud")?;
/// assert_eq!(scoping.bundle_for(&partner).as_deref(), Some("fraud"));
/// let stranger = SpiffeId::new("spiffe://partner.example/ns/other")?;
/// assert_eq!(scoping.bundle_for(&stranger), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Scoping {
    own_domain: TrustDomain,
    table: HashMap<SpiffeId, String>,
}

impl Scoping {
    /// The default rule for callers of `own_domain`, no explicit entries.
    pub fn new(own_domain: TrustDomain) -> Self {
        Self {
            own_domain,
            table: HashMap::new(),
        }
    }

    /// Maps `caller` to `bundle` explicitly (overriding the default rule).
    pub fn map(mut self, caller: SpiffeId, bundle: impl Into<String>) -> Self {
        self.table.insert(caller, bundle.into());
        self
    }

    /// The bundle `caller` may fetch, if any.
    pub fn bundle_for(&self, caller: &SpiffeId) -> Option<String> {
        if let Some(name) = self.table.get(caller) {
            return Some(name.clone());
        }
        if !caller.is_member_of(&self.own_domain) {
            return None;
        }
        default_bundle_name(caller).map(str::to_owned)
    }
}

/// The path prefix of the service IDs that name their bundle by default.
pub const SERVICE_PREFIX: &str = "/service/";

/// The default bundle name of a workload: `<name>` for a SPIFFE ID whose whole path is
/// `/service/<name>` (a valid bundle name), and none for any other path. The name is derived
/// from the full path so that two different IDs never share it.
pub fn default_bundle_name(id: &SpiffeId) -> Option<&str> {
    id.path()
        .strip_prefix(SERVICE_PREFIX)
        .filter(|name| is_valid_bundle_name(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).unwrap()
    }

    #[test]
    fn default_rule_applies_to_the_own_domain_only() {
        let scoping = Scoping::new(TrustDomain::new("example.org").unwrap());
        assert_eq!(
            scoping.bundle_for(&id("spiffe://other.org/service/accounts")),
            None
        );
        assert_eq!(scoping.bundle_for(&id("spiffe://example.org")), None);
    }

    #[test]
    fn default_rule_is_the_full_service_path_not_the_last_segment() {
        let scoping = Scoping::new(TrustDomain::new("example.org").unwrap());
        for id_str in [
            "spiffe://example.org/dev/service/accounts",
            "spiffe://example.org/ns/dev/sa/accounts",
            "spiffe://example.org/ns/prod/sa/accounts",
            "spiffe://example.org/accounts",
            "spiffe://example.org/service/accounts/debug",
            "spiffe://example.org/agent/accounts",
            "spiffe://example.org/service",
        ] {
            assert_eq!(scoping.bundle_for(&id(id_str)), None, "{id_str}");
        }
        assert_eq!(
            scoping.bundle_for(&id("spiffe://example.org/service/accounts")),
            Some("accounts".into())
        );
        // An explicit entry maps any other shape.
        let mapped = scoping.map(id("spiffe://example.org/ns/prod/sa/accounts"), "accounts");
        assert_eq!(
            mapped.bundle_for(&id("spiffe://example.org/ns/prod/sa/accounts")),
            Some("accounts".into())
        );
        assert_eq!(
            mapped.bundle_for(&id("spiffe://example.org/ns/dev/sa/accounts")),
            None
        );
    }

    #[test]
    fn explicit_entries_win() {
        let scoping = Scoping::new(TrustDomain::new("example.org").unwrap())
            .map(id("spiffe://example.org/service/accounts"), "ledger");
        assert_eq!(
            scoping.bundle_for(&id("spiffe://example.org/service/accounts")),
            Some("ledger".into())
        );
    }
}
