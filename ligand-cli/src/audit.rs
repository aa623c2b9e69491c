//! `ligand audit verify`: a hash-chained decision log read back link by link.

use std::path::PathBuf;
use std::process::ExitCode;

use ligand_runtime::audit::{VerifyOptions, verify_file};
use ligand_runtime::{SpiffeId, TrustBundles};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// `ligand audit verify` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The service that wrote the log: every checkpoint must be signed by this SPIFFE ID.
    #[arg(long)]
    service: String,
    /// The trust bundle of the service's trust domain (PEM certificates, such as the
    /// bundle.0.pem that `ligand svid fetch` writes, or the development CA's bundle.pem).
    #[arg(long)]
    bundle: PathBuf,
    /// Accepts records after the last checkpoint (the log of a service still running, or
    /// stopped without a clean shutdown); by default the log must end with the final
    /// checkpoint of a clean shutdown, so that a removed tail is detected.
    #[arg(long)]
    allow_unsealed: bool,
    /// The audit log (JSON lines written with `[audit] chain`).
    log: PathBuf,
}

pub(crate) fn verify(args: &VerifyArgs) -> ExitCode {
    match run(args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => crate::fail(&message),
    }
}

fn run(args: &VerifyArgs) -> Result<String, String> {
    let service = SpiffeId::new(&args.service).map_err(|e| format!("--service: {e}"))?;
    let pem = std::fs::read(&args.bundle)
        .map_err(|e| format!("--bundle {}: {e}", args.bundle.display()))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--bundle {}: {e}", args.bundle.display()))?;
    if roots.is_empty() {
        return Err(format!(
            "--bundle {}: no PEM certificate in it",
            args.bundle.display()
        ));
    }
    let bundles = TrustBundles::new().with(service.trust_domain().clone(), roots);
    let options = VerifyOptions::default().allow_unsealed(args.allow_unsealed);
    let report = verify_file(&args.log, &bundles, &service, &options)
        .map_err(|e| format!("{}: {}", args.log.display(), crate::chain(&e)))?;
    let mut summary = format!(
        "ok: {}: {} records, {} signed checkpoints, chain intact",
        args.log.display(),
        report.records,
        report.checkpoints
    );
    if report.unsealed > 0 {
        summary.push_str(&format!(
            "; {} records after the last checkpoint are covered by the hash chain only",
            report.unsealed
        ));
    }
    Ok(summary)
}
