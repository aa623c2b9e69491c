//! The package's targets, as Cargo finds them: `[lib]`, `[[bin]]` and `[[example]]` entries of
//! `Cargo.toml` and the autodiscovered `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`,
//! `src/bin/*/main.rs`, `examples/*.rs` and `examples/*/main.rs`. Each is its own crate with its
//! own module tree; the library is linked into every binary, so a socket there is a socket in the
//! service.
//!
//! Files where Cargo looks for targets are listed even when `autobins = false` (or the like)
//! turns discovery off: a file the lint reads for nothing costs less than one it misses.
//! `[[test]]`, `[[bench]]`, `tests/` and `benches/` are not listed: they are built only by
//! `cargo test` and `cargo bench`, never into the service.

use std::fs;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// What kind of crate a target is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Lib,
    Bin,
    Example,
}

impl Kind {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Lib => "library",
            Kind::Bin => "binary",
            Kind::Example => "example",
        }
    }
}

/// One target: its kind, its name and its root file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
}

/// The targets of the package whose manifest is `dir/Cargo.toml`, explicit ones first.
pub(crate) fn discover(dir: &Path) -> Result<Vec<Target>, String> {
    let path = dir.join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table = DeTable::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let table = table.get_ref();
    let package = get(table, "package")
        .and_then(|package| match package {
            DeValue::Table(package) => string(package, "name"),
            _ => None,
        })
        .unwrap_or_default();
    let mut targets = Vec::new();
    // Explicit entries.
    if let Some(DeValue::Table(lib)) = get(table, "lib") {
        let name = string(lib, "name").unwrap_or_else(|| package.replace('-', "_"));
        let path = string(lib, "path").map_or_else(|| dir.join("src/lib.rs"), |p| dir.join(p));
        targets.push(Target {
            kind: Kind::Lib,
            name,
            path,
        });
    }
    for (key, kind, folder) in [
        ("bin", Kind::Bin, "src/bin"),
        ("example", Kind::Example, "examples"),
    ] {
        let Some(DeValue::Array(entries)) = get(table, key) else {
            continue;
        };
        for entry in entries.iter() {
            let DeValue::Table(entry) = entry.get_ref() else {
                continue;
            };
            let name = string(entry, "name").unwrap_or_default();
            let path = match string(entry, "path") {
                Some(path) => dir.join(path),
                None => {
                    let flat = dir.join(folder).join(format!("{name}.rs"));
                    let nested = dir.join(folder).join(&name).join("main.rs");
                    let main = dir.join("src/main.rs");
                    if nested.is_file() && !flat.is_file() {
                        nested
                    } else if kind == Kind::Bin && name == package && !flat.is_file() {
                        main
                    } else {
                        flat
                    }
                }
            };
            targets.push(Target { kind, name, path });
        }
    }
    // Autodiscovered files.
    let lib = dir.join("src/lib.rs");
    if lib.is_file() {
        targets.push(Target {
            kind: Kind::Lib,
            name: package.replace('-', "_"),
            path: lib,
        });
    }
    let main = dir.join("src/main.rs");
    if main.is_file() {
        targets.push(Target {
            kind: Kind::Bin,
            name: package.clone(),
            path: main,
        });
    }
    for (kind, folder) in [(Kind::Bin, "src/bin"), (Kind::Example, "examples")] {
        for (name, path) in discover_folder(&dir.join(folder)) {
            targets.push(Target { kind, name, path });
        }
    }
    let mut seen = Vec::new();
    targets.retain(|target| {
        let new = !seen.contains(&target.path);
        seen.push(target.path.clone());
        new
    });
    Ok(targets)
}

/// `folder/*.rs` and `folder/*/main.rs`, by name, sorted for a stable report.
fn discover_folder(folder: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.is_file() && path.extension().is_some_and(|ext| ext == "rs") {
            found.push((stem, path));
        } else if path.join("main.rs").is_file() {
            found.push((stem, path.join("main.rs")));
        }
    }
    found.sort();
    found
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t DeValue<'i>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v.get_ref())
}

fn string(table: &DeTable<'_>, key: &str) -> Option<String> {
    match get(table, key)? {
        DeValue::String(value) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
