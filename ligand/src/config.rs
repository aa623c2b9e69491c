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
//! | rate limit | `[rate_limit] kind` (`governor` or `redis`), `rate`, `burst`, `overrides`; governor: `eviction_interval_ms` | | `governor`, 100 rps, burst 200, per caller |
//! | Redis rate limiter (feature `redis`; shared by every instance) | `[rate_limit] kind = "redis"`, `url`, `ca`, `key_prefix`, `timeout`, `connect_timeout` | `LIGAND_REDIS_URL` (the URL) | `key_prefix` `"ligand:ratelimit"`, `"250ms"`, `"5s"` |
//! | secrets | `[secrets] kind` (`file` or `openbao`); file: `dir` | | `file`: the `secrets/` folder when it exists |
//! | OpenBao secrets (feature `openbao`) | `[secrets] kind = "openbao"`, `address`, `ca`, `auth` (`token`, `cert` or `jwt`), `auth_mount`, `role`, `jwt`, `kv_mounts`, `kv_ttl`, `lease_poll_interval`, `request_timeout`, `max_response_bytes` | `LIGAND_OPENBAO_ADDR` (the address), `LIGAND_OPENBAO_TOKEN` (else `BAO_TOKEN`, `VAULT_TOKEN`) | `auth = "token"`, `kv_mounts = ["secret"]`, `"5m"`, `"60s"`, `"10s"`, 1 MiB |
//! | policy bundle fetcher (feature `bundle-fetch`; bundles verified by `[policy] signing`) | `[bundle_fetcher] url`, `server_id`, `bundle`, `long_poll`, `poll_interval`, `request_timeout`, `min_backoff`, `max_backoff`, `max_bundle_bytes` | `LIGAND_BUNDLE_URL` (the URL) | none; when set: the bundle named after this service, `"30s"`, `"10s"`, `"10s"`, `"250ms"`, `"30s"`, 64 MiB |
//! | decision cache | `[policy] cache`, `cache_capacity` | | on when sound for the policy, 10000 decisions |
//! | policy hot reload (a changed file in the policy folder reloads it; a bad change keeps the last good policy, Policy health Degraded) | `[policy] watch` | | on with a folder |
//! | shadow policy (evaluated on live traffic, never enforced; disagreements logged and counted) | `[policy] shadow` (a folder) | | none |
//! | connections | `[connections]` `max`, `max_handshakes`, `handshake_timeout`, `header_read_timeout`, `max_age` | | 10000, 256, `"10s"`, `"30s"`, none |
//! | outbound endpoints | `[services."spiffe://…"] endpoints` | | none: calls fail with "no endpoints" |
//! | registry | `[registry] kind` (`static` or `etcd`; etcd: `endpoints`, `prefix`, `lease_ttl`, `grace_period`, `dial_timeout`, `ca`, `cert`, `key`, `username`, `password`, `advertise`, `metadata`) | | `static`: the `[services]` table |
//! | outbound calls | `[outbound] timeout`, `max_connection_age` | | `"10s"`, `"5m"` |
//! | identity chain version signed on outbound calls (`1` or `2`; every version is verified inbound: keep `1` while a rolling upgrade still has receivers that verify only version 1) | `[outbound] chain_version` | | `2` |
//! | fleet-wide retry budget (feature `redis`; the ratio, floor and window of the top-level `[outbound.retry]` for the whole fleet; while Redis is unreachable the local budget alone, health Degraded) | `[outbound.retry_fleet] url`, `sync`, `ca`, `key_prefix`, `timeout` | | none: each instance has its own budget; with `url`: `"1s"`, system roots, `"ligand:retry"`, `"500ms"` |
//! | outbound resilience | `[outbound.balancer] strategy` (`p2c_ewma`, `least_request`, `round_robin`, `random`, `ring_hash`), `[outbound.outlier]`, `[outbound.breaker]`, `[outbound.bulkhead]`, `[outbound.retry]`; per target service `[outbound.targets."<SPIFFE ID>".<section>]` | | see `ResilienceConfig` |
//! | admin listener (`/livez`, `/readyz`, `/metrics`, plain HTTP) | `[admin] listen`, `enabled` | `LIGAND_ADMIN_LISTEN` | `127.0.0.1:9464`, on |
//! | Transaction Tokens | `[txn_token] jwks`, `issuers`, `audience`, `require`, `leeway`, `algorithms` | | none: a `Txn-Token` header is forwarded, not verified; with `jwks`: any issuer, `aud` = the trust domain, not required, `"30s"`, every asymmetric algorithm |
//! | WIMSE WIT/WPT verification | `[wimse] jwks`, `issuers`, `require`, `leeway`, `max_wpt_lifetime`, `replay_cache_capacity` | | none: WIT/WPT headers are ignored inbound (outbound they are sent whenever the identity source issues WITs); with `jwks`: any issuer, not required, `"30s"`, `"2m"`, 100000 |
//! | WPT replay cache on Redis (feature `redis`; shared by every instance) | `[wimse] replay` (`memory` or `redis`), `replay_url`, `replay_key_prefix`, `replay_timeout`, `replay_connect_timeout` | `LIGAND_REPLAY_REDIS_URL` (the URL) | `memory` |
//! | log format (`text` or `json`: JSON lines; with `ligand::request=debug` in the level, a handler's lines carry the request span's `request_id`, `trace_id` and `span_id`) | `[log] format` | `LIGAND_LOG_FORMAT` | `text` |
//! | log level (an `EnvFilter` directive) | `[log] level` | `RUST_LOG` | `info` |
//! | gateway (external callers by access token, for `#[ligand::service(gateway)]`) | `[gateway] listen`, `jwks`, `issuers`, `audience`, `signing_key`, `signing_algorithm`, `signing_kid`, `issuer`, `lifetime`, `leeway`, `cert`, `key` | | none: a gateway service is refused; with the section: `listen`, `jwks`, `issuers`, `audience` and `signing_key` required, `"ES256"`, `"ligand-txn"`, no `iss`, `"5m"`, `"30s"`, the SVID as the server certificate |
//! | token-exchange endpoint (RFC 8693 `POST`, form-encoded, on the gateway listener: an access token for a Transaction Token, if the policy allows the subject `token_exchange` on the path) | `[gateway] sts_path` (a literal path such as `"/token"`) | | off |
//! | OpenTelemetry trace export (feature `otel`; OTLP over gRPC, parent-based sampling: a sampled inbound `traceparent` is honoured) | `[telemetry] otlp`, `service_name`, `sampling` | `LIGAND_OTLP`, else `OTEL_EXPORTER_OTLP_ENDPOINT` (the endpoint); `OTEL_SERVICE_NAME` | no export; with an endpoint: the SPIFFE ID path's last segment or the executable name, sampling 1 |
//! | audit log | `[audit] format` (`log`, `json` or `tracing`), `path`, `queue`, `overflow` (`drop` or `block`) | | `log`, stdout, 16384, `drop` |
//! | tamper-evident audit log (hash-chained JSON lines, checkpoints signed with the SVID key; see [`ligand_runtime::audit`]) | `[audit] chain`, `checkpoint_every`, `checkpoint_interval` | | on for `format = "json"` with a `path` (off elsewhere: on stdout other lines interleave), 1000 records, `"60s"` |
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
//! Providers that reach a backend are compiled in by a feature of the `ligand` crate (`redis`,
//! `openbao`, `bundle-fetch`, `etcd`, or `full` for all); a setting that names one whose
//! feature is off is refused, naming the feature. Their settings are checked when the file is
//! loaded; they connect when the service starts, and a backend that cannot be reached then
//! fails the start with an error naming the setting. Secrets such as the OpenBao token come
//! from the environment, not the file; an environment variable replaces the file's value:
//!
//! ```toml
//! [rate_limit]
//! kind = "redis"
//! url = "rediss://ratelimit.internal:6380"   # or LIGAND_REDIS_URL
//! ca = "redis-ca.pem"
//! rate = 100
//! burst = 50
//! timeout = "100ms"
//!
//! [secrets]
//! kind = "openbao"
//! address = "https://bao.internal:8200"      # or LIGAND_OPENBAO_ADDR
//! ca = "bao-ca.pem"
//! auth = "cert"                              # log in with the workload's X.509-SVID
//! role = "accounts"
//!
//! [bundle_fetcher]
//! url = "https://bundles.internal:8443"      # or LIGAND_BUNDLE_URL
//! server_id = "spiffe://bank.example/ligand/bundle-server"
//!
//! [wimse]
//! jwks = "wit-jwks.json"
//! replay = "redis"
//! replay_url = "rediss://replay.internal:6380"  # or LIGAND_REPLAY_REDIS_URL
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

mod providers;
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

/// The provider features this build of `ligand` has, of `etcd`, `redis`, `openbao` and
/// `bundle-fetch`: a setting naming a provider whose feature is missing is refused at load,
/// naming the feature. (Cargo unifies features across a workspace, so a crate may get more
/// than it asked for.)
pub const PROVIDER_FEATURES: &[&str] = &[
    #[cfg(feature = "etcd")]
    "etcd",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "openbao")]
    "openbao",
    #[cfg(feature = "bundle-fetch")]
    "bundle-fetch",
];

/// `ligand.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    #[serde(default)]
    identity: Identity,
    policy: Option<RegorusConfig>,
    rate_limit: Option<RateLimitSection>,
    secrets: Option<SecretsSection>,
    bundle_fetcher: Option<BundleFetcherSection>,
    audit: Option<AuditSection>,
    connections: Option<ConnectionsSection>,
    services: Option<StaticRegistryConfig>,
    registry: Option<RegistrySection>,
    outbound: Option<OutboundSection>,
    admin: Option<AdminSection>,
    txn_token: Option<TxnTokenSection>,
    wimse: Option<WimseSection>,
    log: Option<LogSection>,
    gateway: Option<GatewaySection>,
    telemetry: Option<TelemetrySection>,
}

/// `[telemetry]`: the request spans exported over OTLP/gRPC (the `otel` feature).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
struct TelemetrySection {
    /// The collector's OTLP/gRPC endpoint, `http://…` (TLS to the collector is not built in).
    otlp: Option<String>,
    /// The `service.name` resource attribute.
    service_name: Option<String>,
    /// The ratio of new traces sampled, 0 to 1; a sampled inbound `traceparent` is honoured.
    sampling: Option<f64>,
}

impl TelemetrySection {
    #[cfg(feature = "otel")]
    fn check(&self) -> Result<(), ConfigError> {
        let endpoint = std::env::var("LIGAND_OTLP")
            .ok()
            .map(|v| ("LIGAND_OTLP", v))
            .or_else(|| self.otlp.clone().map(|v| ("telemetry.otlp", v)))
            .or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok()
                    .map(|v| ("OTEL_EXPORTER_OTLP_ENDPOINT", v))
            });
        if let Some((setting, url)) = endpoint
            && !url.starts_with("http://")
        {
            // TLS to the collector is not built in: refused here rather than failing to
            // connect at every export.
            return Err(invalid(
                setting,
                format!(
                    "{url:?} is not an http:// URL (such as \"http://127.0.0.1:4317\", a collector \
                     on the node; https:// collectors are not supported yet)"
                ),
            ));
        }
        if let Some(name) = &self.service_name
            && name.trim().is_empty()
        {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        if let Some(ratio) = self.sampling
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(invalid(
                "telemetry.sampling",
                format!("{ratio} is not a ratio from 0 to 1"),
            ));
        }
        Ok(())
    }

    #[cfg(not(feature = "otel"))]
    fn check(&self) -> Result<(), ConfigError> {
        Err(feature_off("telemetry", "[telemetry]", "otel"))
    }
}

/// `[log]`: read by `init_logging` before the configuration loads; checked here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    /// `text` or `json`.
    format: Option<String>,
    /// An `EnvFilter` directive such as `info` or `info,ligand::audit=off`.
    level: Option<String>,
}

impl LogSection {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(format) = &self.format
            && crate::LogFormat::parse(format).is_none()
        {
            return Err(invalid(
                "log.format",
                format!("{format:?} is neither \"text\" nor \"json\""),
            ));
        }
        if let Some(level) = &self.level
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
        {
            return Err(invalid(
                "log.level",
                format!("{level:?} is not a level or filter such as \"info\" ({e})"),
            ));
        }
        Ok(())
    }
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
    /// The path of the RFC 8693 token-exchange endpoint on the gateway listener; none: off.
    sts_path: Option<String>,
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
        if let Some(leeway) = &self.leeway {
            subject = subject.leeway(any_duration("gateway.leeway", leeway)?);
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
            let lifetime = any_duration("gateway.lifetime", lifetime)?;
            if lifetime.is_zero() {
                return Err(invalid("gateway.lifetime", "must be at least \"1s\""));
            }
            minter = minter.lifetime(lifetime);
        }
        let mut config = GatewayConfig::new(self.listen, minter);
        if let Some(path) = self.sts_path {
            if !ligand_runtime::is_sts_path(&path) {
                return Err(invalid(
                    "gateway.sts_path",
                    format!("{path:?} is not a literal path such as \"/token\""),
                ));
            }
            config = config.sts_path(path);
        }
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
        let Some((setting, listen)) = overridden(
            ("LIGAND_ADMIN_LISTEN", &env.admin_listen),
            ("admin.listen", self.listen),
        ) else {
            return Ok(AdminConfig::default());
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
            config = config.leeway(any_duration("txn_token.leeway", &leeway)?);
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
    /// `memory` (default) or `redis` (shared by every instance; the `redis` feature).
    #[serde(default)]
    replay: ReplayKind,
    /// `replay = "redis"`: `redis://…` or `rediss://…`.
    replay_url: Option<String>,
    replay_key_prefix: Option<String>,
    replay_timeout: Option<String>,
    replay_connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReplayKind {
    /// The in-process cache: catches replays against this instance.
    #[default]
    Memory,
    /// Redis or Valkey, shared by the fleet.
    Redis,
}

impl WimseSection {
    fn config(self, base: &Path, env: &Environment) -> Result<WimseConfig, ConfigError> {
        let mut config = WimseConfig::from_jwks_file(base.join(&self.jwks))
            .map_err(|e| invalid("wimse.jwks", chain(&e)))?;
        if let Some(issuers) = self.issuers.clone() {
            config = config.issuers(issuers);
        }
        if let Some(leeway) = &self.leeway {
            config = config.leeway(any_duration("wimse.leeway", leeway)?);
        }
        if let Some(lifetime) = &self.max_wpt_lifetime {
            let lifetime = any_duration("wimse.max_wpt_lifetime", lifetime)?;
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
            if matches!(self.replay, ReplayKind::Redis) {
                return Err(invalid(
                    "wimse.replay_cache_capacity",
                    "bounds the in-memory cache, and wimse.replay is \"redis\"",
                ));
            }
            config = config.replay_cache(std::sync::Arc::new(
                ligand_runtime::InMemoryReplayCache::new(capacity),
            ));
        }
        match self.replay {
            ReplayKind::Memory => {
                let set = [
                    ("LIGAND_REPLAY_REDIS_URL", env.replay_redis_url.is_some()),
                    ("wimse.replay_url", self.replay_url.is_some()),
                    ("wimse.replay_key_prefix", self.replay_key_prefix.is_some()),
                    ("wimse.replay_timeout", self.replay_timeout.is_some()),
                    (
                        "wimse.replay_connect_timeout",
                        self.replay_connect_timeout.is_some(),
                    ),
                ];
                if let Some((setting, _)) = set.iter().find(|(_, set)| *set) {
                    return Err(invalid(setting, "only used with wimse.replay = \"redis\""));
                }
            }
            ReplayKind::Redis => {
                config = config.replay_cache(redis_replay(&self, env)?);
            }
        }
        Ok(config.require(self.require))
    }
}

/// `[wimse] replay = "redis"`: the shared replay cache, connected when `init` starts it.
#[cfg(feature = "redis")]
fn redis_replay(
    section: &WimseSection,
    env: &Environment,
) -> Result<std::sync::Arc<dyn ligand_runtime::ReplayCache>, ConfigError> {
    let (setting, url) = overridden(
        ("LIGAND_REPLAY_REDIS_URL", &env.replay_redis_url),
        ("wimse.replay_url", section.replay_url.clone()),
    )
    .ok_or_else(|| {
        invalid(
            "wimse.replay_url",
            "required with wimse.replay = \"redis\", such as \"rediss://replay.internal:6380\" (or set LIGAND_REPLAY_REDIS_URL)",
        )
    })?;
    check_redis_url(setting, &url)?;
    let mut config = ligand_replay_redis::RedisReplayConfig::new(url);
    if let Some(prefix) = &section.replay_key_prefix {
        config = config.with_key_prefix(prefix.clone());
    }
    if let Some(timeout) = &section.replay_timeout {
        config = config.with_timeout(duration("wimse.replay_timeout", timeout)?);
    }
    if let Some(timeout) = &section.replay_connect_timeout {
        config = config.with_connect_timeout(duration("wimse.replay_connect_timeout", timeout)?);
    }
    config.validate().map_err(|e| {
        let setting = redis_client_setting(
            &e,
            setting,
            "wimse.replay_timeout",
            "wimse.replay_connect_timeout",
        );
        invalid(setting, e)
    })?;
    Ok(std::sync::Arc::new(providers::RedisReplay::new(
        config, setting,
    )))
}

#[cfg(not(feature = "redis"))]
fn redis_replay(
    _: &WimseSection,
    _: &Environment,
) -> Result<std::sync::Arc<dyn ligand_runtime::ReplayCache>, ConfigError> {
    Err(feature_off("wimse.replay", "\"redis\"", "redis"))
}

/// A setting names a provider whose facade feature is off.
#[cfg_attr(
    all(
        feature = "redis",
        feature = "openbao",
        feature = "bundle-fetch",
        feature = "etcd",
        feature = "otel"
    ),
    allow(dead_code)
)]
fn feature_off(setting: &'static str, value: &str, feature: &str) -> ConfigError {
    invalid(
        setting,
        format!("{value} needs ligand built with the `{feature}` feature (or `full`)"),
    )
}

/// The `ligand.toml` setting a Redis connection setting's error names: the URL's, the
/// command timeout's or the connect timeout's.
#[cfg(feature = "redis")]
fn redis_client_setting(
    error: &ligand_replay_redis::SettingsError,
    url: &'static str,
    timeout: &'static str,
    connect_timeout: &'static str,
) -> &'static str {
    use ligand_replay_redis::SettingsError;
    match error {
        SettingsError::ZeroTimeout("connect_timeout_ms") => connect_timeout,
        SettingsError::ZeroTimeout(_) => timeout,
        SettingsError::InsecureTls { .. } | SettingsError::UrlFragment { .. } => url,
    }
}

/// A `redis://` or `rediss://` URL, checked before anything connects; the password, if any,
/// is never shown.
#[cfg(feature = "redis")]
fn check_redis_url(setting: &'static str, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(invalid(
            setting,
            "must be a redis:// or rediss:// URL (redis[s]://[user:password@]host:port[/db])",
        ));
    }
    if url.contains('#') {
        return Err(invalid(
            setting,
            "a redis URL takes no #fragment (#insecure would turn off certificate verification; trust a private CA with a CA file instead)",
        ));
    }
    Ok(())
}

/// `[rate_limit]`: `kind = "governor"` (in process, the default) or `"redis"` (shared by
/// every instance, the `redis` feature). Both take `rate`, `burst` and `overrides`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitSection {
    #[serde(default)]
    kind: RateLimitKind,
    rate: Option<f64>,
    burst: Option<u32>,
    #[serde(default)]
    overrides: Vec<ligand_runtime::LimitOverride>,
    /// governor: how often idle callers' states are dropped, in milliseconds.
    eviction_interval_ms: Option<u64>,
    /// redis: `redis://…` or `rediss://…`.
    url: Option<String>,
    /// redis: a PEM CA file that a `rediss://` server must chain to.
    ca: Option<PathBuf>,
    key_prefix: Option<String>,
    /// redis: how long one check may take (`"250ms"`); slower denies.
    timeout: Option<String>,
    connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RateLimitKind {
    #[default]
    Governor,
    Redis,
}

impl RateLimitSection {
    fn limiter(
        self,
        builder: ligand_runtime::ConfigBuilder,
        base: &Path,
        env: &Environment,
    ) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
        let rate = self.rate.unwrap_or(100.0);
        let burst = self.burst.unwrap_or(200);
        match self.kind {
            RateLimitKind::Governor => {
                let set = [
                    ("LIGAND_REDIS_URL", env.redis_url.is_some()),
                    ("rate_limit.url", self.url.is_some()),
                    ("rate_limit.ca", self.ca.is_some()),
                    ("rate_limit.key_prefix", self.key_prefix.is_some()),
                    ("rate_limit.timeout", self.timeout.is_some()),
                    ("rate_limit.connect_timeout", self.connect_timeout.is_some()),
                ];
                if let Some((setting, _)) = set.iter().find(|(_, set)| *set) {
                    return Err(invalid(
                        setting,
                        "only used with rate_limit.kind = \"redis\" (the default limiter is in process)",
                    ));
                }
                let mut limits = GovernorConfig::new(rate, burst);
                limits.overrides = self.overrides;
                if let Some(interval) = self.eviction_interval_ms {
                    limits.eviction_interval_ms = interval;
                }
                Ok(builder.rate_limiter(
                    GovernorLimiter::new(limits).map_err(|e| invalid("rate_limit", e))?,
                ))
            }
            RateLimitKind::Redis => {
                if self.eviction_interval_ms.is_some() {
                    return Err(invalid(
                        "rate_limit.eviction_interval_ms",
                        "only used by the in-process limiter (Redis expires idle callers' keys)",
                    ));
                }
                redis_limiter(builder, self, rate, burst, base, env)
            }
        }
    }
}

#[cfg(feature = "redis")]
fn redis_limiter(
    builder: ligand_runtime::ConfigBuilder,
    section: RateLimitSection,
    rate: f64,
    burst: u32,
    base: &Path,
    env: &Environment,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    use ligand_ratelimit_redis::{ConfigError as RedisError, RedisConfig};

    let (setting, url) = overridden(
        ("LIGAND_REDIS_URL", &env.redis_url),
        ("rate_limit.url", section.url),
    )
    .ok_or_else(|| {
        invalid(
            "rate_limit.url",
            "required with rate_limit.kind = \"redis\", such as \"rediss://ratelimit.internal:6380\" (or set LIGAND_REDIS_URL)",
        )
    })?;
    check_redis_url(setting, &url)?;
    let mut config = RedisConfig::new(url, rate, burst);
    config.overrides = section.overrides;
    if let Some(ca) = section.ca {
        let ca = base.join(ca);
        if !ca.is_file() {
            return Err(invalid(
                "rate_limit.ca",
                format!("no CA file at {}", ca.display()),
            ));
        }
        config = config.with_ca_file(ca);
    }
    if let Some(prefix) = section.key_prefix {
        config = config.with_key_prefix(prefix);
    }
    if let Some(timeout) = section.timeout {
        config = config.with_timeout(duration("rate_limit.timeout", &timeout)?);
    }
    if let Some(timeout) = section.connect_timeout {
        config = config.with_connect_timeout(duration("rate_limit.connect_timeout", &timeout)?);
    }
    config.validate().map_err(|e| {
        let setting = match &e {
            RedisError::Settings(settings) => redis_client_setting(
                settings,
                setting,
                "rate_limit.timeout",
                "rate_limit.connect_timeout",
            ),
            _ => "rate_limit",
        };
        invalid(setting, e)
    })?;
    Ok(builder.rate_limiter(providers::RedisRateLimit::new(config, setting)))
}

#[cfg(not(feature = "redis"))]
fn redis_limiter(
    _: ligand_runtime::ConfigBuilder,
    _: RateLimitSection,
    _: f64,
    _: u32,
    _: &Path,
    _: &Environment,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    Err(feature_off("rate_limit.kind", "\"redis\"", "redis"))
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
    /// The wire-format version of the chain tokens signed: `1` or `2`.
    chain_version: Option<i64>,
    /// `[outbound.balancer]`, `[outbound.outlier]`, `[outbound.breaker]`,
    /// `[outbound.bulkhead]`, `[outbound.retry]`: each field as in `ResilienceConfig`.
    balancer: Option<ligand_runtime::BalancerConfig>,
    outlier: Option<ligand_runtime::OutlierConfig>,
    breaker: Option<ligand_runtime::BreakerConfig>,
    bulkhead: Option<ligand_runtime::BulkheadConfig>,
    retry: Option<ligand_runtime::RetryConfig>,
    /// `[outbound.targets."<SPIFFE ID>".<section>]`: sections for calls to one service.
    targets: Option<std::collections::BTreeMap<String, ligand_runtime::TargetResilience>>,
    /// `[outbound.retry_fleet]`: the retry budget shared by the fleet.
    retry_fleet: Option<RetryFleetSection>,
}

/// `[outbound.retry_fleet]`: one retry budget for every instance, on Redis or Valkey.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "read only with the redis feature")
)]
struct RetryFleetSection {
    /// `redis://…` or `rediss://…`.
    url: String,
    /// How often the fleet view is refreshed (default `"1s"`).
    sync: Option<String>,
    /// CA certificates for a `rediss://` server, relative to the file.
    ca: Option<PathBuf>,
    /// The prefix of the budget's keys.
    key_prefix: Option<String>,
    /// How long one sync may take (default `"500ms"`).
    timeout: Option<String>,
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
    /// Hash-chain the JSON lines file and seal it with signed checkpoints. Default: on for
    /// `json` with a `path`; refused for anything else.
    chain: Option<bool>,
    /// A checkpoint after this many records.
    checkpoint_every: Option<usize>,
    /// A checkpoint when this long passed since the last one with records written.
    checkpoint_interval: Option<String>,
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
    match any_duration(setting, value)? {
        duration if duration.is_zero() => Err(invalid(setting, "must be longer than zero")),
        duration => Ok(duration),
    }
}

/// A duration such as `"30s"`, zero included.
fn any_duration(setting: &'static str, value: &str) -> Result<std::time::Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| {
        invalid(
            setting,
            format!("{value:?} is not a duration such as \"30s\" ({e})"),
        )
    })
}

/// `[secrets]`: `kind = "file"` (the default: one file per secret under `dir`) or `"openbao"`
/// (OpenBao or Vault over HTTPS, the `openbao` feature).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSection {
    #[serde(default)]
    kind: SecretsKind,
    /// file: the folder of secret files.
    dir: Option<PathBuf>,
    /// openbao: `https://host[:port]`.
    address: Option<String>,
    /// openbao: the PEM CA file OpenBao's certificate chains to.
    ca: Option<PathBuf>,
    /// openbao: `token` (from `LIGAND_OPENBAO_TOKEN`, `BAO_TOKEN` or `VAULT_TOKEN`), `cert`
    /// (the workload's X.509-SVID) or `jwt` (a JWT-SVID file).
    auth: Option<String>,
    /// openbao: the auth method's mount (default `cert` or `jwt`).
    auth_mount: Option<String>,
    /// openbao: the role to log in as (`cert`: optional; `jwt`: required).
    role: Option<String>,
    /// openbao, `auth = "jwt"`: the JWT-SVID file, read at each login.
    jwt: Option<PathBuf>,
    /// openbao: the KV v2 mounts (default `["secret"]`).
    kv_mounts: Option<Vec<String>>,
    /// openbao: how long a KV value is cached before it is read again (`"5m"`; `"0s"`: no TTL).
    kv_ttl: Option<String>,
    /// openbao: how often handed-out leases are looked up for revocation (`"60s"`).
    lease_poll_interval: Option<String>,
    /// openbao: the bound on one HTTP exchange (`"10s"`).
    request_timeout: Option<String>,
    /// openbao: the largest response accepted, in bytes.
    max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SecretsKind {
    #[default]
    File,
    Openbao,
}

impl SecretsSection {
    /// The file provider's folder, refusing OpenBao settings beside it.
    fn file_dir(&self, env: &Environment) -> Result<PathBuf, ConfigError> {
        let set = [
            ("LIGAND_OPENBAO_ADDR", env.openbao_addr.is_some()),
            ("secrets.address", self.address.is_some()),
            ("secrets.ca", self.ca.is_some()),
            ("secrets.auth", self.auth.is_some()),
            ("secrets.auth_mount", self.auth_mount.is_some()),
            ("secrets.role", self.role.is_some()),
            ("secrets.jwt", self.jwt.is_some()),
            ("secrets.kv_mounts", self.kv_mounts.is_some()),
            ("secrets.kv_ttl", self.kv_ttl.is_some()),
            (
                "secrets.lease_poll_interval",
                self.lease_poll_interval.is_some(),
            ),
            ("secrets.request_timeout", self.request_timeout.is_some()),
            (
                "secrets.max_response_bytes",
                self.max_response_bytes.is_some(),
            ),
        ];
        if let Some((setting, _)) = set.iter().find(|(_, set)| *set) {
            return Err(invalid(
                setting,
                "only used with secrets.kind = \"openbao\" (the file provider reads secrets.dir)",
            ));
        }
        self.dir
            .clone()
            .ok_or_else(|| invalid("secrets.dir", "required: the folder of secret files"))
    }
}

/// `[secrets] kind = "openbao"`: checked now, connected (and logged in) when `init` starts it.
#[cfg(feature = "openbao")]
fn openbao(
    section: SecretsSection,
    base: &Path,
    env: &Environment,
) -> Result<impl ligand_runtime::Secrets, ConfigError> {
    use ligand_secrets_openbao::{Auth, OpenBaoError, OpenBaoSecrets};

    if section.dir.is_some() {
        return Err(invalid(
            "secrets.dir",
            "only used with secrets.kind = \"file\"",
        ));
    }
    let (address_setting, address) = overridden(
        ("LIGAND_OPENBAO_ADDR", &env.openbao_addr),
        ("secrets.address", section.address),
    )
    .ok_or_else(|| {
        invalid(
            "secrets.address",
            "required with secrets.kind = \"openbao\", such as \"https://bao.internal:8200\" (or set LIGAND_OPENBAO_ADDR)",
        )
    })?;
    let ca_path = section.ca.map(|ca| base.join(ca)).ok_or_else(|| {
        invalid(
            "secrets.ca",
            "required with secrets.kind = \"openbao\": the PEM CA file OpenBao's certificate chains to",
        )
    })?;
    let ca = std::fs::read(&ca_path)
        .map_err(|e| invalid("secrets.ca", format!("{}: {e}", ca_path.display())))?;
    let method = section.auth.as_deref().unwrap_or("token");
    let auth = match method {
        "token" => {
            if section.role.is_some() || section.jwt.is_some() || section.auth_mount.is_some() {
                return Err(invalid(
                    "secrets.auth",
                    "\"token\" takes no role, jwt or auth_mount: the token comes from LIGAND_OPENBAO_TOKEN, BAO_TOKEN or VAULT_TOKEN",
                ));
            }
            match &env.openbao_token {
                Some(token) if !token.is_empty() => Auth::token(token.clone()),
                Some(_) => return Err(invalid("LIGAND_OPENBAO_TOKEN", "is empty")),
                None => Auth::TokenFromEnv,
            }
        }
        "cert" => {
            if section.jwt.is_some() {
                return Err(invalid(
                    "secrets.jwt",
                    "only used with secrets.auth = \"jwt\"",
                ));
            }
            Auth::cert(section.role.as_deref())
        }
        "jwt" => {
            let role = section
                .role
                .as_deref()
                .ok_or_else(|| invalid("secrets.role", "required with secrets.auth = \"jwt\""))?;
            let jwt = section.jwt.map(|p| base.join(p)).ok_or_else(|| {
                invalid(
                    "secrets.jwt",
                    "required with secrets.auth = \"jwt\": the JWT-SVID file",
                )
            })?;
            Auth::jwt(role, jwt)
        }
        other => {
            return Err(invalid(
                "secrets.auth",
                format!("{other:?} is not \"token\", \"cert\" or \"jwt\""),
            ));
        }
    };
    let auth = match &section.auth_mount {
        Some(mount) => auth.mount(mount),
        None => auth,
    };
    let mut builder = OpenBaoSecrets::builder(&address, &ca).auth(auth);
    if let Some(mounts) = section.kv_mounts {
        builder = builder.kv_v2_mounts(mounts);
    }
    if let Some(ttl) = section.kv_ttl {
        let ttl = humantime::parse_duration(&ttl).map_err(|e| {
            invalid(
                "secrets.kv_ttl",
                format!("{ttl:?} is not a duration such as \"5m\" ({e})"),
            )
        })?;
        builder = builder.kv_ttl((!ttl.is_zero()).then_some(ttl));
    }
    if let Some(interval) = section.lease_poll_interval {
        builder = builder.lease_poll_interval(duration("secrets.lease_poll_interval", &interval)?);
    }
    if let Some(timeout) = section.request_timeout {
        builder = builder.request_timeout(duration("secrets.request_timeout", &timeout)?);
    }
    if let Some(limit) = section.max_response_bytes {
        builder = builder.max_response_bytes(positive("secrets.max_response_bytes", limit)?);
    }
    let secrets = builder.build().map_err(|e| {
        let setting = match &e {
            OpenBaoError::MissingToken => "LIGAND_OPENBAO_TOKEN",
            OpenBaoError::Tls(_) => "secrets.ca",
            OpenBaoError::Config(message) if message.contains("CA") => "secrets.ca",
            OpenBaoError::Config(message) if message.contains("address") => address_setting,
            OpenBaoError::Config(_) => "secrets",
            _ => "secrets",
        };
        invalid(setting, e)
    })?;
    Ok(providers::NamedSecrets {
        inner: secrets,
        setting: address_setting,
    })
}

#[cfg(not(feature = "openbao"))]
fn openbao(
    _: SecretsSection,
    _: &Path,
    _: &Environment,
) -> Result<ligand_secrets_file::FileSecrets, ConfigError> {
    Err(feature_off("secrets.kind", "\"openbao\"", "openbao"))
}

/// `[bundle_fetcher]`: the service's signed policy bundle, fetched from a bundle server over
/// mTLS and long-polled for new versions (the `bundle-fetch` feature). `[policy] signing`
/// verifies each bundle before it replaces the policy in force.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "bundle-fetch"), allow(dead_code))]
struct BundleFetcherSection {
    /// `https://host[:port][/prefix]`.
    url: Option<String>,
    /// The SPIFFE ID the bundle server must present.
    server_id: String,
    /// The bundle to fetch (default: named after this service's SPIFFE ID).
    bundle: Option<String>,
    /// The long-poll wait asked of the server (`"30s"`).
    long_poll: Option<String>,
    /// The poll period against a server that does not long-poll (`"10s"`).
    poll_interval: Option<String>,
    /// How long one request may take, on top of its long-poll wait (`"10s"`).
    request_timeout: Option<String>,
    /// The retry delays after errors: from `min_backoff`, doubling up to `max_backoff`.
    min_backoff: Option<String>,
    max_backoff: Option<String>,
    /// The largest bundle accepted, in bytes.
    max_bundle_bytes: Option<usize>,
}

#[cfg(feature = "bundle-fetch")]
fn bundle_fetcher(
    builder: ligand_runtime::ConfigBuilder,
    section: BundleFetcherSection,
    env: &Environment,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    use ligand_bundle_fetcher_http::{ConfigError as FetchError, HttpBundleFetcher};

    let (setting, url) = overridden(
        ("LIGAND_BUNDLE_URL", &env.bundle_url),
        ("bundle_fetcher.url", section.url),
    )
    .ok_or_else(|| {
        invalid(
            "bundle_fetcher.url",
            "required: the bundle server, such as \"https://bundles.internal:8443\" (or set LIGAND_BUNDLE_URL)",
        )
    })?;
    let server = SpiffeId::new(&section.server_id).map_err(|e| {
        invalid(
            "bundle_fetcher.server_id",
            format!("{}: {e}", section.server_id),
        )
    })?;
    let mut fetcher = HttpBundleFetcher::builder(url, server);
    if let Some(name) = section.bundle {
        fetcher = fetcher.bundle_name(name);
    }
    if let Some(wait) = section.long_poll {
        fetcher = fetcher.long_poll(duration("bundle_fetcher.long_poll", &wait)?);
    }
    if let Some(interval) = section.poll_interval {
        fetcher = fetcher.poll_interval(duration("bundle_fetcher.poll_interval", &interval)?);
    }
    if let Some(timeout) = section.request_timeout {
        fetcher = fetcher.request_timeout(duration("bundle_fetcher.request_timeout", &timeout)?);
    }
    match (section.min_backoff, section.max_backoff) {
        (None, None) => {}
        (min, max) => {
            let min = match min {
                Some(min) => duration("bundle_fetcher.min_backoff", &min)?,
                None => ligand_bundle_fetcher_http::DEFAULT_MIN_BACKOFF,
            };
            let max = match max {
                Some(max) => duration("bundle_fetcher.max_backoff", &max)?,
                None => ligand_bundle_fetcher_http::DEFAULT_MAX_BACKOFF,
            };
            if min > max {
                return Err(invalid(
                    "bundle_fetcher.max_backoff",
                    "must not be shorter than bundle_fetcher.min_backoff",
                ));
            }
            fetcher = fetcher.backoff(min, max);
        }
    }
    if let Some(limit) = section.max_bundle_bytes {
        fetcher = fetcher.max_bundle_bytes(positive("bundle_fetcher.max_bundle_bytes", limit)?);
    }
    let fetcher = fetcher.build().map_err(|e| match e {
        FetchError::BundleName(_) => invalid("bundle_fetcher.bundle", e),
        e => invalid(setting, e),
    })?;
    Ok(builder.bundle_fetcher(fetcher))
}

#[cfg(not(feature = "bundle-fetch"))]
fn bundle_fetcher(
    _: ligand_runtime::ConfigBuilder,
    _: BundleFetcherSection,
    _: &Environment,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    Err(feature_off(
        "bundle_fetcher",
        "[bundle_fetcher]",
        "bundle-fetch",
    ))
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
    #[error("{setting}: {message}{}", at.as_deref().map(|at| format!(" (at {at})")).unwrap_or_default())]
    Invalid {
        /// The setting, such as `identity.spiffe_id` or `policy`.
        setting: &'static str,
        /// What is wrong.
        message: String,
        /// Where the setting is written: `<file>:<line>`, when it is in the file.
        at: Option<String>,
    },
}

/// A setting and its `LIGAND_*` environment override: the variable's value when set, else the
/// file's, each with the name to quote in errors; `None` when neither is given.
fn overridden(
    variable: (&'static str, &Option<String>),
    file: (&'static str, Option<String>),
) -> Option<(&'static str, String)> {
    match (variable, file) {
        ((name, Some(value)), _) => Some((name, value.clone())),
        (_, (setting, Some(value))) => Some((setting, value)),
        _ => None,
    }
}

fn invalid(setting: &'static str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.to_string(),
        at: None,
    }
}

/// Loads the configuration from `LIGAND_CONFIG` or `./ligand.toml`, applying the environment
/// overrides and the embedded defaults. This is what `#[ligand::main]` uses when it is given
/// no `config = ...`.
pub async fn load() -> Result<Config, BoxError> {
    let path = std::env::var_os("LIGAND_CONFIG")
        .map_or_else(|| PathBuf::from("ligand.toml"), PathBuf::from);
    let explicit = std::env::var_os("LIGAND_CONFIG").is_some();
    let env = Environment::from_process();
    Ok(load_from(&path, explicit, &env)?)
}

/// Environment overrides, read once by [`load`].
#[derive(Default, Clone)]
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
    /// `LIGAND_REDIS_URL`: the Redis rate limiter's URL (`[rate_limit] kind = "redis"`).
    pub redis_url: Option<String>,
    /// `LIGAND_REPLAY_REDIS_URL`: the Redis WPT replay cache's URL (`[wimse] replay = "redis"`).
    pub replay_redis_url: Option<String>,
    /// `LIGAND_OPENBAO_ADDR`: OpenBao's address (`[secrets] kind = "openbao"`).
    pub openbao_addr: Option<String>,
    /// `LIGAND_OPENBAO_TOKEN`: the OpenBao token (`[secrets] auth = "token"`); without it,
    /// `BAO_TOKEN`, then `VAULT_TOKEN`.
    pub openbao_token: Option<String>,
    /// `LIGAND_BUNDLE_URL`: the bundle server's URL (`[bundle_fetcher]`).
    pub bundle_url: Option<String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry a password and the token is one: shown only as set or not.
        f.debug_struct("Environment")
            .field("listen", &self.listen)
            .field("socket", &self.socket)
            .field("spiffe_id", &self.spiffe_id)
            .field("admin_listen", &self.admin_listen)
            .field("dev_dir", &self.dev_dir)
            .field("dev_caller", &self.dev_caller)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field(
                "replay_redis_url",
                &self.replay_redis_url.as_ref().map(|_| "<set>"),
            )
            .field("openbao_addr", &self.openbao_addr)
            .field(
                "openbao_token",
                &self.openbao_token.as_ref().map(|_| "<redacted>"),
            )
            .field("bundle_url", &self.bundle_url)
            .finish()
    }
}

impl Environment {
    /// The overrides set in this process's environment.
    pub fn from_process() -> Self {
        Self {
            listen: std::env::var("LIGAND_LISTEN").ok(),
            socket: std::env::var("SPIFFE_ENDPOINT_SOCKET").ok(),
            spiffe_id: std::env::var("LIGAND_SPIFFE_ID").ok(),
            admin_listen: std::env::var("LIGAND_ADMIN_LISTEN").ok(),
            dev_dir: std::env::var_os("LIGAND_DEV_DIR").map(PathBuf::from),
            dev_caller: std::env::var("LIGAND_DEV_CALLER").ok(),
            redis_url: std::env::var("LIGAND_REDIS_URL").ok(),
            replay_redis_url: std::env::var("LIGAND_REPLAY_REDIS_URL").ok(),
            openbao_addr: std::env::var("LIGAND_OPENBAO_ADDR").ok(),
            openbao_token: std::env::var("LIGAND_OPENBAO_TOKEN").ok(),
            bundle_url: std::env::var("LIGAND_BUNDLE_URL").ok(),
        }
    }
}

/// Loads the configuration from the file at `path` (which must exist when `required`; an
/// absent optional file means all defaults). Relative paths, the default `policy/` and
/// `secrets/` folders included, are relative to the file's folder.
pub fn load_from(path: &Path, required: bool, env: &Environment) -> Result<Config, ConfigError> {
    let (file, text) = match std::fs::read_to_string(path) {
        Ok(text) => (
            toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?,
            text,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            (File::default(), String::new())
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    // Relative paths are relative to the file's folder, whether or not the file exists.
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    build(file, &base, env).map_err(|error| match error {
        ConfigError::Invalid {
            setting,
            message,
            at: None,
        } => ConfigError::Invalid {
            setting,
            message,
            at: locate(&text, setting).map(|line| format!("{}:{line}", path.display())),
        },
        error => error,
    })
}

/// Checks the file at `path` as [`load_from`] loads it for a service, every provider setting
/// included, without serving and without connecting to any backend (providers that reach one
/// connect when the service starts). `ligand config validate` and `--validate` use it.
pub fn validate(path: &Path, required: bool, env: &Environment) -> Result<(), ConfigError> {
    load_from(path, required, env).map(drop)
}

/// The line (from 1) where `setting` (`section.key`, `section` or a top-level `key`) is
/// written in `text`, for error messages; `None` for an environment variable or a setting
/// the file leaves out.
fn locate(text: &str, setting: &str) -> Option<usize> {
    if setting.starts_with("LIGAND_") || setting.starts_with("SPIFFE_") {
        return None;
    }
    let (section, key) = match setting.split_once('.') {
        Some((section, key)) => (Some(section), Some(key)),
        None if text.lines().any(|l| l.trim() == format!("[{setting}]")) => (Some(setting), None),
        None => (None, Some(setting)),
    };
    let mut current: Option<&str> = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = Some(header.trim_end_matches(']').trim());
            if key.is_none() && current == section {
                return Some(index + 1);
            }
            continue;
        }
        if current == section
            && let Some(key) = key
            && let Some((name, _)) = line.split_once('=')
            && name.trim() == key
        {
            return Some(index + 1);
        }
    }
    // The key is not written (a required one left out): point at its section.
    let section = section?;
    text.lines()
        .position(|l| l.trim() == format!("[{section}]"))
        .map(|index| index + 1)
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

    // With a bundle fetcher and no [policy], the engine starts empty and takes the fetched
    // bundle (init fails if none can be fetched).
    let mut policy = file.policy.unwrap_or_else(|| match file.bundle_fetcher {
        Some(_) => RegorusConfig::default(),
        None => RegorusConfig::folder("policy"),
    });
    policy.folder = policy.folder.map(|p| base.join(p));
    policy.bundle = policy.bundle.map(|p| base.join(p));
    // Bundle-signing keys are files too, relative to the file's folder like every path in it.
    for key in &mut policy.signing.keys {
        key.path = key.path.take().map(|p| base.join(p));
    }
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

    builder = file
        .rate_limit
        .unwrap_or_default()
        .limiter(builder, base, env)?;
    if let Some(fetcher) = file.bundle_fetcher {
        builder = bundle_fetcher(builder, fetcher, env)?;
    } else if env.bundle_url.is_some() {
        return Err(invalid(
            "LIGAND_BUNDLE_URL",
            "set, but ligand.toml has no [bundle_fetcher] (server_id is required)",
        ));
    }

    let sectioned = file.secrets.is_some();
    let secrets = match file.secrets {
        Some(section) => section,
        None if env.openbao_addr.is_some() => {
            return Err(invalid(
                "LIGAND_OPENBAO_ADDR",
                "set, but ligand.toml has no [secrets] kind = \"openbao\"",
            ));
        }
        None => SecretsSection {
            dir: Some("secrets".into()).filter(|_| base.join("secrets").is_dir()),
            ..SecretsSection::default()
        },
    };
    match secrets.kind {
        SecretsKind::File => {
            if sectioned || secrets.dir.is_some() {
                let dir = base.join(secrets.file_dir(env)?);
                builder =
                    builder.secrets(FileSecrets::new(&dir).map_err(|e| invalid("secrets.dir", e))?);
            }
        }
        SecretsKind::Openbao => builder = builder.secrets(openbao(secrets, base, env)?),
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
    if let Some(version) = outbound.chain_version {
        let version = u64::try_from(version)
            .ok()
            .and_then(ligand_runtime::ChainVersion::from_number)
            .ok_or_else(|| {
                invalid(
                    "outbound.chain_version",
                    format!("{version} is not a chain version this release signs (1 or 2)"),
                )
            })?;
        builder = builder.outbound_chain_version(version);
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
    if let Some(fleet) = outbound.retry_fleet {
        builder = retry_fleet(builder, fleet, &resilience.retry, base)?;
    }
    builder = builder.outbound_resilience(resilience);

    if let Some(txn) = file.txn_token {
        builder = builder.txn_token(txn.config(base)?);
    }
    if let Some(wimse) = file.wimse {
        builder = builder.wimse(wimse.config(base, env)?);
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

    if let Some(log) = &file.log {
        log.check()?;
    }
    if let Some(telemetry) = &file.telemetry {
        telemetry.check()?;
    }
    let audit = file.audit.unwrap_or_default();
    builder = builder.audit_overflow(audit.overflow);
    if let Some(queue) = audit.queue {
        builder = builder.audit_queue_capacity(queue);
    }
    let path = audit.path.map(|path| base.join(path));
    let opened =
        |e: std::io::Error, path: &Path| invalid("audit.path", format!("{}: {e}", path.display()));
    let chained = matches!((&audit.format, &path), (AuditFormat::Json, Some(_)));
    if audit.chain == Some(true) && !chained {
        return Err(invalid(
            "audit.chain",
            "a chained audit log is a JSON lines file: it needs format = \"json\" and a path",
        ));
    }
    let chain = match audit.chain.unwrap_or(chained) {
        true => {
            let mut chain = ligand_runtime::audit::AuditChain::default();
            if let Some(every) = audit.checkpoint_every {
                let every = positive("audit.checkpoint_every", every)?;
                chain = chain.checkpoint_every(u64::try_from(every).unwrap_or(u64::MAX));
            }
            if let Some(interval) = &audit.checkpoint_interval {
                chain = chain.checkpoint_interval(duration("audit.checkpoint_interval", interval)?);
            }
            Some(chain)
        }
        false => {
            if audit.checkpoint_every.is_some() || audit.checkpoint_interval.is_some() {
                return Err(invalid(
                    "audit.checkpoint_every",
                    "checkpoints seal a chained audit log: set chain = true (format = \"json\" with a path)",
                ));
            }
            None
        }
    };
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
            let sink = match chain {
                Some(chain) => JsonLinesTelemetry::chained_file(&path, chain),
                None => JsonLinesTelemetry::file(&path),
            }
            .map_err(|e| opened(e, &path))?;
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
    let (caller_setting, caller) = overridden(
        ("LIGAND_DEV_CALLER", &env.dev_caller),
        ("identity.dev_caller", section.dev_caller.clone()),
    )
    .unwrap_or(("identity.dev_caller", DEFAULT_CALLER.to_owned()));
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

/// `[outbound.retry_fleet]`: the fleet-wide retry budget on Redis.
#[cfg(feature = "redis")]
fn retry_fleet(
    builder: ligand_runtime::ConfigBuilder,
    section: RetryFleetSection,
    retry: &ligand_runtime::RetryConfig,
    base: &Path,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    use ligand_retrybudget_redis::{ConnectError, RedisFleetConfig, RedisRetryBudget};

    let sync = match &section.sync {
        Some(text) => duration("outbound.retry_fleet.sync", text)?,
        None => ligand_runtime::DEFAULT_FLEET_SYNC,
    };
    if !(std::time::Duration::from_millis(100)..=retry.budget_ttl).contains(&sync) {
        return Err(invalid(
            "outbound.retry_fleet.sync",
            "must be from 100ms up to outbound.retry.budget_ttl",
        ));
    }
    let mut config = RedisFleetConfig::new(section.url);
    if let Some(path) = section.ca {
        config = config.with_ca_file(base.join(path));
    }
    if let Some(prefix) = section.key_prefix {
        config = config.with_key_prefix(prefix);
    }
    if let Some(text) = &section.timeout {
        config = config.with_timeout(duration("outbound.retry_fleet.timeout", text)?);
    }
    let store = RedisRetryBudget::new(config).map_err(|e| match &e {
        ConnectError::CaFile { .. } => invalid("outbound.retry_fleet.ca", e),
        ConnectError::Config(ligand_retrybudget_redis::ConfigError::EmptyKeyPrefix) => {
            invalid("outbound.retry_fleet.key_prefix", e)
        }
        ConnectError::Config(ligand_retrybudget_redis::ConfigError::ZeroTimeout(_)) => {
            invalid("outbound.retry_fleet.timeout", e)
        }
        _ => invalid("outbound.retry_fleet.url", e),
    })?;
    Ok(builder.fleet_retry_budget(store, sync))
}

#[cfg(not(feature = "redis"))]
fn retry_fleet(
    _: ligand_runtime::ConfigBuilder,
    _: RetryFleetSection,
    _: &ligand_runtime::RetryConfig,
    _: &Path,
) -> Result<ligand_runtime::ConfigBuilder, ConfigError> {
    Err(invalid(
        "outbound.retry_fleet",
        "needs ligand built with the `redis` feature",
    ))
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
