//! `ligand`: the Ligand command-line tool.
//!
//! - `ligand svid fetch`: X.509-SVIDs and bundles (or a JWT-SVID) from any SPIFFE Workload
//!   API, the Ligand identity agent's or SPIRE's, written as `spire-agent api fetch x509
//!   -write` writes them.
//! - `ligand policy test`: the `test_*` rules of a policy folder, `opa test` style, evaluated by
//!   regorus, the engine the service uses.
//! - `ligand policy eval`: one decision for an input file, as the service would decide it.
//! - `ligand config validate`: a `ligand.toml` loaded exactly as a service loads it, every
//!   provider setting checked, nothing served.
//! - `ligand audit verify`: a hash-chained decision log, every link and every signed
//!   checkpoint, reporting the first broken one with its line.
//!
//! Exit status: 0 done (tests passed, configuration valid), 1 failure, 2 bad arguments.

#![forbid(unsafe_code)]

mod audit;
mod policy;
mod svid;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Ligand command-line tool.
#[derive(Debug, Parser)]
#[command(name = "ligand", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SVIDs from a SPIFFE Workload API.
    #[command(subcommand)]
    Svid(SvidCommand),
    /// Rego policies: unit tests and decisions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// `ligand.toml`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The tamper-evident decision log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verifies a hash-chained decision log: every record's link, every checkpoint's
    /// signature and signer; reports the first broken link with its line.
    Verify(audit::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum SvidCommand {
    /// Fetches this workload's X.509-SVIDs and trust bundles (or, with --jwt, a JWT-SVID).
    Fetch(svid::FetchArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Runs the Rego unit tests (rules named test_*) of a policy folder.
    Test(policy::TestArgs),
    /// Decides one input as the service would, and prints the decision as JSON.
    Eval(policy::EvalArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Loads a ligand.toml as a service would and checks every provider setting, without
    /// serving or connecting to any backend.
    Validate {
        /// The settings file (default: LIGAND_CONFIG, else ./ligand.toml, whose absence
        /// means the embedded defaults, as for a service).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Svid(SvidCommand::Fetch(args)) => run_async(svid::fetch(args)),
        Command::Policy(PolicyCommand::Test(args)) => policy::test(&args),
        Command::Policy(PolicyCommand::Eval(args)) => policy::eval(&args),
        Command::Config(ConfigCommand::Validate { file }) => validate(file),
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(&args),
    }
}

/// Runs `task` on a current-thread runtime; an error is printed on one line, exit status 1.
fn run_async(task: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    match runtime.block_on(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// `error` and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    message
}

/// `ligand config validate`: the facade's loader, with this process's `LIGAND_*` overrides.
fn validate(file: Option<PathBuf>) -> ExitCode {
    let (path, required) = match file {
        Some(path) => (path, true),
        None => match std::env::var_os("LIGAND_CONFIG") {
            Some(path) => (PathBuf::from(path), true),
            // As a service: without the file, the embedded defaults.
            None => (PathBuf::from("ligand.toml"), false),
        },
    };
    let env = ligand::config::Environment::from_process();
    // Providers check their settings when built; some need a runtime to be built in.
    run_async(async move {
        ligand::config::validate(&path, required, &env)
            .map_err(|e| format!("invalid configuration: {}", chain(&e)))?;
        if path.exists() {
            println!("ok: {} is valid", path.display());
        } else {
            println!("ok: no {}: the embedded defaults are valid", path.display());
        }
        Ok(())
    })
}
