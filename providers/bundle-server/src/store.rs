//! The built bundles: one signed archive per service, rebuilt when the repository changes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::body::Bytes;
use ligand_opa_bundle::{Bundle, BundleFile, Manifest, SigningKey};
use tokio::sync::watch;

use crate::error::{BuildError, RepoError};
use crate::layout;

/// One service's signed bundle, ready to serve.
#[derive(Clone, PartialEq, Eq)]
pub struct BuiltBundle {
    name: String,
    revision: String,
    archive: Bytes,
}

impl fmt::Debug for BuiltBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltBundle")
            .field("name", &self.name)
            .field("revision", &self.revision)
            .field("archive_bytes", &self.archive.len())
            .finish()
    }
}

impl BuiltBundle {
    /// The bundle (and service folder) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The content revision, also in the bundle's `.manifest`.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The HTTP entity tag: the revision as a strong, quoted ETag.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.revision)
    }

    /// The signed `.tar.gz` archive.
    pub fn archive(&self) -> &Bytes {
        &self.archive
    }
}

/// Every bundle currently served, by name.
pub(crate) type Snapshot = BTreeMap<String, Arc<BuiltBundle>>;

/// What one rescan changed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Rescan {
    /// Bundles with a new revision (or new bundles).
    pub updated: Vec<String>,
    /// Bundles whose service folder disappeared.
    pub removed: Vec<String>,
    /// Services whose folder could not be built; their previous bundle, if any, stays.
    pub failed: Vec<(String, BuildError)>,
}

impl Rescan {
    /// Whether any served bundle changed.
    pub fn changed(&self) -> bool {
        !self.updated.is_empty() || !self.removed.is_empty()
    }
}

/// Builds and holds the signed bundle of every service of a policy repository.
///
/// The repository layout:
///
/// ```text
/// <repo>/
///   lib/**                  shared modules and data, overlaid onto every bundle
///   services/<name>/**      one folder per service: its bundle is named <name>
/// ```
///
/// Only `*.rego` files and `data.json` documents are bundled. Paths inside `lib/` and inside a
/// service folder are bundle paths (`services/accounts/ligand/authz/data.json` is the bundle's
/// `ligand/authz/data.json`, i.e. `data.ligand.authz`); the same path in both is a build error.
/// Each bundle's `.manifest` carries the content revision ([`layout::revision`]) and the roots
/// ([`layout::roots`]); the bundle is signed in OPA's format with the configured key.
pub struct BundleStore {
    root: PathBuf,
    key: SigningKey,
    scope: Option<String>,
    bundles: watch::Sender<Arc<Snapshot>>,
    /// Serializes rescans so that two concurrent ones cannot publish out of order.
    rescan: Mutex<()>,
}

impl fmt::Debug for BundleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleStore")
            .field("root", &self.root)
            .field("key", &self.key)
            .field("bundles", &self.bundles.borrow().len())
            .finish_non_exhaustive()
    }
}

impl BundleStore {
    /// Opens the repository at `root` and builds every bundle, signing with `key` (and the
    /// signature `scope`, if the verifiers expect one). Fails if the repository is unreadable;
    /// a service that fails to build is logged and left out.
    pub fn open(
        root: impl Into<PathBuf>,
        key: SigningKey,
        scope: Option<String>,
    ) -> Result<Self, RepoError> {
        let store = Self {
            root: root.into(),
            key,
            scope,
            bundles: watch::channel(Arc::new(Snapshot::new())).0,
            rescan: Mutex::new(()),
        };
        store.rescan()?;
        Ok(store)
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The current bundle named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<BuiltBundle>> {
        self.bundles.borrow().get(name).cloned()
    }

    /// The names of every bundle served.
    pub fn names(&self) -> Vec<String> {
        self.bundles.borrow().keys().cloned().collect()
    }

    /// The bundles, notified on every change (long polls wait on it).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.bundles.subscribe()
    }

    /// Reads the repository again and republishes every bundle whose content changed. An
    /// unchanged service keeps its archive byte for byte (it is not re-signed). Blocking: it
    /// reads files and signs; call it from a blocking context.
    pub fn rescan(&self) -> Result<Rescan, RepoError> {
        let _serial = self.rescan.lock().unwrap_or_else(|e| e.into_inner());
        let sources = layout::scan(&self.root)?;
        let previous = self.bundles.borrow().clone();
        let mut next = Snapshot::new();
        let mut report = Rescan::default();
        for (name, files) in sources {
            let old = previous.get(&name);
            match files.and_then(|files| self.build(&name, files, old)) {
                Ok(bundle) => {
                    if old.is_none_or(|old| old.revision != bundle.revision) {
                        tracing::info!(bundle = %name, revision = %bundle.revision, "bundle built");
                        report.updated.push(name.clone());
                    }
                    next.insert(name, bundle);
                }
                Err(error) => {
                    tracing::warn!(bundle = %name, error = %error_chain(&error), "bundle not built; previous revision stays");
                    if let Some(old) = old {
                        next.insert(name.clone(), old.clone());
                    }
                    report.failed.push((name, error));
                }
            }
        }
        report.removed = previous
            .keys()
            .filter(|name| !next.contains_key(*name))
            .cloned()
            .collect();
        for name in &report.removed {
            tracing::info!(bundle = %name, "service folder removed; bundle withdrawn");
        }
        if report.changed() {
            self.bundles.send_replace(Arc::new(next));
        }
        Ok(report)
    }

    fn build(
        &self,
        name: &str,
        files: Vec<BundleFile>,
        old: Option<&Arc<BuiltBundle>>,
    ) -> Result<Arc<BuiltBundle>, BuildError> {
        let revision = layout::revision(&files);
        if let Some(old) = old.filter(|old| old.revision == revision) {
            return Ok(old.clone());
        }
        let manifest = Manifest {
            revision: revision.clone(),
            roots: Some(layout::roots(&files)),
            ..Manifest::default()
        };
        let bundle = Bundle::new(files).with_manifest(manifest);
        let signatures = self
            .key
            .sign(&bundle, self.scope.as_deref())
            .map_err(BuildError::Sign)?;
        let archive = bundle
            .with_signatures(signatures)
            .to_tar_gz()
            .map_err(BuildError::Archive)?;
        Ok(Arc::new(BuiltBundle {
            name: name.to_owned(),
            revision,
            archive: Bytes::from(archive),
        }))
    }
}

/// `error` and its sources, joined, for log lines that must say why.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
