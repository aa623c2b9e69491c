#![doc = include_str!("../LINT.md")]

pub(crate) mod allow;
mod files;
pub(crate) mod manifest;
pub(crate) mod rules;
mod scope;
mod targets;
mod visit;

#[cfg(test)]
mod tempdir;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use proc_macro2::TokenStream;
use syn::Item;

pub(crate) use self::allow::Allowance;
pub(crate) use self::visit::analyze;

/// The environment of the crate being compiled, as Cargo and rustdoc set it for rustc.
#[derive(Debug, Clone)]
pub(crate) struct CrateEnv {
    pub(crate) manifest_dir: PathBuf,
    /// The binary or example being compiled (`CARGO_BIN_NAME`); unset for libraries, tests,
    /// benches and doctests.
    pub(crate) bin_name: Option<String>,
    /// Set when rustdoc compiles a standalone doctest (`UNSTABLE_RUSTDOC_TEST_PATH`).
    pub(crate) rustdoc: bool,
}

impl CrateEnv {
    pub(crate) fn from_env() -> Option<Self> {
        Some(CrateEnv {
            manifest_dir: std::env::var_os("CARGO_MANIFEST_DIR")?.into(),
            bin_name: std::env::var("CARGO_BIN_NAME").ok(),
            rustdoc: std::env::var_os("UNSTABLE_RUSTDOC_TEST_PATH").is_some(),
        })
    }

    /// A crate at `manifest_dir` compiled as the binary `bin_name`.
    #[cfg(test)]
    pub(crate) fn bin(manifest_dir: &Path, bin_name: &str) -> Self {
        CrateEnv {
            manifest_dir: manifest_dir.to_owned(),
            bin_name: Some(bin_name.to_owned()),
            rustdoc: false,
        }
    }

    fn renames(&self) -> HashMap<String, String> {
        manifest::read(&self.manifest_dir)
            .map(|manifest| manifest.renames)
            .unwrap_or_default()
    }

    /// Whether `#[ligand::main]` is expanding in a doctest: rustdoc compiles a standalone one
    /// with its variable set, and merged ones from a file outside the package. A doctest is
    /// built only by `cargo test --doc`, never into the service (like `tests/`).
    fn is_doctest(&self, attr_file: Option<&Path>) -> bool {
        self.bin_name.is_none()
            && (self.rustdoc
                || attr_file.is_none_or(|file| !absolute(file).starts_with(&self.manifest_dir)))
    }
}

/// Lints a macro's input: one error per violation, each at its span.
pub(crate) fn lint_input(item: &Item, env: Option<&CrateEnv>) -> Vec<syn::Error> {
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

/// Scans the package whose manifest is in `env.manifest_dir`, for a `#[ligand::main]` written
/// in `attr_file`: its manifest, and every library, binary and example target from its root
/// file (wherever the attribute is, even in an `include!`d file). A binary or example whose
/// root holds its own `#[ligand::main]` is left to that attribute, which scans the package
/// when that target is built, and one whose root lies outside the package directory is not
/// the package's source; the target being compiled and the library are always scanned. When
/// the attribute is in a file of no target (a test), that file's module tree is scanned too.
///
/// Violations inside items annotated `#[ligand::main]`, `#[ligand::service]` or
/// `#[ligand::client]` are left to those macros, which report them at their spans.
pub(crate) fn scan_crate(attr_file: Option<&Path>, env: &CrateEnv) -> CrateScan {
    let mut scan = CrateScan::default();
    if env.is_doctest(attr_file) {
        return scan;
    }
    let shown = |path: &Path| display_path(path, &env.manifest_dir);
    let manifest = manifest::read(&env.manifest_dir);
    let manifest_read = manifest.is_ok();
    let renames = match manifest {
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
    let targets = match targets::discover(&env.manifest_dir) {
        Ok(targets) => targets,
        Err(err) => {
            // The manifest error says it already.
            if manifest_read {
                scan.errors.push(format!(
                    "ligand lint could not list the package's targets: {err}"
                ));
            }
            Vec::new()
        }
    };
    let attr_file = attr_file.map(absolute);
    let _fallback = Fallback::enter();
    let mut covered = false;
    for target in &targets {
        let tree = match files::load(&target.path) {
            Ok(tree) => tree,
            Err(err) => {
                scan.errors.push(format!(
                    "ligand lint could not read the {} target `{}`, so it cannot vouch for it: {err}",
                    target.kind.noun(),
                    target.name
                ));
                scan.tracked.push(absolute(&target.path));
                continue;
            }
        };
        let holds_attr = attr_file
            .as_ref()
            .is_some_and(|attr| tree.files.iter().any(|file| absolute(&file.path) == *attr));
        covered |= holds_attr;
        let current = holds_attr
            || (target.kind != targets::Kind::Lib
                && env.bin_name.as_deref() == Some(target.name.as_str()));
        let outside = !absolute(&target.path).starts_with(&env.manifest_dir);
        if !current && target.kind != targets::Kind::Lib && (outside || holds_main(&tree.root)) {
            // Linted by its own `#[ligand::main]` whenever it is built; or not the package's
            // own source (trybuild's generated package points every case elsewhere).
            scan.tracked.push(absolute(&target.path));
            continue;
        }
        scan_tree(&mut scan, &tree, &renames, &shown);
    }
    if !covered
        && let Some(attr_file) = attr_file
        && attr_file.starts_with(&env.manifest_dir)
    {
        match files::load(&attr_file) {
            Ok(tree) => scan_tree(&mut scan, &tree, &renames, &shown),
            Err(err) => scan
                .errors
                .push(format!("ligand lint could not read the crate: {err}")),
        }
    }
    dedup(&mut scan.errors);
    dedup(&mut scan.tracked);
    scan
}

/// Reports what one target's tree holds.
fn scan_tree(
    scan: &mut CrateScan,
    tree: &files::CrateTree,
    renames: &HashMap<String, String>,
    shown: &impl Fn(&Path) -> String,
) {
    for error in &tree.errors {
        scan.errors.push(format!(
            "{}:{}:{}: [unverified] {}",
            shown(&error.path),
            error.line,
            error.column,
            error.message
        ));
        scan.tracked.push(absolute(&error.path));
    }
    scan.tracked
        .extend(tree.files.iter().map(|file| absolute(&file.path)));
    let analysis = analyze(&tree.root.items, renames, 0, true);
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
            let allowance = Allowance {
                file: file_name(granted.file),
                line: granted.line,
                rule: *rule,
                reason: granted.allow.reason.clone(),
            };
            let listed = scan.allowances.iter().any(|a| {
                (&a.file, a.line, a.rule) == (&allowance.file, allowance.line, allowance.rule)
            });
            if !listed {
                scan.allowances.push(allowance);
            }
        }
    }
}

/// Whether a target's root file holds `#[ligand::main]` on an item of its own (an `include!`d
/// one counts), with no `cfg` that could remove it: then that attribute lints the target.
fn holds_main(root: &syn::File) -> bool {
    fn holds(items: &[Item]) -> bool {
        items.iter().any(|item| match item {
            Item::Mod(module) if files::is_included(&module.attrs) => module
                .content
                .as_ref()
                .is_some_and(|(_, items)| holds(items)),
            Item::Fn(function) => {
                function.attrs.iter().any(allow::is_main)
                    && !function
                        .attrs
                        .iter()
                        .any(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"))
            }
            _ => false,
        })
    }
    holds(&root.items)
}

/// Removes repeats, keeping the first of each (a file in two targets is reported once).
fn dedup<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(items.len());
    items.retain(|item| {
        let new = !seen.contains(item);
        if new {
            seen.push(item.clone());
        }
        new
    });
}

/// `path` relative to the manifest directory when inside it, as users see their files.
fn display_path(path: &Path, manifest_dir: &Path) -> String {
    let path = absolute(path);
    path.strip_prefix(manifest_dir)
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// Paths the compiler hands out are relative to its working directory; manifests may say
/// `../`. Absolute, with `.` and `..` resolved lexically, so paths compare as locations.
fn absolute(path: &Path) -> PathBuf {
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_owned())
    };
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
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
