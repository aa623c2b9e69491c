//! Run with: `scripts/bench-load` (or `scripts/bench-load --quick` for a smoke run).
//!
//! A load harness that answers one question on the machine it runs on: what does binding
//! Ligand into a service cost, next to the two usual ways of serving the same handler over
//! mutual TLS? Three servers answer `GET /accounts/{id}` with the same small JSON body:
//!
//! - **plain**: axum behind tokio-rustls, TLS 1.3 only, client certificates required and
//!   verified by rustls' `WebPkiClientVerifier` against the run's CA. No policy, no audit: the
//!   floor.
//! - **sidecar**: nginx terminating mTLS (`ssl_verify_client on`, TLSv1.3, an access log
//!   line per request) in front of the same axum handler served as plain HTTP on another
//!   loopback port, through a keep-alive upstream pool.
//! - **ligand**: the handler as a `#[ligand::service]`, started like `#[ligand::main]` starts
//!   one: SPIFFE mTLS, the governor rate limiter (with a limit it never reaches, so it runs
//!   on every request without denying), regorus over the RBAC policy of
//!   `providers/policy-regorus/benches/rbac`, and the default audit sink writing one line
//!   per decision to the service's stdout, redirected to a file. Three scenarios:
//!   `cache-on`, `cache-off` (the policy decision cache of `RegorusConfig`; until that field
//!   exists both run the same configuration, so their difference is run-to-run noise) and
//!   `high-cardinality` (cache on, a random `/accounts/<8 digits>` per request), whose
//!   ratios are to `plain-high-cardinality`: plain under the same random paths (oha
//!   generates each URL, which changes the load for any server).
//!
//! Every scenario gets fresh server processes in every round. A round runs plain first, then
//! the others in an order that rotates from round to round; each scenario gets an
//! unmeasured warm-up, a maximum-throughput load (32 keep-alive connections by default) and
//! a fixed-rate load at half of the maximum plain reached in the same round. Every scenario
//! but plain is measured next to its baseline (plain, or plain under the same random paths):
//! fresh baseline servers start with the scenario's, and each load runs as four windows of
//! half its duration, baseline, scenario, scenario, baseline, so that the two see the same
//! machine. On a shared host the machine's speed drifts by tens of percent over minutes, and
//! comparing with a plain run a minute or two earlier in the round carried that drift into
//! the ratios (one run's per-round CPU ratios for the same build ranged from 1.18x to
//! 1.55x). The load generator is `oha`, presenting the client SVID. Per load the harness records requests per
//! second, p50 and p99 latency, server CPU time per request (utime + stime of every server
//! process from `/proc/<pid>/stat`), memory after the run (`VmRSS`, `VmHWM`) and the thread
//! count sampled mid-run (`/proc/<pid>/status`). It prints medians over rounds with ratios to
//! plain, and writes the same as JSON under `target/bench-load/`.
//!
//! Every address is loopback (127.0.0.1); every load is bounded in time; every process the
//! harness starts is stopped by its PID.
//!
//! This lives in `tools/` rather than in a crate's `benches/` because it is not a benchmark of
//! one crate: it drives separate server processes, an external proxy and an external load
//! generator, needs root to install them, and takes minutes. Criterion benchmarks of the
//! framework's parts stay next to those parts.
//!
//! The binary's subcommands are its own moving parts: `run` (the orchestrator) starts
//! `certs`, `plain`, `backend` and `ligand` as child processes of the same binary.

#![forbid(unsafe_code)]

mod account;
mod identity;
mod ligand_server;
mod nginx;
mod oha;
mod process;
mod procfs;
mod report;
mod run;
mod serve;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Every error of the harness: reported to the user and ends the process.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The harness's result type.
pub(crate) type Result<T, E = BoxError> = std::result::Result<T, E>;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "ligand-bench-load",
    about = "Plain mTLS vs an nginx mTLS sidecar vs a Ligand service, side by side"
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands: `run` orchestrates, the others are the processes it starts.
#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every scenario and prints the comparison (what `scripts/bench-load` calls).
    Run(run::RunArgs),
    /// Writes a CA and the server and client SVIDs as PEM files into a directory.
    Certs {
        /// The directory (created when missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serves the handler over mTLS with axum and rustls alone.
    Plain {
        /// The directory `certs` wrote.
        #[arg(long)]
        certs: PathBuf,
        /// The loopback port to listen on.
        #[arg(long)]
        port: u16,
    },
    /// Serves the handler as plain HTTP, for nginx to proxy to.
    Backend {
        /// The loopback port to listen on.
        #[arg(long)]
        port: u16,
    },
    /// Serves the handler as a Ligand service.
    Ligand {
        /// The directory `certs` wrote.
        #[arg(long)]
        certs: PathBuf,
        /// The policy folder (Rego modules and data documents).
        #[arg(long)]
        policy: PathBuf,
        /// The loopback port to listen on.
        #[arg(long)]
        port: u16,
        /// Whether the policy engine caches decisions.
        #[arg(long, value_enum, default_value_t = Switch::On)]
        cache: Switch,
    },
}

/// An on/off command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Certs { dir } => identity::write_certs(&dir),
        Command::Plain { certs, port } => serve::plain(&certs, port),
        Command::Backend { port } => serve::backend(port),
        Command::Ligand {
            certs,
            policy,
            port,
            cache,
        } => ligand_server::run(&certs, &policy, port, cache == Switch::On),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ligand-bench-load: {error}");
            ExitCode::FAILURE
        }
    }
}
