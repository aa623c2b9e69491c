//! The command line of a `#[ligand::main]` binary: `--help`, `--validate`, or nothing to serve.
//!
//! A service takes no other arguments: its settings come from `ligand.toml` and `LIGAND_*`
//! environment variables, so that the same binary moves from a laptop to production by
//! configuration alone.

use std::ffi::OsString;
use std::future::Future;

use ligand_runtime::__private::Allowance;
use ligand_runtime::{BoxError, Config};

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// No argument: initialize and serve.
    Serve,
    /// `-h` or `--help`.
    Help,
    /// `--validate`.
    Validate,
    /// Anything else: the offending argument.
    Unknown(String),
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Command {
    let mut command = Command::Serve;
    for arg in args {
        let next = match arg.to_str() {
            Some("-h" | "--help") => Command::Help,
            Some("--validate") => Command::Validate,
            _ => return Command::Unknown(arg.to_string_lossy().into_owned()),
        };
        // `--help` wins over `--validate`, in whichever order they come.
        if command != Command::Help {
            command = next;
        }
    }
    command
}

fn usage(program: &str) -> String {
    format!(
        "{program}: a Ligand service. Every request is authenticated (mTLS 1.3 with SPIFFE \
         identities), rate limited and authorized by policy.

Usage: {program} [--validate | --help]

Options:
      --validate  Load and check the configuration without serving: the settings file, every
                  provider setting and the policy (compiled). Binds no port. Exits 0 with one
                  line if it is valid, 1 with the error otherwise.
  -h, --help      Print this help and exit.

With no option, the service initializes (fail-closed) and serves until SIGTERM or ctrl-c.

Settings (with the default loader, ligand::config): ./ligand.toml, or the file LIGAND_CONFIG
names; without the file, embedded development defaults (development identity from the CA in
the user's development folder, regorus over ./policy/, governor limiter, ./secrets/ files).

Environment:
  LIGAND_CONFIG           the settings file (default ./ligand.toml, then required)
  LIGAND_LISTEN           listen address (default 127.0.0.1:8443)
  LIGAND_SPIFFE_ID        this service's SPIFFE ID
  SPIFFE_ENDPOINT_SOCKET  Workload API socket (SPIRE or ligand-agent); unset: development identity
  LIGAND_ADMIN_LISTEN     health and metrics listener (default 127.0.0.1:9464)
  LIGAND_DEV_DIR          development folder (default $XDG_STATE_HOME/ligand/dev)
  LIGAND_DEV_CALLER       development caller whose client credentials are written (default dev)
  LIGAND_REDIS_URL        the Redis rate limiter's URL ([rate_limit] kind = \"redis\")
  LIGAND_REPLAY_REDIS_URL the Redis WPT replay cache's URL ([wimse] replay = \"redis\")
  LIGAND_OPENBAO_ADDR     OpenBao's address ([secrets] kind = \"openbao\")
  LIGAND_OPENBAO_TOKEN    the OpenBao token (else BAO_TOKEN, VAULT_TOKEN)
  LIGAND_BUNDLE_URL       the bundle server's URL ([bundle_fetcher])
  RUST_LOG                log filter (default info); NO_COLOR turns colors off
"
    )
}

/// The program's name as invoked, for the usage text.
fn program() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "service".to_owned())
}

/// Runs the command line: serves through the runtime, or answers `--help` and `--validate`
/// and exits. Exit codes: 0 done, 1 invalid configuration, 2 bad arguments.
pub(crate) fn run<C, CF, M, MF, E>(
    config: C,
    user_main: M,
    allowances: &'static [Allowance],
) -> Result<(), crate::Error>
where
    C: FnOnce() -> CF,
    CF: Future<Output = Result<Config, E>>,
    E: Into<BoxError>,
    M: FnOnce(crate::Server) -> MF,
    MF: Future<Output = Result<(), crate::Error>>,
{
    match parse(std::env::args_os().skip(1)) {
        Command::Serve => {
            let result =
                ligand_runtime::__private::run_main_with_allowances(config, user_main, allowances);
            // Telemetry closes last, after the server and its providers: the spans still
            // queued are flushed, waiting a bounded time for the collector.
            #[cfg(feature = "otel")]
            crate::shutdown_telemetry(std::time::Duration::from_secs(5));
            result
        }
        Command::Help => {
            print!("{}", usage(&program()));
            std::process::exit(0)
        }
        Command::Unknown(arg) => {
            eprintln!("error: unknown argument {arg:?}\n\n{}", usage(&program()));
            std::process::exit(2)
        }
        Command::Validate => std::process::exit(validate(config)),
    }
}

/// Builds the configuration as serving would, short of `init`: nothing listens and no
/// provider connects. Returns the exit code.
fn validate<C, CF, E>(config: C) -> i32
where
    C: FnOnce() -> CF,
    CF: Future<Output = Result<Config, E>>,
    E: Into<BoxError>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(config()) {
        Ok(_) => {
            println!("ok: the configuration is valid");
            0
        }
        Err(error) => {
            let error: BoxError = error.into();
            let mut message = format!("error: invalid configuration: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, parse};

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn flags() {
        assert_eq!(parse(args(&[])), Command::Serve);
        assert_eq!(parse(args(&["--help"])), Command::Help);
        assert_eq!(parse(args(&["-h"])), Command::Help);
        assert_eq!(parse(args(&["--validate"])), Command::Validate);
        assert_eq!(parse(args(&["--validate", "--help"])), Command::Help);
        assert_eq!(parse(args(&["--help", "--validate"])), Command::Help);
        assert_eq!(
            parse(args(&["--validate", "--port"])),
            Command::Unknown("--port".into())
        );
        assert_eq!(parse(args(&["serve"])), Command::Unknown("serve".into()));
    }
}
