//! Declarative configuration: `ligand.toml`, overridable by environment variables, with
//! embedded defaults so that a service runs with nothing installed.
//!
//! | setting | file | environment | default |
//! |---|---|---|---|
//! | config file | | `LIGAND_CONFIG` | `./ligand.toml` (absent: all defaults) |
//! | listen address | `listen` | `LIGAND_LISTEN` | `127.0.0.1:8443` |
//! | Workload API socket | `[identity] socket` | `SPIFFE_ENDPOINT_SOCKET` | none: embedded development identity |
//! | SPIFFE ID | `[identity] spiffe_id` | `LIGAND_SPIFFE_ID` | `spiffe://ligand.local/service/<executable name>` |
//! | development folder (no socket: the shared development CA, caller credentials) | `[identity] dev_dir` | `LIGAND_DEV_DIR` | `$XDG_STATE_HOME/ligand/dev`, else `~/.local/state/ligand/dev` |
//! | development caller (no socket: client credentials written at start) | `[identity] dev_caller` | `LIGAND_DEV_CALLER` | `dev`: `spiffe://<trust domain>/user/dev` |
//! | policy | `[policy]` (regorus: `folder`, `bundle`, `signing`, …) | | the `policy/` folder |
//! | rate limit | `[rate_limit]` (governor: `rate`, `burst`, `overrides`) | | 100 rps, burst 200, per caller |
//! | secrets | `[secrets] dir` | | the `secrets/` folder when it exists |
//! | decision cache | `[policy] cache`, `cache_capacity` | | on when sound for the policy, 10000 decisions |
//! | policy hot reload (a changed file in the policy folder reloads it; a bad change keeps the last good policy, Policy health Degraded) | `[policy] watch` | | on with a folder |
//! | shadow policy (evaluated on live traffic, never enforced; disagreements logged and counted) | `[policy] shadow` (a folder) | | none |
//! | connections | `[connections]` `max`, `max_handshakes`, `handshake_timeout`, `header_read_timeout`, `max_age` | | 10000, 256, `"10s"`, `"30s"`, none |
//! | outbound endpoints | `[services."spiffe://…"] endpoints` | | none: calls fail with "no endpoints" |
//! | registry | `[registry] kind` (`static` or `etcd`; etcd: `endpoints`, `prefix`, `lease_ttl`, `grace_period`, `dial_timeout`, `ca`, `cert`, `key`, `username`, `password`, `advertise`, `metadata`) | | `static`: the `[services]` table |
//! | outbound calls | `[outbound] timeout`, `max_connection_age` | | `"10s"`, `"5m"` |
//! | outbound resilience | `[outbound.balancer] strategy` (`p2c_ewma`, `least_request`, `round_robin`, `random`, `ring_hash`), `[outbound.outlier]`, `[outbound.breaker]`, `[outbound.bulkhead]`, `[outbound.retry]`; per target service `[outbound.targets."<SPIFFE ID>".<section>]` | | see `ResilienceConfig` |
//! | admin listener (`/livez`, `/readyz`, `/metrics`, plain HTTP) | `[admin] listen`, `enabled` | `LIGAND_ADMIN_LISTEN` | `127.0.0.1:9464`, on |
//! | Transaction Tokens | `[txn_token] jwks`, `issuers`, `audience`, `require`, `leeway`, `algorithms` | | none: a `Txn-Token` header is forwarded, not verified; with `jwks`: any issuer, `aud` = the trust domain, not required, `"30s"`, every asymmetric algorithm |
//! | WIMSE WIT/WPT verification | `[wimse] jwks`, `issuers`, `require`, `leeway`, `max_wpt_lifetime`, `replay_cache_capacity` | | none: WIT/WPT headers are ignored inbound (outbound they are sent whenever the identity source issues WITs); with `jwks`: any issuer, not required, `"30s"`, `"2m"`, 100000 |
//! | gateway (external callers by access token, for `#[ligand::service(gateway)]`) | `[gateway] listen`, `jwks`, `issuers`, `audience`, `signing_key`, `signing_algorithm`, `signing_kid`, `issuer`, `lifetime`, `leeway`, `cert`, `key` | | none: a gateway service is refused; with the section: `listen`, `jwks`, `issuers`, `audience` and `signing_key` required, `"ES256"`, `"ligand-txn"`, no `iss`, `"5m"`, `"30s"`, the SVID as the server certificate |
//! | audit log | `[audit] format` (`log`, `json` or `tracing`), `path`, `queue`, `overflow` (`drop` or `block`) | | `log`, stdout, 16384, `drop` |
//!
//! Paths in the file are relative to the file's folder. Without a Workload API socket the
//! service gets an in-process development identity, and says so loudly. Its CA is the
//! development CA of the trust domain kept in the user's development folder (created 0700 on
//! first use, key 0600, refused when others can read the key or it is not the user's): every
//! development service of the user on the machine shares it, so they call each other with no
//! configuration, while nothing outside the machine trusts it. Once listening, such a service
//! writes client credentials for the development caller into
//! `<dev dir>/<trust domain>/callers/<name>/` (`bundle.pem`, `client.pem`, `client.key`; a
//! day's lifetime, renewed past half of it) and logs a `curl` line that uses them. With the
//! socket (SPIRE, or `ligand-agent`), the same binary runs in production. Policy has no default that allows
//! anything: without a policy folder or bundle, startup fails and says what to create.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//!
//! [identity]
//! socket = "unix:///run/spire/agent.sock"
//!
//! [policy]
//! bundle = "policy/accounts.tar.gz"
//!
//! [rate_limit]
//! rate = 50
//! burst = 100
//!
//! [admin]
//! listen = "0.0.0.0:9464"   # the kubelet probes the pod's IP, not its loopback
//! ```
//!
//! With `[txn_token]`, a `Txn-Token` header is verified before rate limiting and policy, and
//! its claims are the policy's `input.txn`; `jwks` is a JSON Web Key Set file of the
//! Transaction Token Service's public keys:
//!
//! ```toml
//! [txn_token]
//! jwks = "txn-jwks.json"
//! issuers = ["https://txn.bank.example"]
//! require = false
//! leeway = "30s"
//! ```
//!
//! With `[wimse]`, the `Workload-Identity-Token` and `Workload-Proof-Token` of each request
//! are verified after the chain and before the Transaction Token; `jwks` is a JSON Web Key Set
//! file of the trusted WIT issuers' public keys (such as the identity agent's `/keys`
//! document):
//!
//! ```toml
//! [wimse]
//! jwks = "wit-jwks.json"
//! require = true
//! max_wpt_lifetime = "2m"
//! replay_cache_capacity = 100000
//! ```
//!
//! With the `etcd` feature, instances find each other through etcd instead of `[services]`;
//! `advertise` makes this instance register itself (omit it for a service that only calls
//! out):
//!
//! ```toml
//! [registry]
//! kind = "etcd"
//! endpoints = ["https://etcd.internal:2379"]
//! ca = "etcd-ca.pem"
//! advertise = "accounts-1.bank.internal:8443"
//! lease_ttl = "10s"
//! ```

use std::path::{Path, PathBuf};

use ligand_identity_agent::{
    AgentError, DEFAULT_CALLER, DEFAULT_CALLER_TTL, DevDir, EmbeddedIdentity,
};
use ligand_identity_spiffe::SpiffeIdentity;
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};
use ligand_registry_static::{StaticRegistry, StaticRegistryConfig};
use ligand_runtime::{
    AdminConfig, AuditOverflow, BoxError, Config, GatewayConfig, HttpBinding, JsonLinesTelemetry,
    LogLinesTelemetry, SpiffeId, SubjectTokenConfig, TracingTelemetry, TxnConfigError, TxnMinter,
    TxnTokenConfig, WimseConfig,
};
use ligand_secrets_file::FileSecrets;
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// `ligand.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    #[serde(default)]
    identity: Identity,
    policy: Option<RegorusConfig>,
    rate_limit: Option<GovernorConfig>,
    secrets: Option<SecretsSection>,
    audit: Option<AuditSection>,
    connections: Option<ConnectionsSection>,
    services: Option<StaticRegistryConfig>,
    registry: Option<RegistrySection>,
    outbound: Option<OutboundSection>,
    admin: Option<AdminSection>,
    txn_token: Option<TxnTokenSection>,
    wimse: Option<WimseSection>,
    gateway: Option<GatewaySection>,
}

/// `[gateway]`: the listener for external callers and the inline Context Service behind it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    /// `host:port` of the TLS listener without client certificates.
    listen: String,
    /// The identity provider's JWKS file.
    jwks: PathBuf,
    /// The identity providers accepted (`iss`); at least one.
    issuers: Vec<String>,
    /// The `aud` access tokens must name: this API.
    audience: String,
    /// The Transaction Token signing key (PKCS#8 PEM), never the SVID key.
    signing_key: PathBuf,
    signing_algorithm: Option<String>,
    signing_kid: Option<String>,
    /// The `iss` of minted tokens (verifiers with an issuer allow-list need one).
    issuer: Option<String>,
    lifetime: Option<String>,
    leeway: Option<String>,
    /// The server certificate chain (PEM) external callers trust; with `key`.
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl GatewaySection {
    /// `workload`: this service's SPIFFE ID, the `req_wl` of minted tokens.
    fn config(self, base: &Path, workload: &SpiffeId) -> Result<GatewayConfig, ConfigError> {
        if self.issuers.is_empty() {
            return Err(invalid(
                "gateway.issuers",
                "list at least one identity provider (the `iss` of accepted access tokens)",
            ));
        }
        if self.audience.is_empty() {
            return Err(invalid("gateway.audience", "must not be empty"));
        }
        let read = |setting: &'static str, path: &Path| {
            let path = base.join(path);
            std::fs::read(&path).map_err(|e| invalid(setting, format!("{}: {e}", path.display())))
        };
        let jwks = read("gateway.jwks", &self.jwks)?;
        let mut subject = SubjectTokenConfig::from_jwks_json(&jwks, self.issuers, self.audience)
            .map_err(|e| invalid("gateway.jwks", chain(&e)))?;
        let duration = |setting: &'static str, value: &str| {
            humantime::parse_duration(value).map_err(|e| {
                invalid(
                    setting,
                    format!("{value:?} is not a duration such as \"30s\" ({e})"),
                )
            })
        };
        if let Some(leeway) = &self.leeway {
            subject = subject.leeway(duration("gateway.leeway", leeway)?);
        }
        let key = read("gateway.signing_key", &self.signing_key)?;
        let kid = self.signing_kid.as_deref().unwrap_or("ligand-txn");
        let mut minter = TxnMinter::new(
            subject,
            &key,
            self.signing_algorithm.as_deref().unwrap_or("ES256"),
            kid,
            workload.trust_domain_name(),
            workload.to_string(),
        )
        .map_err(|e| {
            // Name the setting at fault: the signing key and its algorithm, or the JWKS.
            let setting = match &e {
                TxnConfigError::Algorithm(_) => "gateway.signing_algorithm",
                TxnConfigError::Key { kid: bad, .. } if bad == kid => "gateway.signing_key",
                TxnConfigError::NoAudience => "gateway.audience",
                _ => "gateway.jwks",
            };
            invalid(setting, chain(&e))
        })?;
        if let Some(issuer) = self.issuer {
            minter = minter.issuer(issuer);
        }
        if let Some(lifetime) = &self.lifetime {
            let lifetime = duration("gateway.lifetime", lifetime)?;
            if lifetime.is_zero() {
                return Err(invalid("gateway.lifetime", "must be at least \"1s\""));
            }
            minter = minter.lifetime(lifetime);
        }
        let config = GatewayConfig::new(self.listen, minter);
        match (self.cert, self.key) {
            (None, None) => Ok(config),
            (Some(cert), Some(key)) => {
                let (cert, key) = (read("gateway.cert", &cert)?, read("gateway.key", &key)?);
                config
                    .certificate_pem(&cert, &key)
                    .map_err(|e| invalid("gateway.cert", e))
            }
            (Some(_), None) => Err(invalid("gateway.key", "gateway.cert needs its key")),
            (None, Some(_)) => Err(invalid("gateway.cert", "gateway.key needs its certificate")),
        }
    }
}

/// `[admin]`: the plain-HTTP listener of health probes and Prometheus metrics.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    /// Off with `false`; on by default.
    enabled: Option<bool>,
    /// An IP address and port, such as `"127.0.0.1:9464"` (port 0: any free port).
    listen: Option<String>,
}

impl AdminSection {
    /// `LIGAND_ADMIN_LISTEN` replaces the file's address; `enabled = false` still wins.
    fn config(self, env: &Environment) -> Result<AdminConfig, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(AdminConfig::disabled());
        }
        let (setting, listen) = match (&env.admin_listen, self.listen) {
            (Some(listen), _) => ("LIGAND_ADMIN_LISTEN", listen.clone()),
            (None, Some(listen)) => ("admin.listen", listen),
            (None, None) => return Ok(AdminConfig::default()),
        };
        let address = listen.trim().parse().map_err(|e| {
            invalid(
                setting,
                format!(
                    "{listen:?} is not an IP address and port such as \"127.0.0.1:9464\" ({e})"
                ),
            )
        })?;
        Ok(AdminConfig::listen(address))
    }
}

/// `[txn_token]`: verification of inbound Transaction Tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnTokenSection {
    /// The JWKS file of the Transaction Token Service's public keys.
    jwks: PathBuf,
    issuers: Option<Vec<String>>,
    /// The `aud` tokens carry, when not this service's trust domain name.
    audience: Option<String>,
    #[serde(default)]
    require: bool,
    /// Clock leeway; `"0s"` allowed.
    leeway: Option<String>,
    algorithms: Option<Vec<String>>,
}

impl TxnTokenSection {
    fn config(self, base: &Path) -> Result<TxnTokenConfig, ConfigError> {
        let mut config = TxnTokenConfig::from_jwks_file(base.join(&self.jwks))
            .map_err(|e| invalid("txn_token.jwks", chain(&e)))?;
        if let Some(issuers) = self.issuers {
            config = config.issuers(issuers);
        }
        if let Some(audience) = self.audience {
            config = config.audience(audience);
        }
        if let Some(leeway) = self.leeway {
            let leeway = humantime::parse_duration(&leeway).map_err(|e| {
                invalid(
                    "txn_token.leeway",
                    format!("{leeway:?} is not a duration such as \"30s\" ({e})"),
                )
            })?;
            config = config.leeway(leeway);
        }
        if let Some(algorithms) = self.algorithms {
            config = config
                .algorithms(algorithms)
                .map_err(|e| invalid("txn_token.algorithms", e))?;
        }
        Ok(config.require(self.require))
    }
}

/// `[wimse]`: verification of inbound WIT/WPT pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WimseSection {
    /// The JWKS file of the trusted WIT issuers' public keys.
    jwks: PathBuf,
    issuers: Option<Vec<String>>,
    #[serde(default)]
    require: bool,
    /// Clock leeway; `"0s"` allowed.
    leeway: Option<String>,
    /// The longest WPT lifetime accepted, at most `"5m"`.
    max_wpt_lifetime: Option<String>,
    /// The bound of the in-memory replay cache.
    replay_cache_capacity: Option<usize>,
}

impl WimseSection {
    fn config(self, base: &Path) -> Result<WimseConfig, ConfigError> {
        let mut config = WimseConfig::from_jwks_file(base.join(&self.jwks))
            .map_err(|e| invalid("wimse.jwks", chain(&e)))?;
        if let Some(issuers) = self.issuers {
            config = config.issuers(issuers);
        }
        let duration = |setting: &'static str, value: &str| {
            humantime::parse_duration(value).map_err(|e| {
                invalid(
                    setting,
                    format!("{value:?} is not a duration such as \"30s\" ({e})"),
                )
            })
        };
        if let Some(leeway) = self.leeway {
            config = config.leeway(duration("wimse.leeway", &leeway)?);
        }
        if let Some(lifetime) = self.max_wpt_lifetime {
            let lifetime = duration("wimse.max_wpt_lifetime", &lifetime)?;
            if lifetime.is_zero() || lifetime > ligand_runtime::MAX_WPT_LIFETIME {
                return Err(invalid(
                    "wimse.max_wpt_lifetime",
                    "must be between \"1s\" and \"5m\"",
                ));
            }
            config = config.max_wpt_lifetime(lifetime);
        }
        if let Some(capacity) = self.replay_cache_capacity {
            if capacity == 0 {
                return Err(invalid("wimse.replay_cache_capacity", "must be at least 1"));
            }
            config = config.replay_cache(std::sync::Arc::new(
                ligand_runtime::InMemoryReplayCache::new(capacity),
            ));
        }
        Ok(config.require(self.require))
    }
}

/// `error` and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    message
}

/// `[registry]`: where outbound calls find their peers, and whether this instance registers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrySection {
    #[serde(default)]
    kind: RegistryKind,
    endpoints: Option<Vec<String>>,
    prefix: Option<String>,
    lease_ttl: Option<String>,
    grace_period: Option<String>,
    dial_timeout: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    /// The `host:port` this instance registers under; absent: it does not register.
    advertise: Option<String>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RegistryKind {
    /// `[services]`.
    #[default]
    Static,
    /// etcd, with the `etcd` feature.
    Etcd,
}

/// `[outbound]`: limits of calls made through `#[ligand::client]` clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundSection {
    timeout: Option<String>,
    max_connection_age: Option<String>,
    /// `[outbound.balancer]`, `[outbound.outlier]`, `[outbound.breaker]`,
    /// `[outbound.bulkhead]`, `[outbound.retry]`: each field as in `ResilienceConfig`.
    balancer: Option<ligand_runtime::BalancerConfig>,
    outlier: Option<ligand_runtime::OutlierConfig>,
    breaker: Option<ligand_runtime::BreakerConfig>,
    bulkhead: Option<ligand_runtime::BulkheadConfig>,
    retry: Option<ligand_runtime::RetryConfig>,
    /// `[outbound.targets."<SPIFFE ID>".<section>]`: sections for calls to one service.
    targets: Option<std::collections::BTreeMap<String, ligand_runtime::TargetResilience>>,
}

/// `[connections]`: the HTTP binding's limits (see `HttpBinding`). Durations are written
/// as `"30s"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsSection {
    /// Established connections at once.
    max: Option<usize>,
    /// TLS handshakes in progress at once.
    max_handshakes: Option<usize>,
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    max_age: Option<String>,
}

/// `[audit]`: where decision records go and what happens when the sink falls behind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    /// `log` (readable `key=value` lines), `json` (JSON lines) or `tracing` (structured
    /// events under `ligand::audit`, to whatever log subscriber is installed).
    #[serde(default)]
    format: AuditFormat,
    /// For `log` and `json`: the file to append to (default stdout).
    path: Option<PathBuf>,
    /// How many records may wait for the sink.
    queue: Option<usize>,
    /// `drop` (count and degrade) or `block` (requests wait; nothing is lost).
    #[serde(default)]
    overflow: AuditOverflow,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AuditFormat {
    /// The audit trail on its own, not subject to `RUST_LOG`.
    #[default]
    Log,
    Json,
    Tracing,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    socket: Option<String>,
    spiffe_id: Option<String>,
    /// The development folder (embedded identity only).
    dev_dir: Option<PathBuf>,
    /// The development caller's name (embedded identity only).
    dev_caller: Option<String>,
}

impl ConnectionsSection {
    fn apply(self, mut binding: HttpBinding) -> Result<HttpBinding, ConfigError> {
        if let Some(max) = self.max {
            binding = binding.max_connections(positive("connections.max", max)?);
        }
        if let Some(max) = self.max_handshakes {
            binding = binding.max_handshakes(positive("connections.max_handshakes", max)?);
        }
        if let Some(timeout) = self.handshake_timeout {
            binding =
                binding.handshake_timeout(duration("connections.handshake_timeout", &timeout)?);
        }
        if let Some(timeout) = self.header_read_timeout {
            binding =
                binding.header_read_timeout(duration("connections.header_read_timeout", &timeout)?);
        }
        if let Some(age) = self.max_age {
            binding = binding.max_connection_age(duration("connections.max_age", &age)?);
        }
        Ok(binding)
    }
}

fn positive(setting: &'static str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(value)
}

/// A non-zero duration such as `"30s"`.
fn duration(setting: &'static str, value: &str) -> Result<std::time::Duration, ConfigError> {
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(invalid(setting, "must be longer than zero")),
        Err(e) => Err(invalid(
            setting,
            format!("{value:?} is not a duration such as \"30s\" ({e})"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSection {
    dir: PathBuf,
}

/// Why the configuration could not be loaded. Every message names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid (the message names the line, column and field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with the position and the offending key.
        message: String,
    },
    /// A setting has an unusable value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting, such as `identity.spiffe_id` or `policy`.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.to_string(),
    }
}

/// Loads the configuration from `LIGAND_CONFIG` or `./ligand.toml`, applying the environment
/// overrides and the embedded defaults. This is what `#[ligand::main]` uses when it is given
/// no `config = ...`.
pub async fn load() -> Result<Config, BoxError> {
    let path = std::env::var_os("LIGAND_CONFIG")
        .map_or_else(|| PathBuf::from("ligand.toml"), PathBuf::from);
    let explicit = std::env::var_os("LIGAND_CONFIG").is_some();
    let env = Environment {
        listen: std::env::var("LIGAND_LISTEN").ok(),
        socket: std::env::var("SPIFFE_ENDPOINT_SOCKET").ok(),
        spiffe_id: std::env::var("LIGAND_SPIFFE_ID").ok(),
        admin_listen: std::env::var("LIGAND_ADMIN_LISTEN").ok(),
        dev_dir: std::env::var_os("LIGAND_DEV_DIR").map(PathBuf::from),
        dev_caller: std::env::var("LIGAND_DEV_CALLER").ok(),
    };
    Ok(load_from(&path, explicit, &env)?)
}

/// Environment overrides, read once by [`load`].
#[derive(Debug, Default, Clone)]
pub struct Environment {
    /// `LIGAND_LISTEN`.
    pub listen: Option<String>,
    /// `SPIFFE_ENDPOINT_SOCKET`.
    pub socket: Option<String>,
    /// `LIGAND_SPIFFE_ID`.
    pub spiffe_id: Option<String>,
    /// `LIGAND_ADMIN_LISTEN`: the admin listener's address.
    pub admin_listen: Option<String>,
    /// `LIGAND_DEV_DIR`: the development folder of the embedded identity.
    pub dev_dir: Option<PathBuf>,
    /// `LIGAND_DEV_CALLER`: the development caller's name.
    pub dev_caller: Option<String>,
}

/// Loads the configuration from the file at `path` (which must exist when `required`; an
/// absent optional file means all defaults). Relative paths, the default `policy/` and
/// `secrets/` folders included, are relative to the file's folder.
pub fn load_from(path: &Path, required: bool, env: &Environment) -> Result<Config, ConfigError> {
    let file = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => File::default(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    // Relative paths are relative to the file's folder, whether or not the file exists.
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    build(file, &base, env)
}

fn build(file: File, base: &Path, env: &Environment) -> Result<Config, ConfigError> {
    let mut builder = Config::builder();

    let listen = env
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let mut binding = HttpBinding::new(listen);
    if let Some(connections) = file.connections {
        binding = connections.apply(binding)?;
    }
    builder = builder.binding(binding);
    builder = builder.admin(file.admin.unwrap_or_default().config(env)?);

    let spiffe_id = env.spiffe_id.clone().or(file.identity.spiffe_id.clone());
    // This workload's SPIFFE ID when known before the identity starts (configured, or the
    // development default): the gateway names it in the tokens it mints.
    let workload: Option<SpiffeId>;
    match env.socket.clone().or(file.identity.socket.clone()) {
        Some(socket) => {
            for (setting, set) in [
                ("identity.dev_dir", file.identity.dev_dir.is_some()),
                ("identity.dev_caller", file.identity.dev_caller.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        setting,
                        "only used by the embedded development identity, and identity.socket is set",
                    ));
                }
            }
            let identity =
                SpiffeIdentity::new(socket).map_err(|e| invalid("identity.socket", e))?;
            builder = builder.identity(identity);
            workload = spiffe_id
                .as_deref()
                .map(SpiffeId::new)
                .transpose()
                .map_err(|e| invalid("identity.spiffe_id", format!("{spiffe_id:?}: {e}")))?;
            if let Some(id) = spiffe_id {
                builder = builder.spiffe_id(id);
            }
        }
        None => {
            let id = spiffe_id.unwrap_or_else(default_spiffe_id);
            let id = SpiffeId::new(&id)
                .map_err(|e| invalid("identity.spiffe_id", format!("{id}: {e}")))?;
            workload = Some(id.clone());
            builder = development_identity(builder, id, &file.identity, base, env)?;
        }
    }

    let mut policy = file
        .policy
        .unwrap_or_else(|| RegorusConfig::folder("policy"));
    policy.folder = policy.folder.map(|p| base.join(p));
    policy.bundle = policy.bundle.map(|p| base.join(p));
    if policy.folder.as_deref().is_some_and(|f| !f.is_dir()) {
        return Err(invalid(
            "policy",
            format!(
                "no policy folder at {}: create it with Rego defining data.ligand.authz.allow, or set [policy] in ligand.toml",
                policy
                    .folder
                    .as_deref()
                    .unwrap_or(Path::new("policy"))
                    .display()
            ),
        ));
    }
    policy.shadow = policy.shadow.map(|p| base.join(p));
    if let Some(shadow) = policy.shadow_config() {
        if shadow.folder.as_deref().is_some_and(|f| !f.is_dir()) {
            return Err(invalid(
                "policy.shadow",
                format!(
                    "no shadow policy folder at {}",
                    policy.shadow.as_deref().unwrap_or(Path::new("")).display()
                ),
            ));
        }
        builder = builder
            .shadow_policy(RegorusPolicy::new(&shadow).map_err(|e| invalid("policy.shadow", e))?);
    }
    builder = builder.policy(RegorusPolicy::new(&policy).map_err(|e| invalid("policy", e))?);

    let limits = file
        .rate_limit
        .unwrap_or_else(|| GovernorConfig::new(100.0, 200));
    builder =
        builder.rate_limiter(GovernorLimiter::new(limits).map_err(|e| invalid("rate_limit", e))?);

    let secrets_dir = match file.secrets {
        Some(section) => Some(base.join(section.dir)),
        None => Some(base.join("secrets")).filter(|d| d.is_dir()),
    };
    if let Some(dir) = secrets_dir {
        builder = builder.secrets(FileSecrets::new(&dir).map_err(|e| invalid("secrets.dir", e))?);
    }

    let registry = file.registry.unwrap_or_default();
    match registry.kind {
        RegistryKind::Static => {
            registry.refuse_etcd_settings()?;
            let services = file.services.unwrap_or_default();
            builder = builder.registry(
                StaticRegistry::from_config(&services).map_err(|e| invalid("services", e))?,
            );
        }
        RegistryKind::Etcd => {
            if file.services.is_some() {
                return Err(invalid(
                    "services",
                    "[services] lists endpoints for the static registry, but registry.kind is \"etcd\"",
                ));
            }
            builder = etcd(builder, registry, base)?;
        }
    }
    let outbound = file.outbound.unwrap_or_default();
    if let Some(timeout) = outbound.timeout {
        builder = builder.call_timeout(duration("outbound.timeout", &timeout)?);
    }
    if let Some(age) = outbound.max_connection_age {
        builder =
            builder.outbound_max_connection_age(duration("outbound.max_connection_age", &age)?);
    }
    let mut resilience = ligand_runtime::ResilienceConfig::default();
    if let Some(balancer) = outbound.balancer {
        resilience.balancer = balancer;
    }
    if let Some(outlier) = outbound.outlier {
        resilience.outlier = outlier;
    }
    if let Some(breaker) = outbound.breaker {
        resilience.breaker = breaker;
    }
    if let Some(bulkhead) = outbound.bulkhead {
        resilience.bulkhead = bulkhead;
    }
    if let Some(retry) = outbound.retry {
        resilience.retry = retry;
    }
    if let Some(targets) = outbound.targets {
        resilience.targets = targets;
    }
    resilience.validate().map_err(|e| invalid("outbound", e))?;
    builder = builder.outbound_resilience(resilience);

    if let Some(txn) = file.txn_token {
        builder = builder.txn_token(txn.config(base)?);
    }
    if let Some(wimse) = file.wimse {
        builder = builder.wimse(wimse.config(base)?);
    }
    if let Some(gateway) = file.gateway {
        let Some(workload) = &workload else {
            return Err(invalid(
                "identity.spiffe_id",
                "[gateway] names this workload in the tokens it mints (req_wl): set identity.spiffe_id",
            ));
        };
        builder = builder.gateway(gateway.config(base, workload)?);
    }

    let audit = file.audit.unwrap_or_default();
    builder = builder.audit_overflow(audit.overflow);
    if let Some(queue) = audit.queue {
        builder = builder.audit_queue_capacity(queue);
    }
    let path = audit.path.map(|path| base.join(path));
    let opened =
        |e: std::io::Error, path: &Path| invalid("audit.path", format!("{}: {e}", path.display()));
    match (audit.format, path) {
        (AuditFormat::Tracing, Some(_)) => {
            return Err(invalid(
                "audit.path",
                "format = \"tracing\" writes to the log subscriber; a path needs \"log\" or \"json\"",
            ));
        }
        (AuditFormat::Tracing, None) => builder = builder.telemetry(TracingTelemetry),
        (AuditFormat::Log, None) => builder = builder.telemetry(LogLinesTelemetry::stdout()),
        (AuditFormat::Log, Some(path)) => {
            let sink = LogLinesTelemetry::file(&path).map_err(|e| opened(e, &path))?;
            builder = builder.telemetry(sink);
        }
        (AuditFormat::Json, None) => builder = builder.telemetry(JsonLinesTelemetry::stdout()),
        (AuditFormat::Json, Some(path)) => {
            let sink = JsonLinesTelemetry::file(&path).map_err(|e| opened(e, &path))?;
            builder = builder.telemetry(sink);
        }
    }
    Ok(builder.build())
}

/// The embedded development identity from the user's development folder, and the hook that
/// writes the development caller's credentials once the service listens.
fn development_identity(
    builder: ligand_runtime::ConfigBuilder,
    id: SpiffeId,
    section: &Identity,
    base: &Path,
    env: &Environment,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    let (dir_setting, dir) = match (&env.dev_dir, &section.dev_dir) {
        (Some(dir), _) => ("LIGAND_DEV_DIR", dir.clone()),
        (None, Some(dir)) => ("identity.dev_dir", base.join(dir)),
        (None, None) => (
            "identity.dev_dir",
            DevDir::default_path().ok_or_else(|| {
                invalid(
                    "identity.dev_dir",
                    "neither XDG_STATE_HOME nor HOME is set to keep the development CA in: set LIGAND_DEV_DIR",
                )
            })?,
        ),
    };
    let (caller_setting, caller) = match (&env.dev_caller, &section.dev_caller) {
        (Some(name), _) => ("LIGAND_DEV_CALLER", name.clone()),
        (None, Some(name)) => ("identity.dev_caller", name.clone()),
        (None, None) => ("identity.dev_caller", DEFAULT_CALLER.to_owned()),
    };
    let valid_caller = !caller.is_empty()
        && caller != "."
        && caller != ".."
        && caller
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid_caller {
        return Err(invalid(
            caller_setting,
            format!("{caller:?} is not a name of letters, digits, '.', '-' and '_'"),
        ));
    }
    let dev = DevDir::new(dir);
    let identity = EmbeddedIdentity::development(id, &dev).map_err(|e| match e {
        AgentError::Ca(e) => invalid(dir_setting, e),
        e => invalid("identity", e),
    })?;
    let ca = identity.ca().clone();
    Ok(builder.identity(identity).on_listening(move |addr| {
        match dev.write_caller(&ca, &caller, DEFAULT_CALLER_TTL) {
            Ok(credentials) => tracing::info!(
                "call this development service from outside as {}:\n    {}",
                credentials.spiffe_id,
                credentials.curl_command(addr, "/"),
            ),
            Err(error) => tracing::warn!(
                dir = %dev.path().display(),
                "could not write the development caller's credentials: {error}"
            ),
        }
    }))
}

impl RegistrySection {
    /// The static registry takes its endpoints from `[services]`; etcd settings beside it are
    /// a mistake worth reporting, not ignoring.
    fn refuse_etcd_settings(&self) -> Result<(), ConfigError> {
        let set = [
            ("registry.endpoints", self.endpoints.is_some()),
            ("registry.prefix", self.prefix.is_some()),
            ("registry.lease_ttl", self.lease_ttl.is_some()),
            ("registry.grace_period", self.grace_period.is_some()),
            ("registry.dial_timeout", self.dial_timeout.is_some()),
            ("registry.ca", self.ca.is_some()),
            ("registry.cert", self.cert.is_some()),
            ("registry.key", self.key.is_some()),
            ("registry.username", self.username.is_some()),
            ("registry.password", self.password.is_some()),
            ("registry.advertise", self.advertise.is_some()),
            ("registry.metadata", self.metadata.is_some()),
        ];
        match set.iter().find(|(_, set)| *set) {
            Some((setting, _)) => Err(invalid(
                setting,
                "only used with registry.kind = \"etcd\" (the static registry reads [services])",
            )),
            None => Ok(()),
        }
    }
}

/// `[registry] kind = "etcd"`: the etcd registry, and the registrar when `advertise` is set.
#[cfg(feature = "etcd")]
fn etcd(
    mut builder: ligand_runtime::ConfigBuilder,
    section: RegistrySection,
    base: &Path,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    use ligand_registry_etcd::{EtcdConfig, EtcdConfigError, EtcdRegistrar, EtcdRegistry};

    let endpoints = section.endpoints.filter(|e| !e.is_empty()).ok_or_else(|| {
        invalid(
            "registry.endpoints",
            "at least one etcd URL is required, such as [\"http://127.0.0.1:2379\"]",
        )
    })?;
    let mut config = EtcdConfig::new(endpoints);
    if let Some(prefix) = section.prefix {
        config = config.prefix(prefix);
    }
    if let Some(ttl) = section.lease_ttl {
        config = config.lease_ttl(duration("registry.lease_ttl", &ttl)?);
    }
    if let Some(grace) = section.grace_period {
        config = config.grace_period(duration("registry.grace_period", &grace)?);
    }
    if let Some(timeout) = section.dial_timeout {
        config = config.dial_timeout(duration("registry.dial_timeout", &timeout)?);
    }
    config.ca = section.ca.map(|p| base.join(p));
    config.cert = section.cert.map(|p| base.join(p));
    config.key = section.key.map(|p| base.join(p));
    config.username = section.username;
    config.password = section.password;
    let refused = |e: EtcdConfigError| {
        let setting = match &e {
            EtcdConfigError::NoEndpoints
            | EtcdConfigError::Endpoint { .. }
            | EtcdConfigError::MixedSchemes => "registry.endpoints",
            EtcdConfigError::TlsWithoutHttps { setting }
            | EtcdConfigError::Read { setting, .. } => match *setting {
                "ca" => "registry.ca",
                "cert" => "registry.cert",
                _ => "registry.key",
            },
            EtcdConfigError::MissingCa => "registry.ca",
            EtcdConfigError::IncompleteClientCert => "registry.cert",
            EtcdConfigError::PlaintextPassword { .. } | EtcdConfigError::IncompleteCredentials => {
                "registry.password"
            }
            EtcdConfigError::Prefix { .. } => "registry.prefix",
            EtcdConfigError::LeaseTtl { .. } => "registry.lease_ttl",
            EtcdConfigError::ZeroDuration {
                setting: "grace_period",
            } => "registry.grace_period",
            EtcdConfigError::ZeroDuration { .. } => "registry.dial_timeout",
            _ => "registry",
        };
        invalid(setting, e)
    };
    builder = builder.registry(EtcdRegistry::from_config(&config).map_err(refused)?);
    if let Some(advertise) = section.advertise {
        check_advertised(&advertise)?;
        let mut published = ligand_runtime::ServiceRegistration::advertise(advertise);
        for (key, value) in section.metadata.unwrap_or_default() {
            published = published.metadata(key, value);
        }
        builder = builder.registrar(
            EtcdRegistrar::from_config(&config).map_err(refused)?,
            published,
        );
    } else if section.metadata.is_some() {
        return Err(invalid(
            "registry.metadata",
            "published only when this instance registers: set registry.advertise",
        ));
    }
    Ok(builder)
}

#[cfg(not(feature = "etcd"))]
fn etcd(
    _: ligand_runtime::ConfigBuilder,
    _: RegistrySection,
    _: &Path,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    Err(invalid(
        "registry.kind",
        "\"etcd\" needs ligand built with the `etcd` feature",
    ))
}

/// `host:port` with a port from 1 to 65535: the address peers dial.
#[cfg(feature = "etcd")]
fn check_advertised(address: &str) -> Result<(), ConfigError> {
    let refused = |why: &str| invalid("registry.advertise", format!("{address:?} {why}"));
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| refused("is not host:port"))?;
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(refused("has no usable host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(refused("needs a port from 1 to 65535")),
        Ok(_) => match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            Ok(ip) if ip.is_unspecified() => {
                Err(refused("is an unspecified address no peer can dial"))
            }
            _ => Ok(()),
        },
    }
}

/// `spiffe://ligand.local/service/<executable name>`.
fn default_spiffe_id() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "service".to_owned());
    format!("spiffe://ligand.local/service/{name}")
}
