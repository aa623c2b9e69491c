#![doc = include_str!("../LINT.md")]

pub(crate) mod allow;
mod files;
pub(crate) mod manifest;
pub(crate) mod rules;
mod scope;
mod visit;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use syn::Item;

pub(crate) use self::allow::Allowance;
pub(crate) use self::visit::analyze;

/// Package names of the framework's own crates, which the lint leaves alone.
const FRAMEWORK_CRATES: &[&str] = &["ligand", "ligand-runtime", "ligand-macros"];
const PROVIDER_PREFIXES: &[&str] = &[
    "ligand-identity-",
    "ligand-policy-",
    "ligand-ratelimit-",
    "ligand-secrets-",
    "ligand-registry-",
    "ligand-bundle-",
    "ligand-telemetry-",
    "ligand-opa-",
];

/// Whether the crate being compiled is part of the framework.
pub(crate) fn is_framework_crate(package: &str) -> bool {
    FRAMEWORK_CRATES.contains(&package)
        || PROVIDER_PREFIXES
            .iter()
            .any(|prefix| package.starts_with(prefix))
}

/// The environment of the crate being compiled, as Cargo sets it for rustc.
#[derive(Debug, Clone)]
pub(crate) struct CrateEnv {
    pub(crate) package: String,
    pub(crate) manifest_dir: PathBuf,
}

impl CrateEnv {
    pub(crate) fn from_env() -> Option<Self> {
        Some(CrateEnv {
            package: std::env::var("CARGO_PKG_NAME").unwrap_or_default(),
            manifest_dir: std::env::var_os("CARGO_MANIFEST_DIR")?.into(),
        })
    }

    fn renames(&self) -> HashMap<String, String> {
        manifest::read(&self.manifest_dir)
            .map(|manifest| manifest.renames)
            .unwrap_or_default()
    }
}

/// Lints a macro's input: one error per violation, each at its span.
pub(crate) fn lint_input(item: &Item, env: Option<&CrateEnv>) -> Vec<syn::Error> {
    if env.is_some_and(|env| is_framework_crate(&env.package)) {
        return Vec::new();
    }
    let renames = env.map(CrateEnv::renames).unwrap_or_default();
    let analysis = analyze(std::slice::from_ref(item), &renames, 0, false);
    analysis
        .findings
        .iter()
        .map(|finding| syn::Error::new_spanned(&finding.tokens, finding.message()))
        .collect()
}

/// What the crate scan of `#[ligand::main]` found, as plain data (no tokens), so it can be
/// computed with syn's own span tracking and turned into compiler tokens afterwards.
#[derive(Debug, Default)]
pub(crate) struct CrateScan {
    /// One message per violation or unreadable file, each with `file:line:col` and rule id.
    pub(crate) errors: Vec<String>,
    /// Every file read, absolute: the generated code `include_bytes!`s them.
    pub(crate) tracked: Vec<PathBuf>,
    pub(crate) allowances: Vec<Allowance>,
}

/// Scans the crate whose root module is `root` and whose manifest is in `env.manifest_dir`.
/// Violations inside items annotated `#[ligand::main]` or `#[ligand::service]` are left to
/// those macros, which report them at their spans.
pub(crate) fn scan_crate(root: &Path, env: &CrateEnv) -> CrateScan {
    let mut scan = CrateScan::default();
    if is_framework_crate(&env.package) {
        return scan;
    }
    let shown = |path: &Path| display_path(path, &env.manifest_dir);
    let renames = match manifest::read(&env.manifest_dir) {
        Ok(manifest) => {
            let file = shown(&manifest.path);
            for banned in &manifest.banned {
                let package = if banned.package == banned.name {
                    String::new()
                } else {
                    format!(" (package `{}`)", banned.package)
                };
                scan.errors.push(format!(
                    "{file}:{}:{}: [{}] dependency `{}`{package} is not allowed in a Ligand service: {}",
                    banned.line,
                    banned.column,
                    banned.rule,
                    banned.name,
                    banned.rule.advice(),
                ));
            }
            scan.tracked
                .extend(manifest.files.iter().map(|f| absolute(f)));
            manifest.renames
        }
        Err(err) => {
            scan.errors
                .push(format!("ligand lint could not read the manifest: {err}"));
            HashMap::new()
        }
    };
    let _fallback = Fallback::enter();
    let tree = match files::load(root) {
        Ok(tree) => tree,
        Err(err) => {
            scan.errors
                .push(format!("ligand lint could not read the crate: {err}"));
            return scan;
        }
    };
    for (path, err) in &tree.unreadable {
        scan.errors.push(format!(
            "ligand lint could not parse {}, so it cannot vouch for it: {err}",
            shown(path)
        ));
        scan.tracked.push(absolute(path));
    }
    scan.tracked
        .extend(tree.files.iter().map(|file| absolute(&file.path)));
    let analysis = analyze(&tree.root.items, &renames, 0, true);
    let file_name = |index: usize| {
        tree.files
            .get(index)
            .map_or_else(String::new, |file| shown(&file.path))
    };
    for finding in &analysis.findings {
        scan.errors.push(format!(
            "{}:{}:{}: {}",
            file_name(finding.file),
            finding.line,
            finding.column,
            finding.message()
        ));
    }
    for granted in analysis.allowances {
        for rule in &granted.allow.rules {
            scan.allowances.push(Allowance {
                file: file_name(granted.file),
                line: granted.line,
                rule: *rule,
                reason: granted.allow.reason.clone(),
            });
        }
    }
    scan
}

/// `path` relative to the manifest directory when inside it, as users see their files.
fn display_path(path: &Path, manifest_dir: &Path) -> String {
    let path = absolute(path);
    path.strip_prefix(manifest_dir)
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// Paths the compiler hands out are relative to its working directory.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// Inside a procedural macro, tokens parsed from a string carry no source positions. While
/// this guard lives, proc-macro2 uses its own implementation, whose spans know their line and
/// column; none of those tokens may leave the scan (the scan returns plain data).
struct Fallback {
    forced: bool,
}

impl Fallback {
    fn enter() -> Self {
        let forced = proc_macro::is_available();
        if forced {
            proc_macro2::fallback::force();
        }
        Fallback { forced }
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        if self.forced {
            // Frees the source text proc-macro2 keeps for span positions.
            proc_macro2::extra::invalidate_current_thread_spans();
            proc_macro2::fallback::unforce();
        }
    }
}

/// The rebuild tracking for `files`: `const _: &[u8] = include_bytes!("/abs/path");` each.
pub(crate) fn track(files: &[PathBuf]) -> TokenStream {
    let files = files.iter().filter_map(|file| file.to_str());
    quote::quote! {
        #(const _: &[u8] = ::core::include_bytes!(#files);)*
    }
}
