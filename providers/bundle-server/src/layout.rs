//! The policy repository layout: which files make up each service's bundle, its revision and
//! its roots.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use ligand_opa_bundle::{Bundle, BundleFile};
use sha2::{Digest, Sha256};

use crate::error::{BuildError, RepoError};

/// The folder of shared libraries, overlaid onto every service's bundle.
pub const LIB_DIR: &str = "lib";
/// The folder holding one folder per service.
pub const SERVICES_DIR: &str = "services";

/// Whether `name` is usable as a bundle name (and service folder name): ASCII letters, digits,
/// `.`, `-` and `_`, not starting with a dot, at most 255 bytes. These are the characters of a
/// SPIFFE ID path segment, so the last segment of any SPIFFE ID that is not `.`-led qualifies.
pub fn is_valid_bundle_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Whether a file belongs in a bundle: Rego modules and `data.json` documents. Anything else
/// (READMEs, editor files) stays out, as OPA's loader would ignore it anyway.
pub(crate) fn is_policy_file(path: &str) -> bool {
    path.ends_with(".rego") || path == "data.json" || path.ends_with("/data.json")
}

/// The sources of one scan: each service folder's files (lib overlaid), or why they are unusable.
pub(crate) type Sources = BTreeMap<String, Result<Vec<BundleFile>, BuildError>>;

/// Reads the repository at `root`: `lib/**` (optional) and every `services/<name>/**`.
pub(crate) fn scan(root: &Path) -> Result<Sources, RepoError> {
    let unreadable = |path: &Path, source: io::Error| RepoError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let services_dir = root.join(SERVICES_DIR);
    let lib_dir = root.join(LIB_DIR);
    let lib = if lib_dir.is_dir() {
        policy_files(Bundle::from_dir(&lib_dir).map_err(RepoError::Lib)?)
    } else {
        Vec::new()
    };
    let mut sources = Sources::new();
    let entries = std::fs::read_dir(&services_dir).map_err(|e| unreadable(&services_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| unreadable(&services_dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_dir = entry
            .file_type()
            .map_err(|e| unreadable(&entry.path(), e))?
            .is_dir();
        if !is_dir || !is_valid_bundle_name(&name) {
            if !name.starts_with('.') {
                tracing::debug!(%name, "skipping entry of services/: not a service folder");
            }
            continue;
        }
        let files = Bundle::from_dir(&entry.path())
            .map_err(BuildError::Read)
            .and_then(|bundle| overlay(&lib, policy_files(bundle)));
        sources.insert(name, files);
    }
    Ok(sources)
}

/// The policy files of a folder read as a bundle. A `.manifest` or `.signatures.json` found
/// there is ignored: the server writes its own.
fn policy_files(bundle: Bundle) -> Vec<BundleFile> {
    bundle
        .files()
        .iter()
        .filter(|f| is_policy_file(&f.path))
        .cloned()
        .collect()
}

/// `lib` and `own` at the same bundle root, sorted by path; a path present in both is an error
/// rather than a silent override, so a service cannot shadow a shared library by accident.
pub(crate) fn overlay(
    lib: &[BundleFile],
    own: Vec<BundleFile>,
) -> Result<Vec<BundleFile>, BuildError> {
    if own.is_empty() {
        return Err(BuildError::Empty);
    }
    let mut files: BTreeMap<String, BundleFile> =
        lib.iter().map(|f| (f.path.clone(), f.clone())).collect();
    for file in own {
        if files.contains_key(&file.path) {
            return Err(BuildError::Conflict { path: file.path });
        }
        files.insert(file.path.clone(), file);
    }
    Ok(files.into_values().collect())
}

/// The content revision of `files`: SHA-256 over every (path, content) pair in path order, each
/// length-prefixed so that no two different file sets hash alike. Identical content gives an
/// identical revision, on any server instance.
pub fn revision(files: &[BundleFile]) -> String {
    let mut sorted: Vec<&BundleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    for file in sorted {
        hasher.update((file.path.len() as u64).to_be_bytes());
        hasher.update(file.path.as_bytes());
        hasher.update((file.bytes.len() as u64).to_be_bytes());
        hasher.update(&file.bytes);
    }
    hex::encode(hasher.finalize())
}

/// The manifest roots of `files`: the distinct first path segments, since folders mirror data
/// and package paths. A file at the bundle root makes the bundle own the whole tree (`""`).
pub fn roots(files: &[BundleFile]) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    for file in files {
        let root = match file.path.split_once('/') {
            Some((first, _)) => first,
            None => return vec![String::new()],
        };
        if !roots.iter().any(|r| r == root) {
            roots.push(root.to_owned());
        }
    }
    roots.sort();
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, body: &str) -> BundleFile {
        BundleFile::new(path, body)
    }

    #[test]
    fn revision_depends_on_content_and_paths_only() {
        let a = vec![file("x/a.rego", "package x"), file("x/data.json", "{}")];
        let reordered = vec![file("x/data.json", "{}"), file("x/a.rego", "package x")];
        assert_eq!(revision(&a), revision(&reordered));
        let changed = vec![file("x/a.rego", "package x "), file("x/data.json", "{}")];
        assert_ne!(revision(&a), revision(&changed));
        // Moving bytes between the path and the content must change the revision.
        assert_ne!(revision(&[file("ab", "c")]), revision(&[file("a", "bc")]));
    }

    #[test]
    fn roots_are_first_segments_or_everything() {
        let files = vec![
            file("ligand/authz/policy.rego", ""),
            file("ligand/lib/util.rego", ""),
            file("shared/data.json", "{}"),
        ];
        assert_eq!(roots(&files), ["ligand", "shared"]);
        let with_root_file = vec![file("ligand/a.rego", ""), file("data.json", "{}")];
        assert_eq!(roots(&with_root_file), [""]);
    }

    #[test]
    fn overlay_refuses_shadowing_and_empty_services() {
        let lib = vec![file("ligand/lib/util.rego", "package ligand.lib")];
        let merged = overlay(&lib, vec![file("ligand/authz/p.rego", "")]).unwrap_or_default();
        assert_eq!(merged.len(), 2);
        assert!(matches!(
            overlay(&lib, vec![file("ligand/lib/util.rego", "evil")]),
            Err(BuildError::Conflict { path }) if path == "ligand/lib/util.rego"
        ));
        assert!(matches!(overlay(&lib, Vec::new()), Err(BuildError::Empty)));
    }

    #[test]
    fn bundle_names_are_path_segment_safe() {
        for ok in ["accounts", "fraud-v2", "a.b_c"] {
            assert!(is_valid_bundle_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", "a%2f"] {
            assert!(!is_valid_bundle_name(bad), "{bad}");
        }
    }
}
