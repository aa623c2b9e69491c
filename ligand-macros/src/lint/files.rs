//! The crate's module tree on disk: from the root file (the one holding `#[ligand::main]`)
//! through every `mod name;`, `#[path = "…"] mod name;` and inline `mod name { … }`, each file
//! parsed once and spliced into its declaration, so the lint walks one tree.

use std::fs;
use std::path::{Path, PathBuf};

use syn::{Attribute, Item, ItemMod, Lit, Meta};

/// The attribute marking a module whose items were read from `files[index]`.
pub(crate) const FILE_MARKER: &str = "__ligand_lint_file";

/// The attribute marking a module that stands for an `include!`: its items belong to the
/// enclosing module.
const INCLUDED_MARKER: &str = "__ligand_lint_included";

/// Module trees deeper than this are cut off (real crates stay far below).
const MAX_DEPTH: usize = 64;

/// A source file that was read.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
}

/// The parsed crate: the root file with every file module spliced in.
#[derive(Debug)]
pub(crate) struct CrateTree {
    pub(crate) root: syn::File,
    /// Every file read, the root first; index `i` is what [`FILE_MARKER`] carries.
    pub(crate) files: Vec<SourceFile>,
    /// Files that exist but do not parse: the lint cannot vouch for them.
    pub(crate) unreadable: Vec<(PathBuf, String)>,
}

/// Reads the module tree rooted at `root`. A missing module file is skipped: the compiler
/// reports it, or the module is disabled by `#[cfg]`.
pub(crate) fn load(root: &Path) -> Result<CrateTree, String> {
    let text = fs::read_to_string(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut file = syn::parse_file(&text).map_err(|e| {
        let start = e.span().start();
        format!(
            "{}:{}:{}: {e}",
            root.display(),
            start.line,
            start.column + 1
        )
    })?;
    let mut tree = CrateTree {
        root: syn::File {
            shebang: None,
            attrs: Vec::new(),
            items: Vec::new(),
        },
        files: vec![SourceFile {
            path: root.to_owned(),
        }],
        unreadable: Vec::new(),
    };
    let dir = root.parent().map(Path::to_owned).unwrap_or_default();
    let places = Places {
        file_dir: dir.clone(),
        mod_dir: dir,
        inline: false,
    };
    splice(&mut tree, &mut file.items, &places, 0);
    tree.root = file;
    Ok(tree)
}

/// Where the module declarations of one item list look for their files.
struct Places {
    /// The directory of the file holding the declarations.
    file_dir: PathBuf,
    /// The directory of the declaring module's children.
    mod_dir: PathBuf,
    /// Inside an inline `mod { … }`, where `#[path]` is relative to `mod_dir`.
    inline: bool,
}

fn splice(tree: &mut CrateTree, items: &mut [Item], places: &Places, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for item in items {
        let Item::Mod(module) = item else { continue };
        let name = module.ident.to_string();
        let explicit = path_attr(&module.attrs);
        match &mut module.content {
            Some((_, items)) => {
                let mod_dir = match &explicit {
                    Some(path) => places.mod_dir.join(path),
                    None => places.mod_dir.join(&name),
                };
                let inner = Places {
                    file_dir: places.file_dir.clone(),
                    mod_dir,
                    inline: true,
                };
                splice(tree, items, &inner, depth + 1);
            }
            None => {
                let candidates = match &explicit {
                    Some(path) if places.inline => vec![places.mod_dir.join(path)],
                    Some(path) => vec![places.file_dir.join(path)],
                    None => vec![
                        places.mod_dir.join(format!("{name}.rs")),
                        places.mod_dir.join(&name).join("mod.rs"),
                    ],
                };
                let Some(path) = candidates.into_iter().find(|path| path.is_file()) else {
                    continue;
                };
                if tree.files.iter().any(|file| file.path == path) {
                    continue;
                }
                load_module(tree, module, &path, explicit.is_some(), &name, depth);
            }
        }
    }
}

fn load_module(
    tree: &mut CrateTree,
    module: &mut ItemMod,
    path: &Path,
    explicit: bool,
    name: &str,
    depth: usize,
) {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            tree.unreadable.push((path.to_owned(), err.to_string()));
            return;
        }
    };
    let mut file = match syn::parse_file(&text) {
        Ok(file) => file,
        Err(err) => {
            let start = err.span().start();
            let message = format!("{}:{}: {err}", start.line, start.column + 1);
            tree.unreadable.push((path.to_owned(), message));
            return;
        }
    };
    let index = tree.files.len();
    tree.files.push(SourceFile {
        path: path.to_owned(),
    });
    let file_dir = path.parent().map(Path::to_owned).unwrap_or_default();
    // A `mod.rs` or a `#[path]` file declares its children next to itself; `name.rs` declares
    // them in `name/`.
    let is_mod_rs = explicit || path.file_name().is_some_and(|file| file == "mod.rs");
    let mod_dir = if is_mod_rs {
        file_dir.clone()
    } else {
        file_dir.join(name)
    };
    let places = Places {
        file_dir,
        mod_dir,
        inline: false,
    };
    splice(tree, &mut file.items, &places, depth + 1);
    let marker: Attribute = syn::parse_quote!(#[__ligand_lint_file(#index)]);
    module.attrs.push(marker);
    module.content = Some((Default::default(), file.items));
}

/// The value of `#[path = "…"]`, if present.
fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(lit) => match &lit.lit {
                Lit::Str(s) => Some(s.value()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

/// The file index carried by a spliced module's marker.
pub(crate) fn marker(attrs: &[Attribute]) -> Option<usize> {
    attrs.iter().find_map(|attr| {
        if !attr.path().is_ident(FILE_MARKER) {
            return None;
        }
        attr.parse_args::<syn::LitInt>().ok()?.base10_parse().ok()
    })
}

/// Whether a spliced module stands for an `include!`.
pub(crate) fn is_included(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| attr.path().is_ident(INCLUDED_MARKER))
}

#[cfg(test)]
mod tests;
