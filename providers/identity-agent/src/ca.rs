//! The local certificate authority: an ECDSA P-256 root that issues X.509-SVIDs as the SPIFFE
//! X.509-SVID specification describes them (exactly one URI SAN, not a CA, digitalSignature,
//! serverAuth and clientAuth). The root is the trust bundle.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ligand_runtime::{SpiffeId, TrustDomain, X509Svid};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The lifetime of a newly created root.
const CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back a leaf's validity starts, for peers whose clocks lag a little.
const BACKDATE: Duration = Duration::from_secs(10);
const KEY_FILE: &str = "ca.key.pem";
const CERT_FILE: &str = "ca.pem";

/// Why the CA could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Key generation or certificate signing failed.
    #[error("certificate operation failed")]
    Rcgen(#[from] rcgen::Error),
    /// The state directory or a CA file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A persisted CA file is not usable.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The state directory or a CA file is not owned by the agent's user (or root): whoever
    /// owns it can replace the CA.
    #[error(
        "{path} is owned by uid {owner}, not by this agent (uid {expected}) or root; refusing to use it"
    )]
    NotOwned {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The agent's effective uid.
        expected: u32,
    },
    /// The state directory or a CA file is writable by group or others, who could replace the
    /// CA key or certificate.
    #[error("{path} is writable by group or others (mode {mode:o}); refusing to use it")]
    Writable {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The CA private key is readable by group or others.
    #[error("private key {path} is readable by group or others (mode {mode:o}); expected 0600")]
    KeyReadable {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A CA file is a symbolic link; it is not followed.
    #[error("{0} is a symbolic link; refusing to follow it")]
    Symlink(PathBuf),
    /// A CA file is not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// The CA does not issue an SVID for this SPIFFE ID: it names no workload (a root path) or
    /// belongs to another trust domain.
    #[error("no SVID is issued for {spiffe_id}: {reason}")]
    NotIssuable {
        /// The SPIFFE ID asked for.
        spiffe_id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The persisted root has expired; remove the state directory to start a new trust root.
    #[error("the CA certificate in {0} has expired")]
    Expired(PathBuf),
}

/// A freshly issued X.509-SVID with its validity.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    /// The SVID.
    pub svid: X509Svid,
    /// When it becomes valid.
    pub not_before: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
}

/// The agent's certificate authority for one trust domain.
pub struct LocalCa {
    domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
    root_pem: String,
    not_after: SystemTime,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("trust_domain", &self.domain.to_string())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// A CA that lives only in memory.
    pub fn ephemeral(domain: TrustDomain) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let (params, not_after) = root_params(&domain);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            domain,
            issuer: Issuer::new(params, key),
            root: cert.der().clone(),
            root_pem: cert.pem(),
            not_after,
        })
    }

    /// The CA persisted in `dir` (`ca.key.pem` with 0600 permissions and `ca.pem`), created
    /// on first use. The directory is created 0700 when missing.
    ///
    /// Whoever can write the directory or the files can replace the trust root, so they are
    /// refused unless the directory and both files are owned by the agent's user (or root) and
    /// writable by nobody else, the key is readable by nobody else, and neither file is a
    /// symbolic link (they are opened with `O_NOFOLLOW`).
    ///
    /// Several processes may call this at once on the same folder (services of one machine
    /// sharing a development CA): an exclusive lock on `dir/.lock` makes exactly one of them
    /// create the CA and the others load it. Each file is written under a temporary name and
    /// renamed into place, the key last, so a crash mid-way leaves either no CA or a whole one.
    pub fn load_or_create(domain: TrustDomain, dir: &Path) -> Result<Self, CaError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CaError::Io { path, source }
        };
        create_private_dir(dir)?;
        let _lock = lock_dir(dir)?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        match fs::symlink_metadata(&key_path) {
            Ok(_) => return Self::load(domain, &key_path, &cert_path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&key_path)(error)),
        }
        let ca = Self::ephemeral(domain)?;
        // A certificate without its key is useless: a new one replaces it.
        replace(&cert_path, ca.root_pem.as_bytes(), 0o644)?;
        replace(&key_path, ca.issuer.key().serialize_pem().as_bytes(), 0o600)?;
        tracing::info!(dir = %dir.display(), "created a new CA");
        Ok(ca)
    }

    fn load(domain: TrustDomain, key_path: &Path, cert_path: &Path) -> Result<Self, CaError> {
        let invalid = |path: &Path, reason: String| CaError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let key_pem = read_private(key_path, true)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(key_path, e.to_string()))?;
        let root_pem = read_private(cert_path, false)?;
        let root = CertificateDer::from_pem_slice(root_pem.as_bytes())
            .map_err(|e| invalid(cert_path, e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&root)
            .map_err(|e| invalid(cert_path, e.to_string()))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                cert_path,
                "certificate does not match ca.key.pem".into(),
            ));
        }
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0),
            );
        if not_after <= SystemTime::now() {
            return Err(CaError::Expired(cert_path.to_owned()));
        }
        let issuer = Issuer::from_ca_cert_der(&root, key)?;
        Ok(Self {
            domain,
            issuer,
            root,
            root_pem,
            not_after,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.domain
    }

    /// The root certificate: the trust bundle of the domain.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The root certificate as PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Issues an X.509-SVID for `id` valid for `ttl` (never past the root's expiry).
    ///
    /// Refuses an ID of another trust domain, and the trust domain's own ID (a root path),
    /// which the X.509-SVID specification forbids in a leaf SVID.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedSvid, CaError> {
        self.issue_with_names(id, ttl, Vec::new())
    }

    /// Issues an X.509-SVID like [`LocalCa::issue`] that also names this machine's loopback
    /// interface (`DNS:localhost`, `IP:127.0.0.1`, `IP:::1`), so that ordinary TLS clients
    /// such as curl, which check the host they dialed against DNS and IP SANs, accept it as a
    /// server certificate.
    ///
    /// The X.509-SVID specification (section 2) requires exactly one URI SAN, the SPIFFE ID,
    /// and allows "any number of other SAN field types, including DNS SANs"; SPIFFE verifiers
    /// read only the URI SAN. The loopback names grant nothing beyond this machine, and only
    /// the development identity uses them.
    pub fn issue_for_loopback(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedSvid, CaError> {
        let names = vec![
            SanType::DnsName(
                "localhost"
                    .try_into()
                    .map_err(|e: rcgen::Error| CaError::Rcgen(e))?,
            ),
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        ];
        self.issue_with_names(id, ttl, names)
    }

    fn issue_with_names(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        names: Vec<SanType>,
    ) -> Result<IssuedSvid, CaError> {
        let refuse = |reason| CaError::NotIssuable {
            spiffe_id: id.to_string(),
            reason,
        };
        if id.trust_domain() != &self.domain {
            return Err(refuse("it belongs to another trust domain"));
        }
        if id.path().is_empty() {
            return Err(refuse("a workload's SPIFFE ID needs a non-root path"));
        }
        let key = KeyPair::generate()?;
        let now = SystemTime::now();
        let not_before = now - BACKDATE;
        let not_after = (now + ttl).min(self.not_after);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "SPIFFE");
        params.distinguished_name = dn;
        let uri = id
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Rcgen(e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.subject_alt_names.extend(names);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedSvid {
            svid: X509Svid {
                spiffe_id: id.clone(),
                cert_chain: vec![cert.der().clone()],
                private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            },
            not_before,
            not_after,
        })
    }
}

fn root_params(domain: &TrustDomain) -> (CertificateParams, SystemTime) {
    let now = SystemTime::now();
    let not_after = now + CA_LIFETIME;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ligand identity agent");
    dn.push(DnType::CommonName, domain.to_string());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - BACKDATE).into();
    params.not_after = not_after.into();
    if let Ok(uri) = domain.id_string().try_into() {
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    (params, not_after)
}

/// Creates `dir` (and its parents) 0700 when missing, and refuses it unless it is private.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    check_private(dir, &fs::metadata(dir).map_err(io)?, false)
}

/// Holds an exclusive lock on `dir/.lock` until dropped (the kernel releases it if the
/// process dies), so that processes sharing `dir` create and replace its files one at a time.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, CaError> {
    let path = dir.join(".lock");
    let io = |source| CaError::Io {
        path: path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(io)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(e.into()))?;
    Ok(file)
}

/// Writes `bytes` to `path` with permissions `mode` atomically: to a temporary file in the
/// same folder, then renamed over `path`, so a reader sees the old file or the new one.
pub(crate) fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CaError::Io { path, source }
    };
    // A temporary file left by a crash (the caller holds the folder's lock).
    match fs::remove_file(&temp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(&temp)(error));
        }
        _ => {}
    }
    write_new(&temp, bytes, mode).map_err(io(&temp))?;
    fs::rename(&temp, path).map_err(io(path))
}

/// Refuses `path` unless it is owned by the agent's user or root and nobody else can write it
/// (nor read it, when `secret`).
fn check_private(path: &Path, meta: &fs::Metadata, secret: bool) -> Result<(), CaError> {
    let own = rustix::process::geteuid().as_raw();
    if meta.uid() != own && meta.uid() != 0 {
        return Err(CaError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
            expected: own,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CaError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    if secret && mode & 0o044 != 0 {
        return Err(CaError::KeyReadable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads a CA file without following a symbolic link, checking the opened file itself (not
/// the path, which could be swapped between a check and the open).
pub(crate) fn read_private(path: &Path, secret: bool) -> Result<String, CaError> {
    let io = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|error| {
            // O_NOFOLLOW on a symbolic link fails with ELOOP.
            if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                CaError::Symlink(path.to_owned())
            } else {
                io(error)
            }
        })?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(CaError::NotAFile(path.to_owned()));
    }
    check_private(path, &meta, secret)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

/// Writes `bytes` to a new file with permissions `mode` (never more, whatever the umask).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    // The umask may only remove bits; set the mode exactly in case it removed the owner's.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}
