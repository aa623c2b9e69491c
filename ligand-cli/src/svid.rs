//! `ligand svid fetch`: SVIDs and bundles from any SPIFFE Workload API.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use ligand_identity_spiffe::SpiffeIdentity;
use ligand_runtime::WorkloadIdentity;

/// `ligand svid fetch` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct FetchArgs {
    /// The Workload API endpoint, such as unix:///run/spire/agent.sock (default:
    /// SPIFFE_ENDPOINT_SOCKET).
    #[arg(long)]
    socket: Option<String>,
    /// Writes svid.N.pem, svid.N.key (0600) and bundle.N.pem into this folder.
    #[arg(long, required_unless_present = "jwt")]
    write: Option<PathBuf>,
    /// Fetches a JWT-SVID instead, printed on stdout.
    #[arg(long, requires = "audience", conflicts_with = "write")]
    jwt: bool,
    /// The JWT-SVID's audience (repeatable).
    #[arg(long)]
    audience: Vec<String>,
}

pub(crate) async fn fetch(args: FetchArgs) -> Result<(), String> {
    let endpoint = match args.socket {
        Some(socket) => socket,
        None => std::env::var("SPIFFE_ENDPOINT_SOCKET").map_err(|_| {
            "no Workload API: pass --socket unix:///path or set SPIFFE_ENDPOINT_SOCKET".to_owned()
        })?,
    };
    let identity = SpiffeIdentity::new(endpoint.clone())
        .map_err(|e| format!("--socket {endpoint}: {}", crate::chain(&e)))?;
    if args.jwt {
        let audience: Vec<&str> = args.audience.iter().map(String::as_str).collect();
        let token = identity
            .fetch_jwt_svid(&audience, None)
            .await
            .map_err(|e| crate::chain(&e))?;
        println!("{token}");
        return Ok(());
    }
    let Some(dir) = args.write else {
        return Err("--write DIR is required without --jwt".into());
    };
    let context = identity
        .fetch_x509_context()
        .await
        .map_err(|e| crate::chain(&e))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (index, svid) in context.svids.iter().enumerate() {
        let chain: String = svid
            .cert_chain
            .iter()
            .map(|der| pem("CERTIFICATE", der))
            .collect();
        write(
            &dir.join(format!("svid.{index}.pem")),
            chain.as_bytes(),
            0o644,
        )?;
        write(
            &dir.join(format!("svid.{index}.key")),
            pem("PRIVATE KEY", svid.private_key.secret_der()).as_bytes(),
            0o600,
        )?;
        let roots = context
            .bundles
            .get(svid.spiffe_id.trust_domain())
            .ok_or_else(|| {
                format!(
                    "the Workload API sent no bundle for {}",
                    svid.spiffe_id.trust_domain()
                )
            })?;
        let bundle: String = roots.iter().map(|der| pem("CERTIFICATE", der)).collect();
        write(
            &dir.join(format!("bundle.{index}.pem")),
            bundle.as_bytes(),
            0o644,
        )?;
        println!(
            "wrote the X.509-SVID of {} to {}",
            svid.spiffe_id,
            dir.join(format!("svid.{index}.pem")).display()
        );
    }
    Ok(())
}

/// One PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes `path` with `mode`, replacing it; a key is never readable by others, not even
/// between creation and the write.
fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(shown)?;
    file.write_all(contents).map_err(shown)?;
    file.sync_all().map_err(shown)
}
