//! File digests as OPA computes them for bundle signatures.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::{MANIFEST_FILE, SIGNATURES_FILE};

/// A digest algorithm of the signature format. Weak algorithms that OPA still accepts
/// (MD5, SHA-1) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// `SHA-256`, the default.
    Sha256,
    /// `SHA-384`.
    Sha384,
    /// `SHA-512`.
    Sha512,
}

impl HashAlgorithm {
    /// The name used in the signature payload.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    /// Parses a payload's algorithm name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SHA-256" => Some(Self::Sha256),
            "SHA-384" => Some(Self::Sha384),
            "SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// Whether OPA hashes the file at `path` as structured JSON rather than as bytes.
pub fn is_structured(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    matches!(
        base,
        "data.json" | "data.yaml" | MANIFEST_FILE | SIGNATURES_FILE
    )
}

/// The hex digest of the file at `path` (relative to the bundle root) with content `bytes`.
///
/// Structured files are parsed and hashed in OPA's canonical form: `{`, each key in sorted order
/// as a JSON string, `:`, the value, `,` between entries, `}`; arrays likewise with `[` `]`;
/// primitives as Go's JSON encoder writes them without HTML escaping. YAML data files are not
/// supported (they fail to parse as JSON and the error says so).
pub fn file_digest(
    path: &str,
    bytes: &[u8],
    algorithm: HashAlgorithm,
) -> Result<String, serde_json::Error> {
    let digest = if is_structured(path) {
        let value: Value = serde_json::from_slice(bytes)?;
        let mut canonical = String::with_capacity(bytes.len());
        write_canonical(&value, &mut canonical);
        algorithm.digest(canonical.as_bytes())
    } else {
        algorithm.digest(bytes)
    };
    Ok(hex::encode(digest))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        // Numbers keep serde_json's shortest round-trip form, which is Go's for integers and
        // ordinary decimals; exponent literals (`1e3`) are the documented exception.
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// A JSON string as Go's encoder writes it with HTML escaping off: the short escapes, `\u00XX`
/// for other control characters, and U+2028/U+2029 escaped.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_digest_ignores_whitespace_and_key_order() {
        let a = file_digest(
            "x/data.json",
            br#"{"b": [1, "two"], "a": {"d": null, "c": true}}"#,
            HashAlgorithm::Sha256,
        );
        let b = file_digest(
            "x/data.json",
            b"{\"a\":{\"c\":true,\"d\":null},\n \"b\":[1,\"two\"]}",
            HashAlgorithm::Sha256,
        );
        assert_eq!(a.unwrap(), b.unwrap());
    }

    #[test]
    fn canonical_form_matches_opa() {
        let mut out = String::new();
        let value: Value =
            serde_json::from_str(r#"{"z":"<&>","a":[1,2.5,"\u2028\u0001"],"m":{}}"#).unwrap();
        write_canonical(&value, &mut out);
        assert_eq!(out, r#"{"a":[1,2.5,"\u2028\u0001"],"m":{},"z":"<&>"}"#);
    }

    #[test]
    fn unstructured_files_hash_their_bytes() {
        let policy = b"package x\n";
        assert_eq!(
            file_digest("x/policy.rego", policy, HashAlgorithm::Sha256).unwrap(),
            hex::encode(Sha256::digest(policy))
        );
        // A JSON file not named data.json is not data for OPA: bytes too.
        assert_eq!(
            file_digest("x/other.json", b"{ }", HashAlgorithm::Sha256).unwrap(),
            hex::encode(Sha256::digest(b"{ }"))
        );
        assert!(file_digest("data.json", b"{", HashAlgorithm::Sha256).is_err());
    }
}
