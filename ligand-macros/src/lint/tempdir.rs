//! Temporary package directories for the crate-scan tests, and how those tests read a scan.

use std::fs;
use std::path::PathBuf;

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ligand-lint-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub(crate) fn write(&self, path: &str, text: &str) -> PathBuf {
        let path = self.0.join(path);
        fs::create_dir_all(path.parent().expect("has parent")).expect("dirs");
        fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The scan's messages, sorted, each cut before the advice.
pub(crate) fn heads(scan: &super::CrateScan) -> Vec<String> {
    let mut errors: Vec<_> = scan
        .errors
        .iter()
        .map(|e| {
            e.split(" is not allowed")
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    errors.sort();
    errors
}
