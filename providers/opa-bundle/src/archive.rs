//! Bundle archives: reading (bounded, path-safe), writing and the data tree.

use std::io::Read;
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{MANIFEST_FILE, SIGNATURES_FILE};

/// Bounds on what an archive may unpack to; a bundle comes from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes one file may hold.
    pub max_file_bytes: u64,
    /// The most bytes all files together may hold.
    pub max_total_bytes: u64,
    /// The most files.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 << 20,
            max_total_bytes: 64 << 20,
            max_files: 10_000,
        }
    }
}

/// Why a bundle could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The archive is not a readable gzipped tar.
    #[error("bundle archive is unreadable: {0}")]
    Archive(#[source] std::io::Error),
    /// An entry's path escapes the bundle root or is otherwise unusable.
    #[error("bundle entry {path:?} has an unsafe path")]
    UnsafePath {
        /// The entry's path as stored.
        path: String,
    },
    /// An entry is a link, device or other non-regular file.
    #[error("bundle entry {path:?} is not a regular file")]
    NotAFile {
        /// The entry's path.
        path: String,
    },
    /// The same path appears twice.
    #[error("bundle entry {path:?} appears twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// The archive is over one of the [`Limits`].
    #[error("bundle exceeds its limits: {0}")]
    TooLarge(String),
    /// A JSON document (data, manifest or signatures) is malformed.
    #[error("bundle file {path:?} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: String,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A Rego module is not UTF-8.
    #[error("bundle file {path:?} is not UTF-8")]
    NotUtf8 {
        /// The file.
        path: String,
    },
    /// Two data documents claim overlapping places in the data tree.
    #[error("data document {path:?} overlaps another document at {at:?}")]
    DataConflict {
        /// The file.
        path: String,
        /// Where in the data tree.
        at: String,
    },
    /// Reading a bundle folder failed.
    #[error("reading bundle folder {path:?}: {source}")]
    Io {
        /// The path being read.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// One file of a bundle, with its path relative to the bundle root (`/`-separated, no
/// leading slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// The path relative to the bundle root.
    pub path: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl BundleFile {
    /// A file at `path` holding `bytes`.
    pub fn new(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            bytes: bytes.into(),
        }
    }
}

/// The `.manifest` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The bundle's revision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The data and policy roots the bundle owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Fields this crate does not interpret, kept so a manifest round-trips.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An OPA bundle: its files, minus `.manifest` and `.signatures.json`, which are parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bundle {
    files: Vec<BundleFile>,
    manifest: Option<Manifest>,
    signatures: Option<crate::Signatures>,
}

/// `path` as a safe bundle path: relative, `/`-separated, no `.`/`..`/empty segments.
fn clean_path(raw: &str) -> Option<String> {
    let trimmed = raw.trim_start_matches('/').trim_start_matches("./");
    if trimmed.is_empty() || trimmed.contains('\\') || trimmed.contains('\0') {
        return None;
    }
    let ok = trimmed
        .split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    ok.then(|| trimmed.to_owned())
}

impl Bundle {
    /// A bundle of `files` (paths relative to the root).
    pub fn new(files: Vec<BundleFile>) -> Self {
        Self {
            files,
            manifest: None,
            signatures: None,
        }
    }

    /// Sets the manifest's revision (creating the manifest if needed).
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.manifest.get_or_insert_with(Manifest::default).revision = revision.into();
        self
    }

    /// Sets the manifest.
    pub fn with_manifest(mut self, manifest: Manifest) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Attaches signatures (see [`crate::SigningKey::sign`]).
    pub fn with_signatures(mut self, signatures: crate::Signatures) -> Self {
        self.signatures = Some(signatures);
        self
    }

    /// The files, without `.manifest` and `.signatures.json`.
    pub fn files(&self) -> &[BundleFile] {
        &self.files
    }

    /// The manifest, if any.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The revision from the manifest, if any.
    pub fn revision(&self) -> Option<&str> {
        self.manifest
            .as_ref()
            .map(|m| m.revision.as_str())
            .filter(|r| !r.is_empty())
    }

    /// The signatures, if the bundle is signed.
    pub fn signatures(&self) -> Option<&crate::Signatures> {
        self.signatures.as_ref()
    }

    /// The `.manifest` bytes as they are signed and archived.
    pub(crate) fn manifest_bytes(&self) -> Option<Vec<u8>> {
        self.manifest
            .as_ref()
            .and_then(|m| serde_json::to_vec(m).ok())
    }

    /// Every signed file: the files plus `.manifest`, as OPA signs them.
    pub(crate) fn signed_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<(String, Vec<u8>)> = self
            .files
            .iter()
            .map(|f| (f.path.clone(), f.bytes.clone()))
            .collect();
        if let Some(manifest) = self.manifest_bytes() {
            all.push((MANIFEST_FILE.to_owned(), manifest));
        }
        all
    }

    /// The Rego modules: `(path, source)`.
    pub fn modules(&self) -> Result<Vec<(&str, &str)>, BundleError> {
        self.files
            .iter()
            .filter(|f| f.path.ends_with(".rego"))
            .map(|f| {
                std::str::from_utf8(&f.bytes)
                    .map(|source| (f.path.as_str(), source))
                    .map_err(|_| BundleError::NotUtf8 {
                        path: f.path.clone(),
                    })
            })
            .collect()
    }

    /// The data tree: each `data.json` placed at its directory's path (`a/b/data.json` becomes
    /// `data.a.b`). Overlapping documents are an error rather than a silent merge.
    pub fn data(&self) -> Result<Value, BundleError> {
        let mut root = Value::Object(Map::new());
        let mut documents: Vec<&BundleFile> = self
            .files
            .iter()
            .filter(|f| f.path == "data.json" || f.path.ends_with("/data.json"))
            .collect();
        documents.sort_by(|a, b| a.path.cmp(&b.path));
        for file in documents {
            let value: Value =
                serde_json::from_slice(&file.bytes).map_err(|source| BundleError::Json {
                    path: file.path.clone(),
                    source,
                })?;
            let dir = file
                .path
                .strip_suffix("data.json")
                .unwrap_or("")
                .trim_end_matches('/');
            let segments: Vec<&str> = if dir.is_empty() {
                Vec::new()
            } else {
                dir.split('/').collect()
            };
            insert(&mut root, &segments, value, &file.path)?;
        }
        Ok(root)
    }

    /// Reads a gzipped tar archive within `limits`. Entries must be regular files with safe
    /// relative paths; directories are skipped.
    pub fn from_tar_gz(archive: &[u8], limits: &Limits) -> Result<Self, BundleError> {
        let mut tar = tar::Archive::new(GzDecoder::new(archive));
        let mut raw: Vec<BundleFile> = Vec::new();
        let mut total = 0u64;
        for entry in tar.entries().map_err(BundleError::Archive)? {
            let mut entry = entry.map_err(BundleError::Archive)?;
            let kind = entry.header().entry_type();
            let stored = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if kind.is_dir() {
                continue;
            }
            if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                return Err(BundleError::NotAFile { path: stored });
            }
            let path = clean_path(&stored).ok_or_else(|| BundleError::UnsafePath {
                path: stored.clone(),
            })?;
            let size = entry.header().size().map_err(BundleError::Archive)?;
            if size > limits.max_file_bytes {
                return Err(BundleError::TooLarge(format!("{path} is {size} bytes")));
            }
            total += size;
            if total > limits.max_total_bytes || raw.len() >= limits.max_files {
                return Err(BundleError::TooLarge(format!(
                    "over {} bytes or {} files",
                    limits.max_total_bytes, limits.max_files
                )));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            // `take` guards against a header that under-reports its size.
            (&mut entry)
                .take(limits.max_file_bytes + 1)
                .read_to_end(&mut bytes)
                .map_err(BundleError::Archive)?;
            if bytes.len() as u64 > limits.max_file_bytes {
                return Err(BundleError::TooLarge(format!(
                    "{path} is over {} bytes",
                    limits.max_file_bytes
                )));
            }
            raw.push(BundleFile { path, bytes });
        }
        // The tar reader stops at the end-of-archive marker; reading the gzip stream to its end
        // makes its CRC checked, so a corrupted archive is an error, not altered content.
        let mut rest = tar.into_inner();
        std::io::copy(
            &mut (&mut rest).take(limits.max_total_bytes),
            &mut std::io::sink(),
        )
        .map_err(BundleError::Archive)?;
        Self::from_files(raw)
    }

    /// Reads a bundle folder: every regular file under `dir` (hidden folders other than the
    /// root's `.manifest`/`.signatures.json` are skipped), within the default limits.
    pub fn from_dir(dir: &Path) -> Result<Self, BundleError> {
        let mut raw = Vec::new();
        read_dir(dir, dir, &mut raw)?;
        raw.sort_by(|a, b| a.path.cmp(&b.path));
        Self::from_files(raw)
    }

    /// Builds a bundle from raw files, parsing `.manifest` and `.signatures.json` out of them.
    pub fn from_files(raw: Vec<BundleFile>) -> Result<Self, BundleError> {
        let mut bundle = Self::default();
        let mut seen = std::collections::HashSet::new();
        for file in raw {
            if !seen.insert(file.path.clone()) {
                return Err(BundleError::Duplicate { path: file.path });
            }
            match file.path.as_str() {
                MANIFEST_FILE => {
                    bundle.manifest =
                        Some(serde_json::from_slice(&file.bytes).map_err(|source| {
                            BundleError::Json {
                                path: file.path.clone(),
                                source,
                            }
                        })?);
                }
                SIGNATURES_FILE => {
                    bundle.signatures =
                        Some(serde_json::from_slice(&file.bytes).map_err(|source| {
                            BundleError::Json {
                                path: file.path.clone(),
                                source,
                            }
                        })?);
                }
                _ => bundle.files.push(file),
            }
        }
        Ok(bundle)
    }

    /// Writes the bundle as a gzipped tar, entries in path order (so the same bundle always
    /// produces the same bytes), `.manifest` and `.signatures.json` included when present.
    pub fn to_tar_gz(&self) -> Result<Vec<u8>, BundleError> {
        let mut entries: Vec<(String, Vec<u8>)> = self.signed_files();
        if let Some(signatures) = &self.signatures {
            let bytes = serde_json::to_vec(signatures).map_err(|source| BundleError::Json {
                path: SIGNATURES_FILE.into(),
                source,
            })?;
            entries.push((SIGNATURES_FILE.to_owned(), bytes));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (path, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, &path, bytes.as_slice())
                .map_err(BundleError::Archive)?;
        }
        builder
            .into_inner()
            .and_then(|gz| gz.finish())
            .map_err(BundleError::Archive)
    }
}

fn read_dir(root: &Path, dir: &Path, out: &mut Vec<BundleFile>) -> Result<(), BundleError> {
    let io = |path: &Path, source| BundleError::Io {
        path: path.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        let at_root = dir == root;
        if name.starts_with('.') && !(at_root && (name == MANIFEST_FILE || name == SIGNATURES_FILE))
        {
            continue;
        }
        if kind.is_dir() {
            read_dir(root, &path, out)?;
        } else if kind.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative = relative.to_string_lossy().replace('\\', "/");
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            out.push(BundleFile {
                path: relative,
                bytes,
            });
        } else {
            return Err(BundleError::NotAFile {
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

fn insert(
    root: &mut Value,
    segments: &[&str],
    value: Value,
    path: &str,
) -> Result<(), BundleError> {
    let conflict = |at: &[&str]| BundleError::DataConflict {
        path: path.to_owned(),
        at: at.join("."),
    };
    let mut node = root;
    for (depth, segment) in segments.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(conflict(&segments[..depth]));
        };
        node = map
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match value {
        Value::Object(incoming) => {
            let Value::Object(existing) = node else {
                return Err(conflict(segments));
            };
            for (key, v) in incoming {
                if existing.contains_key(&key) {
                    let mut at = segments.to_vec();
                    at.push(&key);
                    return Err(conflict(&at));
                }
                existing.insert(key, v);
            }
            Ok(())
        }
        // A non-object document may only fill a place of its own below the root.
        other if !segments.is_empty() && matches!(node, Value::Object(m) if m.is_empty()) => {
            *node = other;
            Ok(())
        }
        _ => Err(conflict(segments)),
    }
}
