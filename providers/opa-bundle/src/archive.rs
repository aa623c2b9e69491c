//! Bundle archives: reading (bounded, path-safe), writing and the data tree.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{MANIFEST_FILE, SIGNATURES_FILE};

/// Bounds on what an archive may unpack to; a bundle comes from the network.
///
/// Every byte the gzip stream decompresses to counts: file contents, tar headers, PAX
/// extended headers, GNU long names and links, padding, and whatever follows the end of the
/// archive. Reading stops at the first byte over a bound, so a header that announces a huge
/// size costs no more than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes one file may hold.
    pub max_file_bytes: u64,
    /// The most bytes the archive may decompress to, headers and padding included.
    pub max_total_bytes: u64,
    /// The most entries: files and directories alike.
    pub max_files: usize,
    /// The most metadata one entry may carry: its header blocks, a PAX extended header, a
    /// GNU long name and long link, and the padding before it. Real paths need a few
    /// kilobytes at most.
    pub max_header_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 << 20,
            max_total_bytes: 64 << 20,
            max_files: 10_000,
            max_header_bytes: 64 << 10,
        }
    }
}

/// Which bound of [`Limits`] an archive went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_file_bytes`].
    FileBytes,
    /// [`Limits::max_total_bytes`].
    TotalBytes,
    /// [`Limits::max_files`].
    Entries,
    /// [`Limits::max_header_bytes`].
    HeaderBytes,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FileBytes => "bytes per file",
            Self::TotalBytes => "decompressed bytes",
            Self::Entries => "entries",
            Self::HeaderBytes => "header bytes per entry",
        })
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
    /// The archive is over one of the [`Limits`]; reading stopped there.
    #[error(
        "bundle archive exceeds its limit of {max} {limit}{}",
        path.as_ref().map(|p| format!(" (at {p:?})")).unwrap_or_default()
    )]
    TooLarge {
        /// The bound.
        limit: Limit,
        /// Its value.
        max: u64,
        /// The entry being read, when its name was known.
        path: Option<String>,
    },
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
        let meter = Rc::new(Meter::new(limits.max_total_bytes));
        let mut tar = tar::Archive::new(Metered {
            inner: GzDecoder::new(archive),
            meter: meter.clone(),
        });
        // An error from the tar reader after the meter stopped it is the limit's.
        let failed = |error: std::io::Error, path: Option<&str>| match meter.exceeded() {
            Some((limit, max)) => BundleError::TooLarge {
                limit,
                max,
                path: path.map(str::to_owned),
            },
            None => BundleError::Archive(error),
        };
        let too_large = |limit, max, path: &str| BundleError::TooLarge {
            limit,
            max,
            path: Some(path.to_owned()),
        };
        let mut raw: Vec<BundleFile> = Vec::new();
        let mut declared = 0u64;
        let mut count = 0usize;
        let mut entries = tar.entries().map_err(|e| failed(e, None))?;
        loop {
            // The tar reader takes the next entry's headers, PAX records and long names (and
            // the previous entry's padding) in this one call, into memory: bounded here.
            meter.begin(Limit::HeaderBytes, limits.max_header_bytes);
            let Some(entry) = entries.next() else { break };
            let mut entry = entry.map_err(|e| failed(e, None))?;
            let kind = entry.header().entry_type();
            let stored = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            count += 1;
            if count > limits.max_files {
                return Err(too_large(Limit::Entries, limits.max_files as u64, &stored));
            }
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
                return Err(too_large(Limit::FileBytes, limits.max_file_bytes, &path));
            }
            // Refused before reading when the sizes announced already go over.
            declared = declared.saturating_add(size);
            if declared > limits.max_total_bytes {
                return Err(too_large(Limit::TotalBytes, limits.max_total_bytes, &path));
            }
            meter.begin(Limit::FileBytes, limits.max_file_bytes);
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            // `take` guards against a header that under-reports its size.
            (&mut entry)
                .take(limits.max_file_bytes + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| failed(e, Some(&path)))?;
            if bytes.len() as u64 > limits.max_file_bytes {
                return Err(too_large(Limit::FileBytes, limits.max_file_bytes, &path));
            }
            raw.push(BundleFile { path, bytes });
        }
        // The tar reader stops at the end-of-archive marker; reading the gzip stream to its end
        // makes its CRC checked, so a corrupted archive is an error, not altered content. What
        // follows the marker counts toward the total like the rest.
        meter.begin(Limit::TotalBytes, u64::MAX);
        std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(|e| failed(e, None))?;
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

// === impl Metered ===

/// Counts every byte read from the decompressed stream, and refuses the first one over the
/// total or over the budget of the current step (one entry's metadata, one file's content).
/// Shared between the reader the tar reader owns and the loop that drives it.
#[derive(Debug)]
struct Meter {
    /// Bytes read so far.
    read: Cell<u64>,
    /// The most bytes the whole stream may hold.
    total: u64,
    /// The current step's bound, and where it ends in the stream.
    step: Cell<(Limit, u64)>,
    step_end: Cell<u64>,
    /// The bound that stopped the reading, with its value.
    exceeded: Cell<Option<(Limit, u64)>>,
}

impl Meter {
    fn new(total: u64) -> Self {
        Self {
            read: Cell::new(0),
            total,
            step: Cell::new((Limit::TotalBytes, total)),
            step_end: Cell::new(u64::MAX),
            exceeded: Cell::new(None),
        }
    }

    /// Starts a step that may read at most `max` more bytes.
    fn begin(&self, limit: Limit, max: u64) {
        self.step.set((limit, max));
        self.step_end.set(self.read.get().saturating_add(max));
    }

    /// The bound that stopped the reading, if one did.
    fn exceeded(&self) -> Option<(Limit, u64)> {
        self.exceeded.get()
    }
}

/// A reader whose bytes a [`Meter`] counts and bounds.
#[derive(Debug)]
struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let meter = &*self.meter;
        if meter.exceeded.get().is_some() {
            return Err(over_limit());
        }
        let read = meter.read.get();
        let step_end = meter.step_end.get();
        let allowed = meter.total.min(step_end).saturating_sub(read);
        // One byte past the budget tells a stream that goes on from one that ends there.
        let want =
            usize::try_from(allowed.saturating_add(1)).map_or(buf.len(), |a| a.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > allowed {
            let bound = if step_end < meter.total {
                meter.step.get()
            } else {
                (Limit::TotalBytes, meter.total)
            };
            meter.exceeded.set(Some(bound));
            return Err(over_limit());
        }
        meter.read.set(read + n as u64);
        Ok(n)
    }
}

fn over_limit() -> std::io::Error {
    std::io::Error::other("bundle archive is over its limits")
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
