//! The `ligand` subcommand: the handler as a Ligand service, configured as in production.

use std::net::Ipv4Addr;
// `Path` alone is the URL extractor of the prelude.
use std::path::Path as FsPath;

use ligand::prelude::*;
use ligand::testkit::FakeIdentity;
use ligand::{Config, HttpBinding, LogLinesTelemetry};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};

use crate::Result;
use crate::account::{self, Account};
use crate::identity::{self, Role};
use crate::serve::{runtime, terminate_signal};

/// The governor's sustained rate per caller: far above anything one machine can send, so the
/// limiter runs on every request and never denies.
const LIMIT_RPS: f64 = 1e6;

/// The governor's burst, as large as it goes. A GCRA's tolerance is `burst / rate` of
/// *time*: a request that read the clock, was preempted, and reaches the shared state after
/// another thread moved it on by more than that tolerance is denied. At 1e9 rps and a burst of
/// 1e6 the tolerance is 1 ms, which a preempted worker on a loaded two-core machine exceeds
/// (429s appeared); 1e6 rps with this burst tolerates over an hour.
const LIMIT_BURST: u32 = u32::MAX;

/// The benchmarked service.
struct Accounts;

#[ligand::service]
impl Accounts {
    /// `GET /accounts/{id}`: resource `/accounts/{id}`, action `GET` for the policy.
    #[get("/accounts/{id}")]
    async fn account(&self, Path(id): Path<String>) -> Json<Account> {
        Json(account::account(id))
    }
}

/// Serves [`Accounts`] on `127.0.0.1:port` until SIGTERM, the way `#[ligand::main]` runs a
/// service (same log subscriber, same runtime, init → serve → close).
///
/// `#[ligand::main]` itself cannot be used: its lint pass covers the whole crate, and this
/// binary also holds the raw servers and the process orchestration the pass forbids.
pub(crate) fn run(certs: &FsPath, policy: &FsPath, port: u16, cache: bool) -> Result<()> {
    // What `#[ligand::main]` installs: `RUST_LOG` or `info`, formatted to stdout. The audit
    // lines (one per decision) go to stdout too; the orchestrator redirects it to a file.
    ligand::init_logging();
    let config = config(certs, policy, port, cache)?;
    runtime()?.block_on(async move {
        let server = ligand::init(config).await?;
        let mut terminate = terminate_signal()?;
        let closer = server.clone();
        tokio::spawn(async move {
            terminate.recv().await;
            closer.close().await;
        });
        let served = server.serve(Accounts).await;
        server.close().await;
        served?;
        Ok(())
    })
}

/// The service's configuration: the server SVID from the run's files, regorus over `policy`,
/// the governor limiter, the default audit sink (log lines on stdout) and the mTLS binding.
fn config(certs: &FsPath, policy: &FsPath, port: u16, cache: bool) -> Result<Config> {
    // The testkit identity serves a fixed context through the same watch contract the
    // Workload API providers use; here the context comes from the PEM files every other
    // server of the comparison reads too.
    let identity = FakeIdentity::new(identity::load_context(certs, Role::Server)?);
    let policy = RegorusPolicy::new(&policy_config(policy, cache))?;
    let limiter = GovernorLimiter::new(GovernorConfig::new(LIMIT_RPS, LIMIT_BURST))?;
    Ok(Config::builder()
        .identity(identity)
        .policy(policy)
        .rate_limiter(limiter)
        // The audit sink of `ligand.toml`'s default `[audit] format = "log"`.
        .telemetry(LogLinesTelemetry::stdout())
        .binding(HttpBinding::new(format!("{}:{port}", Ipv4Addr::LOCALHOST)))
        .build())
}

/// The policy engine's configuration: the folder at `dir`, with or without the decision cache.
fn policy_config(dir: &FsPath, cache: bool) -> RegorusConfig {
    RegorusConfig::folder(dir).with_cache(cache)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn rbac_dir() -> PathBuf {
        FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../providers/policy-regorus/benches/rbac")
    }

    #[test]
    fn the_policy_allows_the_load_generator_on_the_benchmarked_route() {
        use ligand::provider::EvalRequest;
        use ligand::{Action, Chain, Link, RequestLine, Resource};

        let policy = RegorusPolicy::new(&policy_config(&rbac_dir(), true)).unwrap();
        let peer = Link::workload(identity::CLIENT_ID);
        let request = EvalRequest::new(
            Chain::from(vec![peer.clone()]),
            peer,
            Resource::http_path(account::ROUTE),
            Action::new("GET"),
            RequestLine::new("GET".parse().unwrap(), account::FIXED_PATH),
            identity::SERVER_ID,
        );
        let decision = policy.evaluate_now(&request).unwrap();
        assert!(decision.allowed, "{decision:?}");
        assert!(policy.evaluate_now(&request).unwrap().cached);
        let cold = RegorusPolicy::new(&policy_config(&rbac_dir(), false)).unwrap();
        cold.evaluate_now(&request).unwrap();
        assert!(!cold.evaluate_now(&request).unwrap().cached);
    }
}
