//! [`ClientConfig`]: where Redis is and how long it may take, embedded by every Redis
//! provider's own configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one command may take, when the configuration does not say; the default of
/// [`ClientConfig`]'s `TIMEOUT_MS` parameter.
pub const DEFAULT_TIMEOUT_MS: u64 = 250;

/// How long connecting (and the first `PING`) may take, when the configuration does not say.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The connection settings every Redis provider takes.
///
/// A provider's configuration embeds it with `#[serde(flatten)]`, so its keys (`url`,
/// `ca_file`, `timeout_ms`, `connect_timeout_ms`) sit beside the provider's own. The default
/// command timeout is the type's `TIMEOUT_MS` parameter, since each provider has its own
/// (250 ms for a check on the request path, 500 ms for a background sync); the connect
/// timeout defaults to [`DEFAULT_CONNECT_TIMEOUT_MS`] everywhere.
///
/// `Debug` shows the URL with its password replaced by `***`.
///
/// ```
/// use ligand_redis_client::ClientConfig;
///
/// let config: ClientConfig = serde_json::from_str(
///     r#"{ "url": "rediss://user:hunter2@redis.internal:6380/0", "timeout_ms": 100 }"#,
/// )
/// .unwrap();
/// assert_eq!(config.connect_timeout_ms, 5_000);
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig<const TIMEOUT_MS: u64 = DEFAULT_TIMEOUT_MS> {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. The server's
    /// certificate is always verified: the redis client's `#insecure` fragment is refused
    /// ([`SettingsError::InsecureTls`]), as is any other fragment.
    pub url: String,
    /// A PEM file of CA certificates that a `rediss://` server must chain to, instead of the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one command may take, in milliseconds; a slower Redis fails the command.
    #[serde(default = "default_timeout_ms::<TIMEOUT_MS>")]
    pub timeout_ms: u64,
    /// How long connecting may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_timeout_ms<const TIMEOUT_MS: u64>() -> u64 {
    TIMEOUT_MS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

impl<const TIMEOUT_MS: u64> fmt::Debug for ClientConfig<TIMEOUT_MS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &redacted(&self.url))
            .field("ca_file", &self.ca_file)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

impl<const TIMEOUT_MS: u64> ClientConfig<TIMEOUT_MS> {
    /// The store at `url`, with the system's roots and the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            timeout_ms: TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }

    /// Trusts the CA certificates in `path` for a `rediss://` server.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets how long one command may take (whole milliseconds).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = millis(timeout);
        self
    }

    /// Sets how long connecting may take (whole milliseconds).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout_ms = millis(timeout);
        self
    }

    /// How long one command may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long connecting may take.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Checks the URL ([`check_url`]) and that neither timeout is zero, without connecting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_url(&self.url)?;
        if self.timeout_ms == 0 {
            return Err(SettingsError::ZeroTimeout("timeout_ms"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(SettingsError::ZeroTimeout("connect_timeout_ms"));
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Why a [`ClientConfig`] was refused.
///
/// Not `#[non_exhaustive]`: each Redis provider maps every variant onto its own public error
/// type, whose variants its users match on, so a new variant must break their build rather
/// than fall into a catch-all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The URL ends in `#insecure`, the redis client's marker for skipping the server
    /// certificate's verification. It is refused: trust a private CA with `ca_file` instead.
    #[error(
        "redis url {url} turns off TLS certificate verification (#insecure); \
         trust a private CA with ca_file instead"
    )]
    InsecureTls {
        /// The URL, password redacted.
        url: String,
    },
    /// The URL has a fragment (`#…`). The redis client reads fragments as connection
    /// options, and the only one it knows turns off certificate verification, so none is
    /// accepted.
    #[error("redis url {url} has a #fragment; redis urls take none")]
    UrlFragment {
        /// The URL, password redacted.
        url: String,
    },
    /// A timeout is zero; the setting is named (`timeout_ms` or `connect_timeout_ms`).
    #[error("{0} must be at least 1")]
    ZeroTimeout(&'static str),
}

/// Refuses a URL fragment, above all the redis client's `#insecure`. A `#` always starts the
/// fragment (a password holding one must encode it), and the client's URL parser drops tabs
/// and newlines anywhere, so the fragment is compared without them. Without a fragment the
/// URL is the client's to check.
pub fn check_url(url: &str) -> Result<(), SettingsError> {
    let Some((base, fragment)) = url.split_once('#') else {
        return Ok(());
    };
    let fragment: String = fragment
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let url = format!("{}#{fragment}", redacted(base));
    if fragment.trim().eq_ignore_ascii_case("insecure") {
        Err(SettingsError::InsecureTls { url })
    } else {
        Err(SettingsError::UrlFragment { url })
    }
}

/// `url` with any password (any user information, in fact) replaced by `***`, for logs,
/// errors and `Debug`.
///
/// ```
/// assert_eq!(
///     ligand_redis_client::redacted("rediss://user:hunter2@redis.internal:6380/0"),
///     "rediss://***@redis.internal:6380/0",
/// );
/// ```
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn defaults_follow_the_type_and_the_keys() {
        let config: ClientConfig = serde_json::from_str(r#"{"url":"redis://h"}"#).unwrap();
        assert_eq!(config, ClientConfig::new("redis://h"));
        assert_eq!(config.timeout(), Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(
            config.connect_timeout(),
            Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)
        );
        assert_eq!(config.ca_file, None);
        let slow: ClientConfig<500> = serde_json::from_str(r#"{"url":"redis://h"}"#).unwrap();
        assert_eq!(slow.timeout_ms, 500);
        assert_eq!(ClientConfig::<500>::new("redis://h").timeout_ms, 500);
        let set: ClientConfig = serde_json::from_str(
            r#"{"url":"rediss://h","ca_file":"/ca.pem","timeout_ms":7,"connect_timeout_ms":9}"#,
        )
        .unwrap();
        assert_eq!(
            set,
            ClientConfig::new("rediss://h")
                .with_ca_file("/ca.pem")
                .with_timeout(Duration::from_millis(7))
                .with_connect_timeout(Duration::from_millis(9))
        );
        // The round trip keeps every key, and an absent CA file stays absent.
        assert_eq!(
            serde_json::to_string(&ClientConfig::<250>::new("redis://h")).unwrap(),
            r#"{"url":"redis://h","timeout_ms":250,"connect_timeout_ms":5000}"#
        );
        let error =
            serde_json::from_str::<ClientConfig>(r#"{"url":"redis://h","timeout":5}"#).unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
    }

    #[test]
    fn zero_timeouts_are_refused_by_name() {
        let config = ClientConfig::<250>::new("redis://h");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.clone().with_timeout(Duration::ZERO).validate(),
            Err(SettingsError::ZeroTimeout("timeout_ms"))
        );
        assert_eq!(
            config
                .with_connect_timeout(Duration::from_micros(999))
                .validate()
                .unwrap_err()
                .to_string(),
            "connect_timeout_ms must be at least 1"
        );
    }

    #[test]
    fn urls_that_turn_off_certificate_verification_are_refused() {
        for url in [
            "rediss://redis.internal:6380/0#insecure",
            "rediss://redis.internal:6380#insecure",
            "valkeys://redis.internal/#insecure",
            "redis://redis.internal/#insecure",
            "rediss://redis.internal/0#INSECURE",
            "rediss://redis.internal/0#insec\ture",
            "rediss://redis.internal/0#\ninsecure",
        ] {
            let error = check_url(url).unwrap_err();
            assert!(
                matches!(error, SettingsError::InsecureTls { .. }),
                "{url:?}: {error:?}"
            );
        }
        let error = check_url("rediss://user:hunter2@redis.internal:6380/0#insecure").unwrap_err();
        assert_eq!(
            error,
            SettingsError::InsecureTls {
                url: "rediss://***@redis.internal:6380/0#insecure".into()
            }
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(matches!(
            check_url("rediss://redis.internal/0#other"),
            Err(SettingsError::UrlFragment { .. })
        ));
        check_url("rediss://user:p%23ss@redis.internal/0").unwrap();
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let config = ClientConfig::<250>::new("rediss://user:hunter2@redis.internal:6380/0");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("rediss://***@redis.internal:6380/0"),
            "{debug}"
        );
        assert_eq!(redacted("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redacted("redis://:p@ss@h:1"), "redis://***@h:1");
        assert_eq!(redacted("redis://h:1/0?user=a@b"), "redis://h:1/0?user=a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }

    proptest! {
        /// Whatever the password, redaction drops it and keeps the host.
        #[test]
        fn redaction_never_shows_the_password(
            user in "[a-z]{0,8}",
            password in "[^@/#]{1,24}",
            host in "[a-z][a-z0-9.-]{0,20}",
        ) {
            let url = format!("rediss://{user}:{password}@{host}:6380/0");
            let shown = redacted(&url);
            prop_assert_eq!(&shown, &format!("rediss://***@{host}:6380/0"));
            let shown = check_url(&format!("{url}#insecure")).unwrap_err().to_string();
            let expected = format!("rediss://***@{host}:6380/0#insecure");
            prop_assert!(shown.contains(&expected), "{}", shown);
        }

        /// Any input is redacted without a panic, and no `@`-separated user part survives in
        /// the authority.
        #[test]
        fn redaction_takes_any_input(url in "\\PC{0,64}") {
            let shown = redacted(&url);
            if let Some((_, rest)) = shown.split_once("://") {
                let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
                prop_assert!(!authority.contains('@') || authority.starts_with("***@"));
            }
        }
    }
}
