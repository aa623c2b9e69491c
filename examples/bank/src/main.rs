//! Run with: cargo run -p bank
//!
//! Starts the development identity and the bank's four services on loopback, runs the
//! scripted scenario and prints a summary table (exit 1 when a step failed). With `--serve`,
//! keeps the services up instead and prints `curl` lines that call the gateway as customers,
//! with access tokens of the demo identity provider.

use std::time::Duration;

use bank::scenario::{self, CALLER};
use bank::world::{Bank, Options};
use ligand::BoxError;
use ligand_identity_agent::{DEFAULT_CALLER, DEFAULT_CALLER_TTL, DevDir};

/// The services' SVID lifetime in the scenario: short, so that they rotate (at half of it)
/// while the scenario runs.
const SCENARIO_SVID_TTL: Duration = Duration::from_secs(4);

const USAGE: &str = "Usage: bank [--serve | --help]

Without an option, runs the bank scenario on loopback and prints a summary table (exit 0 when
no step failed). With --serve, starts the four services and keeps them up until ctrl-c,
printing curl lines that call the gateway as the customers alice and eve (access tokens of
the demo identity provider, valid for an hour).

One service alone, on ligand.toml: LIGAND_CONFIG=config/<service>.toml bank-service";

fn main() -> std::process::ExitCode {
    let mut serve = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => serve = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown argument {other:?}\n\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    if std::env::var_os("RUST_LOG").is_some() {
        ligand::init_logging();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if serve {
            serve_until_interrupted().await.map(|()| true)
        } else {
            run_scenario().await
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The scenario, in a temporary folder (development CA, secrets, audit logs).
async fn run_scenario() -> Result<bool, BoxError> {
    let dir = tempfile::tempdir()?;
    let options = Options::under(dir.path(), SCENARIO_SVID_TTL);
    println!("Starting the development identity and four services on loopback…");
    let bank = Bank::start(&options).await?;
    for service in &bank.services {
        println!(
            "  {:<9} {}  https://{}",
            service.name, service.id, service.addr
        );
    }
    println!(
        "  SVIDs live {} s and rotate at half of it; accounts requires WIMSE proofs.\n",
        SCENARIO_SVID_TTL.as_secs()
    );
    let report = scenario::run(&bank, true).await?;
    println!("{}", report.table());
    let ok = report.ok();
    println!(
        "{}",
        if ok {
            "No step failed (skipped steps prove nothing yet)."
        } else {
            "Some steps FAILED."
        }
    );
    Ok(ok)
}

/// Every service up until ctrl-c, on the user's development folder so that the printed
/// credentials are where `curl` lines of other development services point too.
async fn serve_until_interrupted() -> Result<(), BoxError> {
    let dev_dir = std::env::var_os("LIGAND_DEV_DIR")
        .map(Into::into)
        .or_else(DevDir::default_path)
        .ok_or("set LIGAND_DEV_DIR: neither XDG_STATE_HOME nor HOME is set")?;
    let work = tempfile::tempdir()?;
    let mut options = Options::under(work.path(), Duration::from_secs(3600));
    options.dev_dir = dev_dir;
    let bank = Bank::start(&options).await?;
    let credentials = bank
        .dev
        .write_caller(&bank.ca, DEFAULT_CALLER, DEFAULT_CALLER_TTL)?;
    debug_assert_eq!(credentials.spiffe_id.to_string(), CALLER);
    for service in &bank.services {
        println!(
            "{:<9} {}  https://{}",
            service.name, service.id, service.addr
        );
    }
    let gateway = bank.gateway_addr();
    let hour = Duration::from_secs(3600);
    let (alice, eve) = (
        bank.access_token("alice", hour),
        bank.access_token("eve", hour),
    );
    let bundle = credentials.bundle.display();
    let url = format!("https://127.0.0.1:{}", gateway.port());
    let json = "-H 'content-type: application/json'";
    println!(
        "\nCall the gateway as a customer (ctrl-c or SIGTERM stops the bank); the access tokens \
         are the demo identity provider's, valid for an hour:\n\n  \
         ALICE={alice}\n  EVE={eve}\n\n  \
         curl --cacert {bundle} -H \"Authorization: Bearer $ALICE\" {url}/v1/accounts/alice\n  \
         curl --cacert {bundle} -H \"Authorization: Bearer $ALICE\" {json} -d '{{\"from\":\"alice\",\"to\":\"bob\",\"amount\":25}}' {url}/v1/transfers\n  \
         curl --cacert {bundle} -H \"Authorization: Bearer $EVE\" {json} -d '{{\"from\":\"eve\",\"to\":\"bob\",\"amount\":10}}' {url}/v1/transfers\n  \
         curl --cacert {bundle} -H \"Authorization: Bearer $ALICE\" {json} -d '{{\"from\":\"alice\",\"to\":\"mallory\",\"amount\":50}}' {url}/v1/transfers\n  \
         curl --cacert {bundle} -H \"Authorization: Bearer $ALICE\" {url}/v1/rates\n  \
         curl --cacert {bundle} {url}/v1/rates   # no token: 401\n"
    );
    println!(
        "Secrets: {} (edit username to see a renewal). Audit logs: {}",
        bank.secrets_dir.join(bank::DB_SECRET).display(),
        bank.audit_dir.display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    println!("\nShutting down…");
    bank.close().await;
    Ok(())
}
