use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::{SpiffeId, TrustDomain};

use crate::identity::{TrustBundles, X509Context, X509Svid};

/// A test certificate authority for one trust domain.
pub struct TestCa {
    domain: TrustDomain,
    params: CertificateParams,
    key: KeyPair,
    /// The root of trust (for an intermediate CA, its root's certificate).
    root: CertificateDer<'static>,
    /// The CA certificates between a leaf it mints and the root, nearest first.
    intermediates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("domain", &self.domain.to_string())
            .finish_non_exhaustive()
    }
}

/// What to put in a minted certificate. The defaults make a valid X.509-SVID valid for an hour.
#[derive(Debug, Clone)]
pub struct SvidSpec {
    /// The URI SANs (a valid SVID has exactly one, a SPIFFE ID).
    pub uris: Vec<String>,
    /// Validity start.
    pub not_before: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
    /// The leaf's key type.
    pub key: SvidKey,
}

/// The key type of a minted SVID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SvidKey {
    /// ECDSA on P-256, what SPIRE issues by default.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048. RSA keys cannot be generated with the `ring` backend, so every RSA SVID
    /// shares one fixed test key (`rsa-2048.pem`): for tests only.
    Rsa2048,
}

/// The fixed key of [`SvidKey::Rsa2048`] SVIDs, PKCS#8.
const RSA_2048_KEY: &str = include_str!("rsa-2048.pem");

impl SvidSpec {
    /// A valid SVID for `id`, valid from a minute ago for an hour.
    pub fn new(id: &str) -> Self {
        let now = SystemTime::now();
        Self {
            uris: vec![id.to_owned()],
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
            key: SvidKey::default(),
        }
    }

    /// With a key of type `key`.
    pub fn key(mut self, key: SvidKey) -> Self {
        self.key = key;
        self
    }

    /// Valid for `ttl` from now.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.not_after = SystemTime::now() + ttl;
        self
    }

    /// Expired an hour ago.
    pub fn expired(mut self) -> Self {
        let now = SystemTime::now();
        self.not_before = now - Duration::from_secs(7200);
        self.not_after = now - Duration::from_secs(3600);
        self
    }

    /// Exactly these URI SANs (zero or several make an invalid SVID).
    pub fn uris(mut self, uris: &[&str]) -> Self {
        self.uris = uris.iter().map(|u| (*u).to_owned()).collect();
        self
    }
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

impl TestCa {
    /// A new CA for `trust_domain` (such as `example.org`).
    ///
    /// # Panics
    /// If `trust_domain` is not a valid trust domain name, or key generation fails.
    pub fn new(trust_domain: &str) -> Self {
        #[allow(
            clippy::expect_used,
            reason = "test helper: a bad literal is a bug in the test"
        )]
        let domain = TrustDomain::new(trust_domain).expect("valid trust domain");
        #[allow(clippy::expect_used, reason = "test helper")]
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Ligand test CA");
        dn.push(DnType::CommonName, trust_domain);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = offset(now - Duration::from_secs(3600));
        params.not_after = offset(now + Duration::from_secs(24 * 3600));
        if let Ok(uri) = format!("spiffe://{trust_domain}").try_into() {
            params.subject_alt_names = vec![SanType::URI(uri)];
        }
        #[allow(clippy::expect_used, reason = "test helper")]
        let root = params
            .self_signed(&key)
            .expect("self-signed CA")
            .der()
            .clone();
        Self {
            domain,
            params,
            key,
            root,
            intermediates: Vec::new(),
        }
    }

    /// An intermediate CA of the same trust domain, signed by this one: the SVIDs it mints
    /// carry it (and this CA's own intermediates) after the leaf, and verify against this
    /// CA's root.
    ///
    /// # Panics
    /// If key generation or signing fails.
    pub fn intermediate(&self) -> Self {
        #[allow(clippy::expect_used, reason = "test helper")]
        let key = KeyPair::generate().expect("intermediate CA key");
        let mut params = self.params.clone();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Ligand test intermediate CA");
        dn.push(DnType::CommonName, self.domain.to_string());
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        #[allow(clippy::expect_used, reason = "test helper")]
        let cert = params
            .signed_by(&key, &issuer)
            .expect("signed intermediate")
            .der()
            .clone();
        let mut intermediates = vec![cert];
        intermediates.extend(self.intermediates.iter().cloned());
        Self {
            domain: self.domain.clone(),
            params,
            key,
            root: self.root.clone(),
            intermediates,
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.domain
    }

    /// The root certificate.
    pub fn root(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// A bundle set trusting this CA alone.
    pub fn bundles(&self) -> TrustBundles {
        TrustBundles::new().with(self.domain.clone(), vec![self.root()])
    }

    /// A valid SVID for `id`.
    ///
    /// # Panics
    /// If `id` is not a SPIFFE ID or minting fails.
    pub fn svid(&self, id: &str) -> X509Svid {
        self.mint(SvidSpec::new(id))
    }

    /// A certificate as `spec` describes, signed by this CA. Its `spiffe_id` is the first URI
    /// SAN when that is a SPIFFE ID, else this CA's trust domain with path `/invalid`.
    ///
    /// # Panics
    /// If minting fails.
    pub fn mint(&self, spec: SvidSpec) -> X509Svid {
        #[allow(clippy::expect_used, reason = "test helper")]
        let key = match spec.key {
            SvidKey::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            SvidKey::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            SvidKey::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            SvidKey::Rsa2048 => {
                KeyPair::from_pem_and_sign_algo(RSA_2048_KEY, &rcgen::PKCS_RSA_SHA256)
            }
        }
        .expect("leaf key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "SPIFFE");
        params.distinguished_name = dn;
        params.subject_alt_names = spec
            .uris
            .iter()
            .filter_map(|u| u.clone().try_into().ok().map(SanType::URI))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = offset(spec.not_before);
        params.not_after = offset(spec.not_after);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        #[allow(clippy::expect_used, reason = "test helper")]
        let cert = params.signed_by(&key, &issuer).expect("signed leaf");
        let spiffe_id = spec
            .uris
            .first()
            .and_then(|u| SpiffeId::new(u).ok())
            .or_else(|| SpiffeId::new(format!("spiffe://{}/invalid", self.domain)).ok());
        #[allow(
            clippy::expect_used,
            reason = "the fallback ID is built from a valid trust domain"
        )]
        let spiffe_id = spiffe_id.expect("fallback SPIFFE ID");
        X509Svid {
            spiffe_id,
            cert_chain: std::iter::once(cert.der().clone())
                .chain(self.intermediates.iter().cloned())
                .collect(),
            private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// An identity context holding `svid` and trusting this CA.
    pub fn context(&self, svid: X509Svid) -> X509Context {
        X509Context {
            svids: vec![svid],
            bundles: self.bundles(),
        }
    }
}
