//! The run's identities: one CA and two X.509-SVIDs as PEM files, read back by every server,
//! by nginx and by the load generator.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use ligand::provider::{TrustBundles, X509Context, X509Svid};
use ligand::testkit::{SvidSpec, TestCa};
use ligand::{SpiffeId, TrustDomain};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Result;

/// The trust domain of every identity in the run.
pub(crate) const TRUST_DOMAIN: &str = "bank.example";

/// The SPIFFE ID every server presents.
pub(crate) const SERVER_ID: &str = "spiffe://bank.example/service/accounts";

/// The load generator's SPIFFE ID. The RBAC data gives it role `reader` (`accounts.read`, the
/// permission of `GET /accounts/{id}`) and lists it among the accounts service's callers, so
/// the policy allows the benchmarked request with the bench data unchanged.
pub(crate) const CLIENT_ID: &str = "spiffe://bank.example/service/reporting";

/// How long the SVIDs stay valid: longer than any run, within the test CA's own day.
const SVID_TTL: Duration = Duration::from_secs(12 * 3600);

/// The files of a `certs` directory.
#[derive(Debug, Clone)]
pub(crate) struct CertPaths {
    /// The directory.
    dir: PathBuf,
}

impl CertPaths {
    /// The files in `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The CA certificate: the trust bundle.
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server SVID's certificate chain.
    pub(crate) fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server SVID's private key (PKCS#8).
    pub(crate) fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The client SVID's certificate chain.
    pub(crate) fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client SVID's private key (PKCS#8).
    pub(crate) fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

/// Which SVID to load.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// The servers' SVID.
    Server,
    /// The load generator's SVID.
    Client,
}

/// The `certs` step: a fresh CA for [`TRUST_DOMAIN`] and the server and client SVIDs, written
/// into `dir` (keys readable by the owner only).
///
/// The CA is the testkit's: real ECDSA P-256 certificates shaped as the SPIFFE X.509-SVID
/// specification requires (one URI SAN, serverAuth and clientAuth), which rustls, the Ligand
/// verifier and OpenSSL all accept. No DNS SAN: nothing verifies the server by name (the
/// load generator presents its certificate but skips server verification).
pub(crate) fn write_certs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let paths = CertPaths::new(dir);
    let ca = TestCa::new(TRUST_DOMAIN);
    fs::write(paths.ca(), pem("CERTIFICATE", &ca.root()))?;
    for (id, cert, key) in [
        (SERVER_ID, paths.server_cert(), paths.server_key()),
        (CLIENT_ID, paths.client_cert(), paths.client_key()),
    ] {
        let svid = ca.mint(SvidSpec::new(id).ttl(SVID_TTL));
        let chain: String = svid
            .cert_chain
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect();
        fs::write(cert, chain)?;
        write_private(
            &key,
            pem("PRIVATE KEY", svid.private_key.secret_der()).as_bytes(),
        )?;
    }
    Ok(())
}

/// The identity context of `role` read back from the files in `dir`: its SVID and the CA as
/// the bundle of [`TRUST_DOMAIN`].
pub(crate) fn load_context(dir: &Path, role: Role) -> Result<X509Context> {
    let paths = CertPaths::new(dir);
    let (id, cert, key) = match role {
        Role::Server => (SERVER_ID, paths.server_cert(), paths.server_key()),
        Role::Client => (CLIENT_ID, paths.client_cert(), paths.client_key()),
    };
    let cert_chain = read_chain(&cert)?;
    let private_key =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let root = CertificateDer::from_pem_file(paths.ca())
        .map_err(|e| format!("{}: {e}", paths.ca().display()))?;
    Ok(X509Context {
        svids: vec![X509Svid {
            spiffe_id: SpiffeId::new(id)?,
            cert_chain,
            private_key,
        }],
        bundles: TrustBundles::new().with(TrustDomain::new(TRUST_DOMAIN)?, vec![root]),
    })
}

/// Every certificate in the PEM file at `path`, in order.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", path.display()).into());
    }
    Ok(chain)
}

/// `der` as a PEM block labelled `label`, in 64-column lines as RFC 7468 writes them.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push_str(&format!("\n-----END {label}-----\n"));
    out
}

/// Writes `contents` to a new file at `path` that only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    // Replacing rather than truncating: an existing file would keep its old permissions.
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn pem_round_trips_and_wraps_at_64_columns() {
        let der: Vec<u8> = (0..=255).collect();
        let text = pem("CERTIFICATE", &der);
        assert!(text.lines().all(|line| line.len() <= 64));
        let back = CertificateDer::from_pem_slice(text.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }

    #[test]
    fn written_certs_load_back_as_svids_of_the_trust_domain() {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path()).unwrap();
        let server = load_context(dir.path(), Role::Server).unwrap();
        assert_eq!(server.svids[0].spiffe_id.to_string(), SERVER_ID);
        let client = load_context(dir.path(), Role::Client).unwrap();
        assert_eq!(client.svids[0].spiffe_id.to_string(), CLIENT_ID);
        let domain = TrustDomain::new(TRUST_DOMAIN).unwrap();
        assert_eq!(client.bundles.get(&domain).unwrap().len(), 1);
        let mode = fs::metadata(CertPaths::new(dir.path()).client_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
