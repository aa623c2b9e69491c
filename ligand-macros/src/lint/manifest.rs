//! The service's `Cargo.toml`: a dependency on a banned crate is reported even before any code
//! uses it, and renamed dependencies (`http = { package = "reqwest", … }`) tell the path
//! resolver which crate a name really is.
//!
//! Read: `[dependencies]` and `[target.'cfg(…)'.dependencies]`, with `workspace = true` entries
//! looked up in the workspace root's `[workspace.dependencies]`. Not read: `[dev-dependencies]`
//! and `[build-dependencies]`, which never reach the service binary.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::rules::{self, Rule};

/// A banned dependency, at its key in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BannedDependency {
    pub(crate) rule: Rule,
    /// The key as written, such as `http` for `http = { package = "reqwest" }`.
    pub(crate) name: String,
    pub(crate) package: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// What the manifest tells the lint.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    pub(crate) path: PathBuf,
    /// Code name (`-` as `_`) → package crate name (`-` as `_`), for renamed entries.
    pub(crate) renames: HashMap<String, String>,
    pub(crate) banned: Vec<BannedDependency>,
    /// Manifests read, for rebuild tracking: the package's and the workspace root's.
    pub(crate) files: Vec<PathBuf>,
}

/// Reads `dir/Cargo.toml`.
pub(crate) fn read(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut manifest = analyze(&text, |key| workspace_dependency(dir, key))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    manifest.files.insert(0, path.clone());
    manifest.path = path;
    Ok(manifest)
}

/// One dependency entry, reduced to what the rules need.
struct Entry {
    package: Option<String>,
    features: Vec<String>,
    workspace: bool,
}

/// Analyses manifest text; `inherit` resolves a `workspace = true` entry to
/// `(package, features, manifest read)` from the workspace root.
pub(crate) fn analyze(
    text: &str,
    inherit: impl Fn(&str) -> Option<(Option<String>, Vec<String>, PathBuf)>,
) -> Result<Manifest, String> {
    let table = DeTable::parse(text).map_err(|e| e.to_string())?;
    let mut manifest = Manifest::default();
    let mut tables: Vec<&DeTable<'_>> = Vec::new();
    if let Some(DeValue::Table(deps)) = get(table.get_ref(), "dependencies") {
        tables.push(deps);
    }
    if let Some(DeValue::Table(targets)) = get(table.get_ref(), "target") {
        for (_, target) in targets.iter() {
            if let DeValue::Table(target) = target.get_ref()
                && let Some(DeValue::Table(deps)) = get(target, "dependencies")
            {
                tables.push(deps);
            }
        }
    }
    for deps in tables {
        for (key, value) in deps.iter() {
            let name = key.get_ref().to_string();
            let mut entry = entry(value.get_ref());
            if entry.workspace
                && let Some((package, features, file)) = inherit(&name)
            {
                entry.package = entry.package.or(package);
                entry.features.extend(features);
                if !manifest.files.contains(&file) {
                    manifest.files.push(file);
                }
            }
            let package = entry.package.unwrap_or_else(|| name.clone());
            let code_name = name.replace('-', "_");
            let crate_name = package.replace('-', "_");
            if code_name != crate_name {
                manifest.renames.insert(code_name, crate_name);
            }
            if let Some(rule) = rules::check_dependency(&package, &entry.features) {
                let (line, column) = line_column(text, key.span().start);
                manifest.banned.push(BannedDependency {
                    rule,
                    name,
                    package,
                    line,
                    column,
                });
            }
        }
    }
    // The parsed tables are ordered by key; report in the order of the file.
    manifest
        .banned
        .sort_by_key(|banned| (banned.line, banned.column));
    Ok(manifest)
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t DeValue<'i>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v.get_ref())
}

fn entry(value: &DeValue<'_>) -> Entry {
    let mut entry = Entry {
        package: None,
        features: Vec::new(),
        workspace: false,
    };
    let DeValue::Table(table) = value else {
        return entry;
    };
    if let Some(DeValue::String(package)) = get(table, "package") {
        entry.package = Some(package.to_string());
    }
    if let Some(DeValue::Boolean(true)) = get(table, "workspace") {
        entry.workspace = true;
    }
    if let Some(DeValue::Array(features)) = get(table, "features") {
        entry.features = features
            .iter()
            .filter_map(|feature: &Spanned<DeValue<'_>>| match feature.get_ref() {
                DeValue::String(feature) => Some(feature.to_string()),
                _ => None,
            })
            .collect();
    }
    entry
}

/// `[workspace.dependencies.<key>]` of the nearest manifest, from `dir` upward, that has a
/// `[workspace]` table.
fn workspace_dependency(dir: &Path, key: &str) -> Option<(Option<String>, Vec<String>, PathBuf)> {
    for ancestor in dir.ancestors() {
        let path = ancestor.join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Ok(table) = DeTable::parse(&text) else {
            continue;
        };
        let Some(DeValue::Table(workspace)) = get(table.get_ref(), "workspace") else {
            continue;
        };
        let DeValue::Table(deps) = get(workspace, "dependencies")? else {
            return None;
        };
        let entry = entry(get(deps, key)?);
        return Some((entry.package, entry.features, path));
    }
    None
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |line| line.chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
