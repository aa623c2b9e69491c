//! The OPA bundle format, shared by the policy engine (which loads and verifies bundles) and
//! the bundle server (which builds and signs them).
//!
//! A bundle is a gzipped tar of Rego modules, `data.json` documents placed at their directory's
//! path in the data tree, an optional `.manifest` (revision, roots) and an optional
//! `.signatures.json`. Signing follows OPA's bundle signing format exactly, so bundles signed
//! here verify in OPA and bundles signed by `opa sign` verify here:
//!
//! - `.signatures.json` is `{"signatures": ["<JWT>"]}` with exactly one JWT;
//! - the JWT's payload lists every file (`name` relative to the bundle root, `hash` in hex,
//!   `algorithm`), plus optional `keyid`, `scope`, `iat`, `iss`;
//! - structured files (`data.json`, `data.yaml`, `.manifest`) are hashed over their parsed JSON
//!   with object keys sorted, so the signature ignores whitespace and key order; every other
//!   file is hashed as bytes;
//! - verification fails unless every file in the bundle is listed with a matching digest and
//!   every listed file is present.
//!
//! ```
//! use ligand_opa_bundle::{Bundle, BundleFile};
//!
//! let bundle = Bundle::new(vec![
//!     BundleFile::new("authz/policy.rego", "package ligand.authz\n\ndefault allow := false\n"),
//!     BundleFile::new("authz/data.json", r#"{"admins": ["alice"]}"#),
//! ])
//! .with_revision("rev-1");
//! let archive = bundle.to_tar_gz().unwrap();
//! let read = Bundle::from_tar_gz(&archive, &Default::default()).unwrap();
//! assert_eq!(read.revision(), Some("rev-1"));
//! assert_eq!(read.data().unwrap()["authz"]["admins"][0], "alice");
//! ```
//!
//! This crate is a format library, not a provider: it depends on no part of Ligand, so that
//! the policy provider and the bundle server can share it without depending on each other.

#![forbid(unsafe_code)]

mod archive;
mod hash;
mod sign;

pub use self::archive::{Bundle, BundleError, BundleFile, Limit, Limits, Manifest};
pub use self::hash::{HashAlgorithm, file_digest, is_structured};
pub use self::sign::{
    FileDigest, SignatureError, SignaturePayload, Signatures, SigningKey, VerificationKey, Verifier,
};

/// The name of the manifest file at the bundle root.
pub const MANIFEST_FILE: &str = ".manifest";
/// The name of the signatures file at the bundle root.
pub const SIGNATURES_FILE: &str = ".signatures.json";
