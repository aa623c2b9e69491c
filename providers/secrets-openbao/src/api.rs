//! The JSON shapes of the OpenBao / Vault HTTP API v1 that this provider reads. Secret data is
//! borrowed as raw JSON from the zeroizing response buffer and copied once, at its exact size,
//! so no parsed copy of a value is ever made; parse errors report their category and position,
//! never serde's message (which can quote the offending value).

use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::error::OpenBaoError;

/// A secret read: a leased (dynamic) secret, a KV v1 value or a KV v2 envelope.
#[derive(Deserialize)]
pub(crate) struct SecretResponse<'a> {
    #[serde(default)]
    pub(crate) lease_id: String,
    #[serde(default)]
    pub(crate) lease_duration: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
    #[serde(borrow, default)]
    pub(crate) data: Option<&'a RawValue>,
}

/// The `data` of a KV v2 read: `{"data":{…keys…},"metadata":{"version":N,…}}`.
#[derive(Deserialize)]
pub(crate) struct KvV2Data<'a> {
    #[serde(borrow, default)]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) metadata: Option<KvV2Metadata>,
}

/// KV v2 version metadata.
#[derive(Deserialize)]
pub(crate) struct KvV2Metadata {
    #[serde(default)]
    pub(crate) version: u64,
}

/// A lease renewal (`PUT sys/leases/renew`).
#[derive(Deserialize)]
pub(crate) struct RenewResponse {
    #[serde(default)]
    pub(crate) lease_id: String,
    #[serde(default)]
    pub(crate) lease_duration: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
}

/// A login or token renewal: `{"auth":{"client_token","lease_duration","renewable"}}`.
#[derive(Deserialize)]
pub(crate) struct AuthResponse {
    pub(crate) auth: Option<Auth>,
}

/// The `auth` block.
#[derive(Deserialize)]
pub(crate) struct Auth {
    pub(crate) client_token: secrecy::SecretString,
    #[serde(default)]
    pub(crate) lease_duration: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
}

/// `GET auth/token/lookup-self`: `{"data":{"ttl","renewable",…}}`.
#[derive(Deserialize)]
pub(crate) struct LookupSelf {
    pub(crate) data: Option<TokenData>,
}

/// The token's own view of itself.
#[derive(Deserialize)]
pub(crate) struct TokenData {
    #[serde(default)]
    pub(crate) ttl: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
}

/// Parses `bytes` as `T`, reporting only the category and position of a failure.
pub(crate) fn parse<'a, T: Deserialize<'a>>(
    path: &str,
    bytes: &'a [u8],
) -> Result<T, OpenBaoError> {
    serde_json::from_slice(bytes).map_err(|e| OpenBaoError::InvalidResponse {
        path: path.to_owned(),
        reason: format!(
            "{} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Io => "I/O error",
                serde_json::error::Category::Syntax => "malformed JSON",
                serde_json::error::Category::Data => "unexpected JSON shape",
                serde_json::error::Category::Eof => "truncated JSON",
            },
            e.line(),
            e.column()
        ),
    })
}

/// The raw JSON of a secret's data, which must be an object, copied at its exact size.
pub(crate) fn object_bytes(
    path: &str,
    raw: Option<&RawValue>,
) -> Result<Zeroizing<Vec<u8>>, OpenBaoError> {
    let invalid = |reason: &str| OpenBaoError::InvalidResponse {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let raw = raw.ok_or_else(|| invalid("the response has no data"))?;
    if !raw.get().starts_with('{') {
        return Err(invalid("the secret's data is not a JSON object"));
    }
    Ok(Zeroizing::new(raw.get().as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KV: &[u8] = br#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
        "data":{"data":{"username":"app","password":"hunter2"},
        "metadata":{"created_time":"2026-01-01T00:00:00Z","custom_metadata":null,
        "deletion_time":"","destroyed":false,"version":3}},
        "wrap_info":null,"warnings":null,"auth":null}"#;

    #[test]
    fn reads_a_kv_v2_envelope() {
        let outer: SecretResponse<'_> = parse("p", KV).unwrap();
        let inner: KvV2Data<'_> = parse("p", outer.data.unwrap().get().as_bytes()).unwrap();
        assert_eq!(inner.metadata.unwrap().version, 3);
        let bytes = object_bytes("p", inner.data).unwrap();
        assert_eq!(&bytes[..], br#"{"username":"app","password":"hunter2"}"#);
        assert_eq!(bytes.len(), bytes.capacity());
    }

    #[test]
    fn parse_errors_never_quote_values() {
        let error = parse::<SecretResponse<'_>>("p", br#"{"lease_duration":"hunter2"}"#)
            .err()
            .unwrap();
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        let not_object = object_bytes(
            "p",
            Some(&RawValue::from_string("\"hunter2\"".into()).unwrap()),
        )
        .unwrap_err();
        assert!(!not_object.to_string().contains("hunter2"));
        assert!(object_bytes("p", None).is_err());
    }

    proptest! {
        /// Arbitrary bytes never panic the parser, and errors never echo input text.
        #[test]
        fn arbitrary_bodies_are_refused_cleanly(body in "\\PC{0,64}") {
            if let Err(error) = parse::<SecretResponse<'_>>("p", body.as_bytes()) {
                let shown = error.to_string();
                prop_assert!(shown.starts_with("invalid response on \"p\": "));
                prop_assert!(shown.ends_with(|c: char| c.is_ascii_digit()));
            }
        }

        /// Any object of string values survives the round trip byte for byte.
        #[test]
        fn data_objects_round_trip(map in proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,16}", 0..5)) {
            let data = serde_json::to_string(&map).unwrap();
            let body = format!(r#"{{"lease_id":"l","lease_duration":5,"renewable":true,"data":{data}}}"#);
            let response: SecretResponse<'_> = parse("p", body.as_bytes()).unwrap();
            prop_assert_eq!(response.lease_duration, 5);
            let bytes = object_bytes("p", response.data).unwrap();
            prop_assert_eq!(&bytes[..], data.as_bytes());
        }
    }
}
