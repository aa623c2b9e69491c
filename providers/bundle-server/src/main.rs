//! `ligand-bundle-server`: serves signed per-service OPA policy bundles over mTLS.
//!
//! Run with: `cargo run -p ligand-bundle-server -- --help`

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ligand_bundle_server::{BundleServer, BundleStore, Scoping, WatchOptions, watch};
use ligand_opa_bundle::SigningKey;
use ligand_runtime::tls::{IdentityState, peer_spiffe_id};
use ligand_runtime::{TrustBundles, X509Context, X509Svid};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::{SpiffeId, TrustDomain};

/// Serves one signed OPA policy bundle per service from a policy repository, over mTLS.
///
/// Layout of the repository: `services/<name>/**` (`*.rego`, `data.json`) is the bundle
/// `<name>`; `lib/**` is added to every bundle. A caller gets only the bundle its SPIFFE ID
/// maps to: an explicit `--map`, else `<name>` for exactly `spiffe://<own domain>/service/<name>`
/// (any other ID needs a `--map`). Protocol: `GET /bundles/<name>` with ETag, `If-None-Match` and long polling
/// through `Prefer: wait=N`. Audit lines go to the `ligand::audit` target (set `RUST_LOG`).
#[derive(Debug, Parser)]
#[command(name = "ligand-bundle-server", version, about, long_about)]
struct Args {
    /// The policy repository folder (holding `services/` and optionally `lib/`).
    #[arg(long, value_name = "PATH")]
    policy_repo: PathBuf,

    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,

    /// The PEM private key that signs bundles (PKCS#8 for ES256; PKCS#1 or PKCS#8 for RS256).
    #[arg(long, value_name = "PATH")]
    signing_key: PathBuf,

    /// The signing algorithm.
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    signing_alg: Alg,

    /// The key ID written in each signature (`kid`); verifiers configure the public key under
    /// this ID.
    #[arg(long, value_name = "ID", default_value = "ligand-bundle")]
    signing_key_id: String,

    /// The signature scope, if verifiers require one.
    #[arg(long, value_name = "SCOPE")]
    signing_scope: Option<String>,

    /// The server's X.509-SVID certificate chain (PEM, leaf first).
    #[arg(long, value_name = "PATH")]
    svid_cert: PathBuf,

    /// The SVID's private key (PEM).
    #[arg(long, value_name = "PATH")]
    svid_key: PathBuf,

    /// The trust bundle (PEM roots) of the server's own trust domain.
    #[arg(long = "bundle", visible_alias = "trust-bundle", value_name = "PATH")]
    trust_bundle: PathBuf,

    /// A federated trust domain's bundle, as `DOMAIN=PATH`; repeatable. Its workloads get a
    /// bundle only through `--map`.
    #[arg(long, value_name = "DOMAIN=PATH")]
    federated_bundle: Vec<String>,

    /// Maps a caller to a bundle explicitly, as `SPIFFE_ID=NAME`; repeatable.
    #[arg(long, value_name = "SPIFFE_ID=NAME")]
    map: Vec<String>,

    /// The longest long-poll wait granted, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    max_wait: u64,

    /// The quiet period after a repository change before rebuilding, in milliseconds.
    #[arg(long, value_name = "MILLIS", default_value_t = 250)]
    debounce_ms: u64,

    /// The period of the fallback rescan of the repository, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    rescan_interval: u64,
}

/// A bundle signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Alg {
    /// ECDSA P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[value(name = "RS256")]
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum CliError {
    /// A file could not be read.
    #[error("cannot read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path:?}: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// An argument is malformed.
    #[error("invalid {flag}: {reason}")]
    Arg { flag: &'static str, reason: String },
    /// The signing key is unusable.
    #[error("signing key rejected")]
    Key(#[source] ligand_opa_bundle::SignatureError),
    /// The SVID is unusable.
    #[error("server identity rejected")]
    Identity(#[source] ligand_runtime::InitError),
    /// The repository is unreadable.
    #[error(transparent)]
    Repo(#[from] ligand_bundle_server::RepoError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] ligand_bundle_server::ServerError),
    /// The async runtime could not start.
    #[error("async runtime could not start")]
    Runtime(#[source] std::io::Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("ligand-bundle-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), CliError> {
    let identity = Arc::new(load_identity(&args)?);
    let scoping = load_scoping(&args, identity.spiffe_id().trust_domain().clone())?;
    let key_pem = read(&args.signing_key)?;
    let key = SigningKey::from_pem(&args.signing_key_id, args.signing_alg.name(), &key_pem)
        .map_err(CliError::Key)?;
    let store = Arc::new(BundleStore::open(
        &args.policy_repo,
        key,
        args.signing_scope.clone(),
    )?);
    tracing::info!(bundles = ?store.names(), repo = ?args.policy_repo, "policy repository loaded");
    let _watch = watch(
        store.clone(),
        WatchOptions {
            debounce: Duration::from_millis(args.debounce_ms),
            rescan_interval: Duration::from_secs(args.rescan_interval.max(1)),
        },
    );
    let server = BundleServer::bind(args.listen, &identity, store, scoping)
        .await?
        .max_wait(Duration::from_secs(args.max_wait));
    tracing::info!(addr = ?server.local_addr().ok(), spiffe_id = %identity.spiffe_id(), "bundle server listening");
    let handle = server.spawn();
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CliError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn load_identity(args: &Args) -> Result<IdentityState, CliError> {
    let cert_chain = certificates(&args.svid_cert)?;
    let key_pem = read(&args.svid_key)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CliError::Pem {
        path: args.svid_key.clone(),
        reason: e.to_string(),
    })?;
    let spiffe_id = cert_chain
        .first()
        .map(peer_spiffe_id)
        .transpose()
        .map_err(|e| CliError::Pem {
            path: args.svid_cert.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| CliError::Pem {
            path: args.svid_cert.clone(),
            reason: "no certificate".into(),
        })?;
    let mut bundles = TrustBundles::new();
    bundles.insert(
        spiffe_id.trust_domain().clone(),
        certificates(&args.trust_bundle)?,
    );
    for entry in &args.federated_bundle {
        let (domain, path) = split_pair(entry, "--federated-bundle")?;
        let domain = TrustDomain::new(domain).map_err(|e| CliError::Arg {
            flag: "--federated-bundle",
            reason: e.to_string(),
        })?;
        bundles.insert(domain, certificates(Path::new(path))?);
    }
    let context = X509Context {
        svids: vec![X509Svid {
            spiffe_id,
            cert_chain,
            private_key,
        }],
        bundles,
    };
    IdentityState::new(&context, None).map_err(CliError::Identity)
}

fn load_scoping(args: &Args, own: TrustDomain) -> Result<Scoping, CliError> {
    let mut scoping = Scoping::new(own);
    for entry in &args.map {
        let (id, name) = split_pair(entry, "--map")?;
        let id = SpiffeId::new(id).map_err(|e| CliError::Arg {
            flag: "--map",
            reason: e.to_string(),
        })?;
        if !ligand_bundle_server::is_valid_bundle_name(name) {
            return Err(CliError::Arg {
                flag: "--map",
                reason: format!("{name:?} is not a valid bundle name"),
            });
        }
        scoping = scoping.map(id, name);
    }
    Ok(scoping)
}

/// Splits `KEY=VALUE` at the first `=` (SPIFFE IDs and domains hold none; paths may).
fn split_pair<'a>(entry: &'a str, flag: &'static str) -> Result<(&'a str, &'a str), CliError> {
    entry
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| CliError::Arg {
            flag,
            reason: format!("{entry:?} is not KEY=VALUE"),
        })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
