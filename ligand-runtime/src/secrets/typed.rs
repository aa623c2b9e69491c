//! Typed secrets: a struct whose fields are the keys of a stored secret.

use serde::de::DeserializeOwned;

use crate::error::ProviderError;

/// Why a secret could not be delivered. Messages name the secret and the key, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secrets backend is configured.
    #[error("no secrets backend is configured")]
    NotConfigured,
    /// The backend failed and no unexpired cached value exists.
    #[error("secret {name:?} is unavailable")]
    Unavailable {
        /// The secret's path.
        name: String,
        /// The backend's error.
        #[source]
        source: ProviderError,
    },
    /// The stored secret lacks a key the struct requires.
    #[error("secret {name:?} has no key {key:?}")]
    MissingKey {
        /// The secret's path.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A key's value has the wrong type or shape (the value itself is never reported).
    #[error("secret {name:?} key {key:?} has an invalid value")]
    InvalidKey {
        /// The secret's path.
        name: String,
        /// The key.
        key: String,
    },
    /// The stored secret is not a key-value document.
    #[error("secret {name:?} is not a key-value document")]
    NotKeyValue {
        /// The secret's path.
        name: String,
    },
}

/// A struct whose fields are the keys of the secret at [`Secret::PATH`]. Implemented by
/// `#[ligand::secret(path = "...")]`; obtained only through [`Ctx::secret`](crate::Ctx::secret).
pub trait Secret: Sized + Send + 'static {
    /// The secret's full backend path, such as `secret/data/accounts/db`.
    const PATH: &'static str;

    /// Builds the struct from the stored key-value document.
    #[doc(hidden)]
    fn __from_secret(bytes: &[u8]) -> Result<Self, SecretError>;
}

/// Decodes a key-value secret (a JSON object) into `T`, reporting the offending key but never
/// a value: serde's own messages quote values, so only the error's category and path are kept.
pub fn decode_secret<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, SecretError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => Ok(value),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_syntax()
                || inner.is_eof()
                || path == "." && !inner.to_string().starts_with("missing field")
            {
                return Err(SecretError::NotKeyValue {
                    name: name.to_owned(),
                });
            }
            let message = inner.to_string();
            // "missing field `key`": the only serde message that names a key and no value.
            if let Some(key) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                let key = if path == "." {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                return Err(SecretError::MissingKey {
                    name: name.to_owned(),
                    key,
                });
            }
            Err(SecretError::InvalidKey {
                name: name.to_owned(),
                key: path,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::{ExposeSecret, SecretString};

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "fields are read through the decoder only")]
    struct Db {
        username: String,
        password: SecretString,
        port: u16,
    }

    #[test]
    fn decodes_keys_into_fields() {
        let db: Db = decode_secret(
            "db",
            br#"{"username":"app","password":"hunter2","port":5432}"#,
        )
        .unwrap();
        assert_eq!(db.password.expose_secret(), "hunter2");
        assert!(!format!("{db:?}").contains("hunter2"));
    }

    #[test]
    fn errors_name_the_key_never_the_value() {
        let missing = decode_secret::<Db>("db", br#"{"username":"app","port":1}"#).unwrap_err();
        assert!(
            matches!(&missing, SecretError::MissingKey { key, .. } if key == "password"),
            "{missing:?}"
        );
        let wrong = decode_secret::<Db>(
            "db",
            br#"{"username":"app","password":"hunter2","port":"s3cr3t-port"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&wrong, SecretError::InvalidKey { key, .. } if key == "port"),
            "{wrong:?}"
        );
        let shown = format!("{wrong} {wrong:?}");
        assert!(
            !shown.contains("s3cr3t-port") && !shown.contains("hunter2"),
            "{shown}"
        );
        let not_object = decode_secret::<Db>("db", b"hunter2").unwrap_err();
        assert!(matches!(not_object, SecretError::NotKeyValue { .. }));
    }
}
