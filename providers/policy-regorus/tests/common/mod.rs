//! Shared fixtures: policies, folders, bundles, keys and requests.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures")]

use std::path::Path;

use ligand_opa_bundle::{Bundle, BundleFile, SigningKey};
use ligand_policy_regorus::KeyConfig;
use ligand_runtime::{Action, Chain, EvalRequest, Link, PathParams, RequestLine, Resource};

pub const CALLER: &str = "spiffe://example.org/service/caller";
pub const INTRUDER: &str = "spiffe://example.org/service/intruder";
pub const SERVICE: &str = "spiffe://example.org/service/hello";

/// Allows the caller listed in `data.authz.callers` to GET `/hello/{name}`; the reason says
/// who was refused and which policy version decided.
pub fn policy(version_tag: &str) -> String {
    format!(
        r#"package ligand.authz

import rego.v1

default allow := false

allow if {{
	input.peer.workload in data.authz.callers
	input.action.name == "GET"
	input.resource.value == "/hello/{{name}}"
}}

reason := "{version_tag}: allowed" if allow

reason := sprintf("{version_tag}: %s may not %s %s", [input.peer.workload, input.action.name, input.resource.value]) if not allow
"#
    )
}

/// The data document naming the allowed callers.
pub fn data(callers: &[&str]) -> String {
    serde_json::json!({ "callers": callers }).to_string()
}

/// A bundle of the standard policy with `callers`, at `revision`.
pub fn bundle(revision: &str, callers: &[&str]) -> Bundle {
    Bundle::new(vec![
        BundleFile::new("ligand/authz/policy.rego", policy(revision)),
        BundleFile::new("authz/data.json", data(callers)),
    ])
    .with_revision(revision)
}

/// Writes `files` under `dir`.
pub fn write_folder(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// A request from `peer` for `action` on `resource`.
pub fn request(peer: &str, action: &'static str, resource: &'static str) -> EvalRequest {
    let link = Link::workload(peer);
    let mut params = PathParams::new();
    if resource.contains("{name}") {
        params.push("name", "ada");
    }
    EvalRequest::new(
        Chain::from(vec![link.clone()]),
        link,
        Resource::http_path(resource),
        Action::new(action),
        RequestLine::new(
            action.parse().unwrap_or(http::Method::GET),
            resource.replace("{name}", "ada"),
        )
        .with_params(params),
        SERVICE,
    )
}

/// A signing key and the matching verification key configuration.
pub struct Keys {
    pub signing: SigningKey,
    pub config: KeyConfig,
}

impl Keys {
    /// A fresh ES256 (P-256) pair.
    pub fn es256(id: &str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        Self {
            signing: SigningKey::from_pem(id, "ES256", pair.serialize_pem().as_bytes()).unwrap(),
            config: KeyConfig::pem(id, "ES256", pair.public_key_pem()),
        }
    }

    /// The RSA-2048 test pair under `tests/fixtures` (ring cannot generate RSA keys).
    pub fn rs256(id: &str) -> Self {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let private = std::fs::read(fixtures.join("rsa-test-key.pem")).unwrap();
        Self {
            signing: SigningKey::from_pem(id, "RS256", &private).unwrap(),
            config: KeyConfig::path(id, "RS256", fixtures.join("rsa-test-key.pub.pem")),
        }
    }

    /// `bundle` signed with this key, as a `.tar.gz`.
    pub fn sign(&self, bundle: Bundle) -> Vec<u8> {
        let signatures = self.signing.sign(&bundle, None).unwrap();
        bundle.with_signatures(signatures).to_tar_gz().unwrap()
    }
}

pub mod strategies;
