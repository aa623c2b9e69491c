//! `ligand-agent`: the Ligand development identity agent (SPIFFE Workload API server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ligand_identity_agent::{Agent, AgentConfig};

/// Serves the SPIFFE Workload API on a unix socket, issuing X.509-SVIDs and JWT-SVIDs to
/// callers attested by the kernel (SO_PEERCRED) and matched against registration entries,
/// plus an OIDC discovery document and JWKS over HTTP.
#[derive(Debug, Parser)]
#[command(name = "ligand-agent", version)]
struct Args {
    /// The TOML configuration file (trust_domain, [socket], state_dir, [oidc], [[entry]]).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Overrides `socket.path`: where the Workload API listens.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Overrides `socket.mode`, in octal (such as 700 or 770).
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    socket_mode: Option<u32>,
    /// Overrides `oidc.listen`: the address of the discovery document and JWKS.
    #[arg(long, value_name = "ADDR")]
    oidc_listen: Option<SocketAddr>,
    /// Overrides `state_dir`: where the CA key and certificate persist.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log filter, in `tracing` env-filter syntax (RUST_LOG also works).
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log: String,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("`{s}` is not an octal mode: {e}"))?;
    if mode > 0o777 {
        return Err(format!("`{s}` is not a permission mode (000..=777)"));
    }
    Ok(mode)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let mut config = match AgentConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ligand-agent: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = args.socket {
        config.socket.path = path;
    }
    if let Some(mode) = args.socket_mode {
        config.socket.mode = mode;
    }
    if let Some(listen) = args.oidc_listen {
        config.oidc.listen = listen;
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = Some(dir);
    }
    let agent = match Agent::start(config).await {
        Ok(agent) => agent,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("ligand-agent: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::error!(%error, "cannot wait for a signal; shutting down");
    }
    tracing::info!("shutting down");
    agent.shutdown().await;
    ExitCode::SUCCESS
}
