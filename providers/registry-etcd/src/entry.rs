//! The key layout and the JSON stored under each key.

use std::collections::BTreeMap;

use ligand_runtime::{Endpoint, Registration};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// Everything but the URL-unreserved characters is encoded, `/` and `:` included, so an
/// encoded segment never contains the key separator.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The metadata `health` value of an instance that must not receive new calls.
pub const UNHEALTHY: &str = "unhealthy";

/// The metadata key that carries [`UNHEALTHY`].
pub(crate) const HEALTH: &str = "health";

/// `<prefix>/services/<encoded spiffe_id>/`: the keys of every instance of `spiffe_id`.
pub fn service_prefix(prefix: &str, spiffe_id: &str) -> String {
    format!(
        "{prefix}/services/{}/",
        utf8_percent_encode(spiffe_id, SEGMENT)
    )
}

/// `<prefix>/services/<encoded spiffe_id>/<encoded address>`: the key of one instance.
pub fn instance_key(prefix: &str, spiffe_id: &str, address: &str) -> String {
    format!(
        "{}{}",
        service_prefix(prefix, spiffe_id),
        utf8_percent_encode(address, SEGMENT)
    )
}

/// The stored value.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    address: String,
    spiffe_id: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// The JSON stored for `registration`, marked unhealthy when `healthy` is false.
pub(crate) fn encode(registration: &Registration, healthy: bool) -> Vec<u8> {
    let mut metadata = registration.metadata.clone();
    if healthy {
        metadata.remove(HEALTH);
    } else {
        metadata.insert(HEALTH.to_owned(), UNHEALTHY.to_owned());
    }
    let entry = Entry {
        address: registration.address.clone(),
        spiffe_id: registration.spiffe_id.clone(),
        metadata,
    };
    // Serializing strings and a string map cannot fail.
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// What one key holds, for a watcher of `spiffe_id`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A healthy instance.
    Healthy(Endpoint),
    /// An instance marked unhealthy: not returned.
    Unhealthy,
}

/// Parses the value of `key`, listed under `spiffe_id`. The error says why it is skipped.
pub(crate) fn decode(spiffe_id: &str, key: &[u8], value: &[u8]) -> Result<Parsed, String> {
    let entry: Entry =
        serde_json::from_slice(value).map_err(|e| format!("not a registry entry: {e}"))?;
    if entry.spiffe_id != spiffe_id {
        return Err(format!(
            "names {} but is listed under {spiffe_id}",
            entry.spiffe_id
        ));
    }
    check_address(&entry.address)
        .map_err(|reason| format!("address {:?} is not host:port: {reason}", entry.address))?;
    // The key's last segment is the address; a mismatch means a hand-written or stale entry.
    let listed = std::str::from_utf8(key)
        .ok()
        .and_then(|key| key.rsplit_once('/'))
        .map(|(_, last)| percent_decode_str(last).decode_utf8_lossy().into_owned());
    if listed.as_deref() != Some(entry.address.as_str()) {
        return Err(format!(
            "address {:?} does not match its key",
            entry.address
        ));
    }
    if entry.metadata.get(HEALTH).map(String::as_str) == Some(UNHEALTHY) {
        return Ok(Parsed::Unhealthy);
    }
    Ok(Parsed::Healthy(Endpoint {
        address: entry.address,
        spiffe_id: entry.spiffe_id,
        metadata: entry.metadata,
    }))
}

/// `host:port` with a non-zero port; IPv6 hosts in brackets.
pub(crate) fn check_address(address: &str) -> Result<(), &'static str> {
    let (host, port) = address.rsplit_once(':').ok_or("no port")?;
    match port.parse::<u16>() {
        Ok(0) => return Err("port 0"),
        Ok(_) => {}
        Err(_) => return Err("port is not a number from 1 to 65535"),
    }
    if let Some(v6) = host.strip_prefix('[') {
        let v6 = v6.strip_suffix(']').ok_or("unclosed [")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not an IPv6 address in brackets")?;
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err("host is not a DNS name or IP address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "spiffe://bank.example/service/fraud";

    #[test]
    fn keys_are_percent_encoded_segments() {
        assert_eq!(
            service_prefix("/ligand", ID),
            "/ligand/services/spiffe%3A%2F%2Fbank.example%2Fservice%2Ffraud/"
        );
        assert_eq!(
            instance_key("/p", ID, "[::1]:8443"),
            "/p/services/spiffe%3A%2F%2Fbank.example%2Fservice%2Ffraud/%5B%3A%3A1%5D%3A8443"
        );
    }

    #[test]
    fn entries_round_trip_and_unhealthy_ones_are_recognized() {
        let registration = Registration::new(ID, "10.0.0.1:443").with_metadata("zone", "a");
        let key = instance_key("/ligand", ID, "10.0.0.1:443");
        let healthy = encode(&registration, true);
        assert_eq!(
            decode(ID, key.as_bytes(), &healthy),
            Ok(Parsed::Healthy(registration.endpoint()))
        );
        let unhealthy = encode(&registration, false);
        assert_eq!(
            decode(ID, key.as_bytes(), &unhealthy),
            Ok(Parsed::Unhealthy)
        );
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        let key = instance_key("/ligand", ID, "10.0.0.1:443");
        let other = Registration::new("spiffe://bank.example/service/other", "10.0.0.1:443");
        for value in [
            b"not json".to_vec(),
            br#"{"address":"10.0.0.1:443"}"#.to_vec(),
            encode(&other, true),
            encode(&Registration::new(ID, "10.0.0.2:443"), true),
            encode(&Registration::new(ID, "10.0.0.1"), true),
        ] {
            assert!(
                decode(ID, key.as_bytes(), &value).is_err(),
                "{}",
                String::from_utf8_lossy(&value)
            );
        }
    }
}
