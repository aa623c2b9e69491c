//! Shared fixtures: the Ligand identity agent as the Workload API, on a socket in a
//! temporary directory.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures")]

use std::path::Path;
use std::time::Duration;

use ligand_identity_agent::{Agent, AgentConfig, RegistrationEntry, RunningAgent, Selector};
use ligand_runtime::{SpiffeId, TrustDomain};

pub fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// An entry for `id` matching this process by uid and executable.
pub fn entry(id: &str, x509_ttl: Duration) -> RegistrationEntry {
    RegistrationEntry::new(
        SpiffeId::new(id).unwrap(),
        vec![
            Selector::Uid(uid()),
            Selector::Path(std::env::current_exe().unwrap()),
        ],
    )
    .x509_ttl(x509_ttl)
}

/// Starts an agent on `dir/agent/api.sock`, its CA persisted in `dir/state`.
pub async fn agent(dir: &Path, entries: Vec<RegistrationEntry>) -> RunningAgent {
    let mut config = AgentConfig::new(
        TrustDomain::new("example.org").unwrap(),
        dir.join("agent").join("api.sock"),
    );
    config.state_dir = Some(dir.join("state"));
    config.oidc.listen = "127.0.0.1:0".parse().unwrap();
    for e in entries {
        config = config.entry(e);
    }
    Agent::start(config).await.expect("agent starts")
}
