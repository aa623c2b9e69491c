//! [`RedisLimiter`]: the fleet-wide limiter, one script call per check.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ligand_redis_client::{Connector, within};
use ligand_runtime::{
    Action, LimitRules, Link, ProviderContext, ProviderError, RateLimitRequest, RateLimitResponse,
    RateLimiter, Resource,
};
use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use crate::config::{ConfigError, RedisConfig, Rules, ScriptLimit};
use crate::script::{self, Decision};

/// Why [`RedisLimiter::connect`] failed. `init` must not start the service.
///
/// The connection error every Ligand Redis provider shares, with this limiter's
/// [`ConfigError`] as its `Config` variant: `Config` (the limits, timeouts or URL are
/// invalid), `Url` (not a Redis URL), `CaFile` (the CA file could not be read),
/// `Unreachable` (Redis could not be reached, refused the connection or failed the `PING` or
/// the script load) and `Timeout` (connecting took longer than the connect timeout).
pub type ConnectError = ligand_redis_client::ConnectError<ConfigError>;

/// Why one check failed; the `source` of the [`ProviderError::Backend`] the check returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// Redis did not answer within the check timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error or the connection failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// Redis answered something that is not a decision of the limiter's script.
    #[error("unexpected reply from the rate-limit script: {0}")]
    BadReply(String),
}

/// A rate limiter shared by every instance of a service: a GCRA per caller principal whose
/// state lives in Redis (or Valkey), updated by one atomic server-side script per check.
///
/// The key is the principal of the chain's immediate peer; a request without one is refused
/// with an error. Each check runs `EVALSHA` of the script (falling back to `EVAL`, which also
/// caches it, when the server answers `NOSCRIPT`, as after a restart). The script uses the
/// server's clock, so instances with skewed clocks agree, and gives each caller's state a TTL
/// that ends when the state becomes that of a fresh caller.
///
/// # Failure
///
/// Every failure denies: a Redis error, a broken connection or a reply that is not a decision
/// is an [`Err`] (the framework answers 503), and so is a check that takes longer than
/// `timeout_ms` (default 250 ms), so a hung Redis cannot stall requests. The connection
/// manager reconnects by itself; service resumes when Redis is back, without a restart.
///
/// # Responses
///
/// `retry_after` is the GCRA's time until the caller's next conforming request (at most one
/// emission interval, `1 / rate`). `limit_rps` is the applied rule's rate; `current_rps` is
/// estimated from the script's `remaining` as `limit_rps × (burst − remaining) / burst`: the
/// caller's saturation of its burst, in requests per second (`limit_rps` once exhausted).
///
/// # Example
///
/// ```no_run
/// use ligand_ratelimit_redis::{RedisConfig, RedisLimiter};
///
/// # async fn run() -> Result<(), ligand_ratelimit_redis::ConnectError> {
/// let limiter = RedisLimiter::connect(RedisConfig::new("redis://127.0.0.1:6379", 100.0, 50)).await?;
/// // Config::builder().rate_limiter(limiter) …
/// # Ok(()) }
/// ```
pub struct RedisLimiter {
    connection: ConnectionManager,
    rules: LimitRules,
    /// One rule per override, at the override's index in `rules`.
    overrides: Vec<Rule>,
    default: Rule,
    timeout: Duration,
    url: String,
    sha: String,
    closed: AtomicBool,
}

/// A limit with the key prefix of its callers' states.
#[derive(Debug)]
struct Rule {
    limit: ScriptLimit,
    prefix: String,
}

// === impl RedisLimiter ===

impl RedisLimiter {
    /// Validates `config`, connects, `PING`s and loads the script. Fails if Redis is
    /// unreachable, so that `init` fails closed.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        let rules = Rules::new(&config)?;
        let connector = Connector::new(&config.client).map_err(shared)?;
        let mut connection = connector.connect().await.map_err(shared)?;
        let sha = connector
            .setup(
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script::GCRA)
                    .query_async::<String>(&mut connection),
            )
            .await
            .map_err(shared)?;
        let prefix = &config.key_prefix;
        Ok(Self {
            connection,
            rules: rules.limits,
            overrides: rules
                .overrides
                .into_iter()
                .enumerate()
                .map(|(index, limit)| Rule {
                    limit,
                    prefix: format!("{prefix}:o{index}:"),
                })
                .collect(),
            default: Rule {
                limit: rules.default,
                prefix: format!("{prefix}:default:"),
            },
            timeout: connector.timeout(),
            url: connector.url().to_owned(),
            sha,
            closed: AtomicBool::new(false),
        })
    }

    /// The first matching override's rule, or the default.
    fn rule(&self, caller: &str, resource: &Resource, action: &Action) -> &Rule {
        match self.rules.select(caller, resource, action) {
            (None, _) => &self.default,
            // In range: `overrides` was built from `rules.overrides()`, one rule per override.
            (Some(index), _) => &self.overrides[index],
        }
    }

    /// Runs the script for `key`: `EVALSHA`, then `EVAL` if the server lost the script.
    async fn run(&self, key: &str, limit: &ScriptLimit) -> Result<Decision, CheckError> {
        let mut connection = self.connection.clone();
        let burst = limit.burst;
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(&self.sha)
            .arg(1)
            .arg(key)
            .arg(limit.interval_us)
            .arg(burst);
        let reply = match evalsha.query_async::<Value>(&mut connection).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(script::GCRA)
                    .arg(1)
                    .arg(key)
                    .arg(limit.interval_us)
                    .arg(burst);
                eval.query_async::<Value>(&mut connection).await?
            }
            other => other?,
        };
        Decision::from_reply(&reply, burst).map_err(|bad| CheckError::BadReply(bad.0))
    }

    async fn ping(&self) -> Result<(), CheckError> {
        let mut connection = self.connection.clone();
        within(
            self.timeout,
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await
        .map_err(|timed_out| CheckError::Timeout(timed_out.0))??;
        Ok(())
    }
}

/// The shared connection's error with the shared settings' error as this limiter's.
fn shared(error: ligand_redis_client::ConnectError) -> ConnectError {
    error.map_config(ConfigError::from)
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("url", &self.url)
            .field("default", &self.default)
            .field("overrides", &self.overrides.len())
            .field("timeout", &self.timeout)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Result<RateLimitResponse, ProviderError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let caller = request
            .chain
            .peer()
            .and_then(Link::principal)
            .ok_or_else(|| ProviderError::Invalid("request has no peer principal".into()))?;
        let rule = self.rule(caller, request.resource, request.action);
        let key = format!("{}{caller}", rule.prefix);
        let decision = within(self.timeout, self.run(&key, &rule.limit))
            .await
            .map_err(|timed_out| CheckError::Timeout(timed_out.0))
            .and_then(|decision| decision)
            .map_err(|error| ProviderError::backend("checking rate limit in redis", error))?;
        let rate = rule.limit.rate;
        let burst = rule.limit.burst;
        let used = burst.saturating_sub(decision.remaining);
        Ok(RateLimitResponse {
            allowed: decision.allowed,
            retry_after: (!decision.allowed).then_some(decision.retry_after),
            current_rps: Some(if decision.allowed {
                rate * f64::from(used) / f64::from(burst)
            } else {
                rate
            }),
            limit_rps: Some(rate),
        })
    }

    /// Checks that Redis still answers: `init` fails if it went away since `connect`.
    async fn start(&self, _: &ProviderContext) -> Result<(), ProviderError> {
        self.ping().await.map_err(|error| {
            ProviderError::backend(format!("pinging redis at {}", self.url), error)
        })
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
