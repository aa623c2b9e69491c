//! The development folder shared by the services of one user on one machine: a persisted CA
//! per trust domain, so that services started without any configuration trust each other, and
//! client credentials for callers outside any service (curl, a browser, a script).
//!
//! ```text
//! <dev dir>/                      0700, default $XDG_STATE_HOME/ligand/dev
//!   <trust domain>/               0700
//!     ca.pem  ca.key.pem (0600)   the development CA of the trust domain
//!     callers/<name>/             bundle.pem, client.pem, client.key (0600)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ligand_runtime::{SpiffeId, TrustDomain};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{self, CaError, LocalCa};

/// The lifetime of a caller's client certificate: a working day.
pub const DEFAULT_CALLER_TTL: Duration = Duration::from_secs(24 * 3600);
/// The default caller name: `spiffe://<trust domain>/user/dev`.
pub const DEFAULT_CALLER: &str = "dev";

/// The per-user development folder. See the [module documentation](self) for its layout.
#[derive(Debug, Clone)]
pub struct DevDir {
    root: PathBuf,
}

impl DevDir {
    /// The folder at `root`, created 0700 on first use.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default folder: `$XDG_STATE_HOME/ligand/dev`, or `~/.local/state/ligand/dev`
    /// when `XDG_STATE_HOME` is unset or not absolute (as the XDG specification says). `None`
    /// when neither that nor `HOME` is set.
    pub fn default_path() -> Option<PathBuf> {
        let absolute =
            |value: std::ffi::OsString| Some(PathBuf::from(value)).filter(|p| p.is_absolute());
        let state = std::env::var_os("XDG_STATE_HOME")
            .and_then(absolute)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(absolute)
                    .map(|home| home.join(".local/state"))
            })?;
        Some(state.join("ligand").join("dev"))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The folder of one trust domain.
    fn domain_dir(&self, domain: &TrustDomain) -> PathBuf {
        // A trust domain name is lowercase letters, digits, '.', '-' and '_': a safe file name.
        self.root.join(domain.to_string())
    }

    /// The development CA of `domain`, created on first use and loaded by every later call,
    /// from any process of the user. See [`LocalCa::load_or_create`] for the checks.
    pub fn ca(&self, domain: &TrustDomain) -> Result<LocalCa, CaError> {
        ca::create_private_dir(&self.root)?;
        LocalCa::load_or_create(domain.clone(), &self.domain_dir(domain))
    }

    /// Writes the credentials of the caller `name` (`spiffe://<trust domain>/user/<name>`):
    /// the CA bundle, a client certificate valid for `ttl` and its key (0600). Certificates
    /// still valid for more than half of `ttl`, issued by `ca`, are kept; otherwise new ones
    /// replace them. `name` is letters, digits, '.', '-' and '_'.
    pub fn write_caller(
        &self,
        ca: &LocalCa,
        name: &str,
        ttl: Duration,
    ) -> Result<CallerCredentials, CaError> {
        let valid_name = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        let spiffe_id = SpiffeId::new(format!("{}/user/{name}", ca.trust_domain().id_string()));
        let spiffe_id = match spiffe_id {
            Ok(id) if valid_name => id,
            _ => {
                return Err(CaError::NotIssuable {
                    spiffe_id: format!("{}/user/{name}", ca.trust_domain().id_string()),
                    reason: "a caller name is letters, digits, '.', '-' and '_'",
                });
            }
        };
        let callers = self.domain_dir(ca.trust_domain()).join("callers");
        ca::create_private_dir(&callers)?;
        let dir = callers.join(name);
        ca::create_private_dir(&dir)?;
        let credentials = CallerCredentials {
            bundle: dir.join("bundle.pem"),
            cert: dir.join("client.pem"),
            key: dir.join("client.key"),
            spiffe_id,
            dir,
        };
        // Two services starting at once must not pair one's certificate with the other's key.
        let _lock = ca::lock_dir(&credentials.dir)?;
        if credentials.reusable(ca, ttl / 2) {
            return Ok(credentials);
        }
        let issued = ca.issue(&credentials.spiffe_id, ttl)?;
        let cert_pem = pem("CERTIFICATE", &issued.svid.cert_chain[0]);
        let key_pem = match &issued.svid.private_key {
            PrivateKeyDer::Pkcs8(key) => pem("PRIVATE KEY", key.secret_pkcs8_der()),
            // Unreachable: the CA issues PKCS#8 keys; refuse rather than write a wrong label.
            _ => {
                return Err(CaError::Invalid {
                    path: credentials.key.clone(),
                    reason: "the issued key is not PKCS#8".into(),
                });
            }
        };
        ca::replace(&credentials.bundle, ca.root_pem().as_bytes(), 0o644)?;
        ca::replace(&credentials.key, key_pem.as_bytes(), 0o600)?;
        ca::replace(&credentials.cert, cert_pem.as_bytes(), 0o600)?;
        tracing::info!(
            spiffe_id = %credentials.spiffe_id,
            dir = %credentials.dir.display(),
            "issued development client credentials"
        );
        Ok(credentials)
    }
}

/// Files a caller outside the process presents to a development service.
#[derive(Debug, Clone)]
pub struct CallerCredentials {
    /// The folder holding the three files.
    pub dir: PathBuf,
    /// The trust bundle (the development CA certificate), to verify the service.
    pub bundle: PathBuf,
    /// The client X.509-SVID.
    pub cert: PathBuf,
    /// Its private key (0600).
    pub key: PathBuf,
    /// The caller's SPIFFE ID.
    pub spiffe_id: SpiffeId,
}

impl CallerCredentials {
    /// A `curl` command line calling `path` (such as `/hello/world`) on a development
    /// service listening on `addr` with these credentials.
    ///
    /// The development service certificate names `localhost`, `127.0.0.1` and `::1` besides
    /// its SPIFFE ID (see [`LocalCa::issue_for_loopback`]): a loopback or unspecified listen
    /// address is dialed through `127.0.0.1` (or `[::1]`); any other address through
    /// `localhost` with `--resolve`, so that curl checks the certificate against a name it
    /// carries without any `--insecure`.
    pub fn curl_command(&self, addr: SocketAddr, path: &str) -> String {
        let port = addr.port();
        let (resolve, host) = match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => {
                (String::new(), format!("127.0.0.1:{port}"))
            }
            IpAddr::V6(ip) if ip.is_loopback() || ip.is_unspecified() => {
                (String::new(), format!("[::1]:{port}"))
            }
            ip => {
                let ip = match ip {
                    IpAddr::V6(v6) => format!("[{v6}]"),
                    IpAddr::V4(v4) => v4.to_string(),
                };
                (
                    format!(" --resolve localhost:{port}:{ip}"),
                    format!("localhost:{port}"),
                )
            }
        };
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        format!(
            "curl --cacert {} --cert {} --key {}{resolve} https://{host}{path}",
            shell_quote(&self.bundle),
            shell_quote(&self.cert),
            shell_quote(&self.key),
        )
    }

    /// Whether the files on disk are a whole set issued by `ca` for this caller, private, and
    /// valid for longer than `lead`.
    fn reusable(&self, ca: &LocalCa, lead: Duration) -> bool {
        let (Ok(bundle), Ok(cert_pem), Ok(key_pem)) = (
            ca::read_private(&self.bundle, false),
            ca::read_private(&self.cert, true),
            ca::read_private(&self.key, true),
        ) else {
            return false;
        };
        if bundle != ca.root_pem() {
            return false;
        }
        let Ok(cert) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
            return false;
        };
        let Ok(key) = rcgen::KeyPair::from_pem(&key_pem) else {
            return false;
        };
        let bundles = ligand_runtime::TrustBundles::new()
            .with(ca.trust_domain().clone(), vec![ca.root().clone()]);
        let later = SystemTime::now() + lead;
        let Ok(since_epoch) = later.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let at = rustls_pki_types::UnixTime::since_unix_epoch(since_epoch);
        let verified = ligand_runtime::tls::verify_svid(&cert, &[], &bundles, at);
        let matches_key = x509_parser::parse_x509_certificate(&cert).is_ok_and(|(_, parsed)| {
            parsed.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
        });
        verified.is_ok_and(|id| id == self.spiffe_id) && matches_key
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The path as one shell word: as is when it holds only safe characters, else single-quoted.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '-' | '_' | '+' | ',' | ':' | '@' | '%')
        });
    if safe {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
