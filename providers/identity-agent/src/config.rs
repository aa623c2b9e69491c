//! The agent's TOML configuration: trust domain, socket, CA state, OIDC issuer and the
//! registration entries that map attested callers to SPIFFE IDs.
//!
//! Every error names the file, the line and column, and the field at fault, taken from the
//! spans `toml` keeps for each value.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ligand_runtime::{SpiffeId, TrustDomain};
use serde::Deserialize;
use toml::Spanned;

use crate::attest::Selector;
use crate::jwt::JwtAlgorithm;

/// The default X.509-SVID lifetime.
pub const DEFAULT_X509_TTL: Duration = Duration::from_secs(3600);
/// The default JWT-SVID lifetime.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
/// The shortest SVID lifetime the agent issues.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The default interval between JWT signing-key rotations.
pub const DEFAULT_JWT_KEY_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// The default permissions of the Workload API socket and of a directory created for it.
pub const DEFAULT_SOCKET_MODE: u32 = 0o700;
/// The default address of the OIDC discovery endpoint.
pub const DEFAULT_OIDC_LISTEN: &str = "127.0.0.1:8089";

/// The whole agent configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The trust domain every issued SPIFFE ID belongs to.
    pub trust_domain: TrustDomain,
    /// Where the Workload API listens.
    pub socket: SocketConfig,
    /// Where the CA key and certificate persist; `None` for an ephemeral CA.
    pub state_dir: Option<PathBuf>,
    /// The OIDC discovery endpoint and JWT authority.
    pub oidc: OidcConfig,
    /// The registration entries.
    pub entries: Vec<RegistrationEntry>,
}

/// The Workload API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketConfig {
    /// The socket path.
    pub path: PathBuf,
    /// The permissions applied to the socket and to its directory when the agent creates it.
    pub mode: u32,
}

/// The JWT authority and its discovery endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcConfig {
    /// The loopback address serving `/.well-known/openid-configuration` and `/keys`.
    pub listen: SocketAddr,
    /// The `iss` of issued tokens; defaults to `http://<listen address>`.
    pub issuer: Option<String>,
    /// The signing algorithm of new keys.
    pub algorithm: JwtAlgorithm,
    /// How often the signing key rotates.
    pub key_rotation: Duration,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            issuer: None,
            algorithm: JwtAlgorithm::Es256,
            key_rotation: DEFAULT_JWT_KEY_ROTATION,
        }
    }
}

/// Which callers get which SPIFFE ID: every selector must match the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrationEntry {
    /// The identity issued to a matching caller.
    pub spiffe_id: SpiffeId,
    /// The selectors, all of which must match (never empty).
    pub selectors: Vec<Selector>,
    /// The X.509-SVID lifetime.
    pub x509_ttl: Duration,
    /// The JWT-SVID lifetime.
    pub jwt_ttl: Duration,
}

// === impl RegistrationEntry ===

impl RegistrationEntry {
    /// An entry for `spiffe_id` with default lifetimes.
    pub fn new(spiffe_id: SpiffeId, selectors: Vec<Selector>) -> Self {
        Self {
            spiffe_id,
            selectors,
            x509_ttl: DEFAULT_X509_TTL,
            jwt_ttl: DEFAULT_JWT_TTL,
        }
    }

    /// Sets the X.509-SVID lifetime.
    pub fn x509_ttl(mut self, ttl: Duration) -> Self {
        self.x509_ttl = ttl;
        self
    }

    /// Sets the JWT-SVID lifetime.
    pub fn jwt_ttl(mut self, ttl: Duration) -> Self {
        self.jwt_ttl = ttl;
        self
    }

    /// Whether a caller holding `selectors` matches every selector of this entry.
    pub fn matches(&self, selectors: &[Selector]) -> bool {
        !self.selectors.is_empty() && self.selectors.iter().all(|s| selectors.contains(s))
    }
}

/// Why a configuration file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The file is not valid TOML or a value is invalid; says where.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// The 1-based column.
        column: usize,
        /// The field at fault (dotted, such as `entry.spiffe_id`), or `<document>`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A registration entry given through the Rust API is unusable.
    #[error("registration entry {spiffe_id}: {message}")]
    Entry {
        /// The entry's SPIFFE ID.
        spiffe_id: String,
        /// What is wrong.
        message: String,
    },
}

// === raw document ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    trust_domain: Spanned<String>,
    socket: Option<RawSocket>,
    state_dir: Option<PathBuf>,
    oidc: Option<RawOidc>,
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSocket {
    path: PathBuf,
    mode: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    listen: Option<Spanned<String>>,
    issuer: Option<String>,
    algorithm: Option<Spanned<String>>,
    key_rotation: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    spiffe_id: Spanned<String>,
    selectors: Spanned<Vec<Spanned<String>>>,
    x509_ttl: Option<Spanned<String>>,
    jwt_ttl: Option<Spanned<String>>,
}

// === impl AgentConfig ===

impl AgentConfig {
    /// A configuration with no entries, an ephemeral CA and the socket at `socket`.
    pub fn new(trust_domain: TrustDomain, socket: impl Into<PathBuf>) -> Self {
        Self {
            trust_domain,
            socket: SocketConfig {
                path: socket.into(),
                mode: DEFAULT_SOCKET_MODE,
            },
            state_dir: None,
            oidc: OidcConfig::default(),
            entries: Vec::new(),
        }
    }

    /// Adds a registration entry.
    pub fn entry(mut self, entry: RegistrationEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Checks what [`AgentConfig::parse`] checks of each entry, for entries added through the
    /// Rust API: [`Agent::start`](crate::Agent::start) refuses a configuration that fails it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for entry in &self.entries {
            let problem = spiffe_id_problem(&self.trust_domain, &entry.spiffe_id).or_else(|| {
                entry
                    .selectors
                    .is_empty()
                    .then(|| "an entry needs at least one selector".to_owned())
            });
            if let Some(message) = problem {
                return Err(ConfigError::Entry {
                    spiffe_id: entry.spiffe_id.to_string(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// Reads and validates the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a TOML document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let at = |span: Option<Range<usize>>, field: &str, message: String| {
            let (line, column) = span.map_or((1, 1), |s| line_column(text, s.start));
            ConfigError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                field: field.to_owned(),
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let field = field_of(text, &e);
            at(e.span(), &field, e.message().to_owned())
        })?;

        let trust_domain = TrustDomain::new(raw.trust_domain.get_ref())
            .map_err(|e| at(Some(raw.trust_domain.span()), "trust_domain", e.to_string()))?;
        let socket = match raw.socket {
            Some(s) => SocketConfig {
                path: s.path,
                mode: match s.mode {
                    Some(mode) if *mode.get_ref() > 0o777 => {
                        return Err(at(
                            Some(mode.span()),
                            "socket.mode",
                            format!(
                                "{:o} is not a permission mode (0o000..=0o777)",
                                mode.get_ref()
                            ),
                        ));
                    }
                    Some(mode) => *mode.get_ref(),
                    None => DEFAULT_SOCKET_MODE,
                },
            },
            None => {
                return Err(at(None, "socket", "missing table `[socket]`".to_owned()));
            }
        };
        let mut oidc = OidcConfig::default();
        if let Some(raw) = raw.oidc {
            if let Some(listen) = raw.listen {
                oidc.listen = listen
                    .get_ref()
                    .parse()
                    .map_err(|e| at(Some(listen.span()), "oidc.listen", format!("{e}")))?;
            }
            oidc.issuer = raw.issuer;
            if let Some(alg) = raw.algorithm {
                oidc.algorithm = alg
                    .get_ref()
                    .parse()
                    .map_err(|e: String| at(Some(alg.span()), "oidc.algorithm", e))?;
            }
            if let Some(rotation) = raw.key_rotation {
                oidc.key_rotation = duration(&rotation)
                    .map_err(|e| at(Some(rotation.span()), "oidc.key_rotation", e))?;
            }
        }

        let mut entries = Vec::with_capacity(raw.entry.len());
        for entry in raw.entry {
            let spiffe_id = SpiffeId::new(entry.spiffe_id.get_ref()).map_err(|e| {
                at(
                    Some(entry.spiffe_id.span()),
                    "entry.spiffe_id",
                    e.to_string(),
                )
            })?;
            if let Some(message) = spiffe_id_problem(&trust_domain, &spiffe_id) {
                return Err(at(Some(entry.spiffe_id.span()), "entry.spiffe_id", message));
            }
            if entry.selectors.get_ref().is_empty() {
                return Err(at(
                    Some(entry.selectors.span()),
                    "entry.selectors",
                    "an entry needs at least one selector".to_owned(),
                ));
            }
            let selectors = entry
                .selectors
                .get_ref()
                .iter()
                .map(|s| {
                    s.get_ref()
                        .parse::<Selector>()
                        .map_err(|e| at(Some(s.span()), "entry.selectors", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let ttl = |value: &Option<Spanned<String>>, field: &str, default: Duration| {
                value.as_ref().map_or(Ok(default), |v| {
                    duration(v).map_err(|e| at(Some(v.span()), field, e))
                })
            };
            entries.push(RegistrationEntry {
                spiffe_id,
                selectors,
                x509_ttl: ttl(&entry.x509_ttl, "entry.x509_ttl", DEFAULT_X509_TTL)?,
                jwt_ttl: ttl(&entry.jwt_ttl, "entry.jwt_ttl", DEFAULT_JWT_TTL)?,
            });
        }
        Ok(Self {
            trust_domain,
            socket,
            state_dir: raw.state_dir,
            oidc,
            entries,
        })
    }
}

/// Why `id` cannot be issued by an agent of `trust_domain`, if it cannot.
fn spiffe_id_problem(trust_domain: &TrustDomain, id: &SpiffeId) -> Option<String> {
    if id.trust_domain() != trust_domain {
        return Some(format!("{id} is not in trust domain {trust_domain}"));
    }
    // X.509-SVID specification, section 2: the SPIFFE ID of a workload's SVID has a non-root
    // path; the bare trust domain ID names the domain itself.
    if id.path().is_empty() {
        return Some(format!(
            "{id} has no path; a workload's SPIFFE ID needs one, such as {id}/service/name"
        ));
    }
    None
}

/// A humantime duration (`"1h"`, `"90s"`) of at least [`MIN_TTL`].
fn duration(value: &Spanned<String>) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(value.get_ref()).map_err(|e| {
        format!(
            "`{}` is not a duration such as \"1h\" or \"30s\": {e}",
            value.get_ref()
        )
    })?;
    if parsed < MIN_TTL {
        return Err(format!(
            "{} is shorter than the 1s minimum",
            value.get_ref()
        ));
    }
    Ok(parsed)
}

/// The 1-based line and column of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The field a `toml` error is about: named in the message (missing or unknown field) or the
/// key on the line its span points into, qualified by the enclosing table header.
fn field_of(text: &str, error: &toml::de::Error) -> String {
    let message = error.message();
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"))
        .map(str::to_owned);
    let Some(span) = error.span() else {
        return named.unwrap_or_else(|| "<document>".to_owned());
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let table = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(['[', ']']).trim().to_owned())
        })
        .unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|l| l.lines().next())
        .unwrap_or_default();
    let key = named.or_else(|| {
        line.split_once('=')
            .map(|(k, _)| k.trim().to_owned())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
    });
    match (table.is_empty(), key) {
        (true, Some(key)) => key,
        (false, Some(key)) => format!("{table}.{key}"),
        (false, None) => table,
        (true, None) => "<document>".to_owned(),
    }
}

#[cfg(test)]
mod tests;
