//! A target's module tree on disk: from its root file through every `mod name;` (with
//! `#[path]` and `#[cfg_attr(…, path = "…")]`), inline `mod name { … }`, modules declared inside
//! function bodies and module-level `include!`, each file parsed and spliced into its
//! declaration, so the lint walks one tree. Directories follow rustc's rules (`name.rs` declares
//! its children in `name/`, `mod.rs` and `#[path]` files next to themselves, a block only with
//! `#[path]`). What it cannot find or read is recorded: the lint cannot vouch for it.

use std::fs;
use std::path::{Path, PathBuf};

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, Item, ItemMacro, ItemMod, Lit, Macro, Meta, Stmt, Token};

/// The attribute marking a module whose items were read from `files[index]`.
pub(crate) const FILE_MARKER: &str = "__ligand_lint_file";

/// The attribute marking a module that stands for an `include!`: its items belong to the
/// enclosing module.
const INCLUDED_MARKER: &str = "__ligand_lint_included";

/// Files nested deeper than this are not read (real crates stay far below).
const MAX_DEPTH: usize = 64;

/// A source file that was read.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
}

/// Something in the tree the lint could not read, at the declaration that names it.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub(crate) path: PathBuf,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// The parsed target: the root file with every file module and inclusion spliced in.
#[derive(Debug)]
pub(crate) struct CrateTree {
    pub(crate) root: syn::File,
    /// Every file read, the root first; index `i` is what [`FILE_MARKER`] carries. A file
    /// declared twice is read twice: what its paths mean depends on where it is declared.
    pub(crate) files: Vec<SourceFile>,
    /// Files that are missing, do not parse, or cannot be located.
    pub(crate) errors: Vec<LoadError>,
}

/// Reads the module tree rooted at `root`. Only an unreadable root is an `Err`; every other
/// problem is in [`CrateTree::errors`].
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
        errors: Vec::new(),
    };
    let mut loader = Loader {
        tree: &mut tree,
        dir: Dir {
            path: parent(root),
            ownership: Ownership::Owned { relative: None },
        },
        chain: vec![root.to_owned()],
    };
    loader.items(&mut file.items);
    tree.root = file;
    Ok(tree)
}

/// Where the module declarations of the current item list look for files, as rustc tracks it.
#[derive(Clone, Debug)]
struct Dir {
    /// The directory of the current module (for `name.rs`, the directory holding it).
    path: PathBuf,
    ownership: Ownership,
}

#[derive(Clone, Debug)]
enum Ownership {
    /// In a module; `relative` is `name` for a `name.rs` file, whose children live in `name/`.
    Owned { relative: Option<String> },
    /// In a function body or other block: only `#[path]` modules may be declared.
    Block,
}

struct Loader<'t> {
    tree: &'t mut CrateTree,
    dir: Dir,
    /// The files being read, outermost first; the last is the current one.
    chain: Vec<PathBuf>,
}

// === impl Loader ===

impl Loader<'_> {
    fn current_file(&self) -> PathBuf {
        self.chain.last().cloned().unwrap_or_default()
    }

    fn error(&mut self, span: Span, message: String) {
        let start = span.start();
        self.tree.errors.push(LoadError {
            path: self.current_file(),
            line: start.line,
            column: start.column + 1,
            message,
        });
    }

    /// Splices the files of one item list: module files, alternatives chosen by `cfg_attr`,
    /// inclusions; and looks inside every other item for modules declared in blocks.
    fn items(&mut self, items: &mut Vec<Item>) {
        for item in std::mem::take(items) {
            match item {
                Item::Mod(module) => items.extend(self.module(module)),
                Item::Macro(mac) if is_include(&mac.mac) => items.extend(self.include(mac)),
                mut item => {
                    visit_mut::visit_item_mut(self, &mut item);
                    items.push(item);
                }
            }
        }
    }

    /// One module declaration, as one module or, when `cfg_attr` may give it different files,
    /// one module per file (the lint cannot evaluate `cfg`, so it reads them all).
    fn module(&mut self, mut module: ItemMod) -> Vec<Item> {
        let name = unraw(&module.ident);
        let paths = path_attrs(&module.attrs);
        let span = module.mod_token.span;
        if let Some((_, items)) = &mut module.content {
            if !paths.conditional.is_empty() {
                self.error(
                    span,
                    format!(
                        "ligand lint does not follow `#[cfg_attr(…, path = \"…\")]` on the inline \
                         module `{name}`; use `#[path]` or move the attribute to a `mod {name};`"
                    ),
                );
            }
            let inner = match paths.fixed.first() {
                Some(path) => Dir {
                    path: self.dir.path.join(path),
                    ownership: Ownership::Owned { relative: None },
                },
                None => {
                    let mut path = self.dir.path.clone();
                    let ownership = match &self.dir.ownership {
                        Ownership::Owned { relative } => {
                            if let Some(relative) = relative {
                                path.push(relative);
                            }
                            Ownership::Owned { relative: None }
                        }
                        Ownership::Block => Ownership::Block,
                    };
                    path.push(&name);
                    Dir { path, ownership }
                }
            };
            let outer = std::mem::replace(&mut self.dir, inner);
            self.items(items);
            self.dir = outer;
            return vec![Item::Mod(module)];
        }
        let mut candidates = Vec::new();
        for path in paths.fixed.iter().chain(&paths.conditional) {
            candidates.push(Candidate {
                path: self.dir.path.join(path),
                relative: None,
                required: true,
            });
        }
        if paths.fixed.is_empty() {
            // With only conditional paths, the default file is used when no condition holds;
            // rustc then requires it, so a missing one is not a way around the lint.
            let required = paths.conditional.is_empty();
            match self.default_file(&name, span, required) {
                Some(candidate) => candidates.push(candidate),
                None if required => return vec![Item::Mod(module)],
                None => {}
            }
        }
        let mut out = Vec::new();
        for candidate in candidates {
            if !candidate.path.is_file() {
                if candidate.required {
                    self.error(
                        span,
                        format!(
                            "ligand lint could not find the file of `mod {name};` at {}, so it \
                             cannot vouch for it; create the file or remove the declaration",
                            candidate.path.display()
                        ),
                    );
                }
                continue;
            }
            let child = Dir {
                path: parent(&candidate.path),
                ownership: Ownership::Owned {
                    relative: candidate.relative,
                },
            };
            if let Some((index, items)) = self.read(&candidate.path, span, child) {
                let mut module = module.clone();
                let marker: Attribute = syn::parse_quote!(#[__ligand_lint_file(#index)]);
                module.attrs.push(marker);
                module.content = Some((Default::default(), items));
                out.push(Item::Mod(module));
            }
        }
        if out.is_empty() {
            out.push(Item::Mod(module));
        }
        out
    }

    /// The file of `mod name;` without `#[path]`: `name.rs` or `name/mod.rs` in the module's
    /// directory. `None` after recording why when there is none to read.
    fn default_file(&mut self, name: &str, span: Span, required: bool) -> Option<Candidate> {
        let Ownership::Owned { relative } = &self.dir.ownership else {
            self.error(
                span,
                format!(
                    "ligand lint could not locate `mod {name};` declared in a block without \
                     `#[path]`; give it a `#[path = \"…\"]`"
                ),
            );
            return None;
        };
        let mut base = self.dir.path.clone();
        if let Some(relative) = relative {
            base.push(relative);
        }
        let flat = base.join(format!("{name}.rs"));
        let nested = base.join(name).join("mod.rs");
        match (flat.is_file(), nested.is_file()) {
            (true, true) => {
                self.error(
                    span,
                    format!(
                        "ligand lint found two files for `mod {name};` ({} and {}); keep one",
                        flat.display(),
                        nested.display()
                    ),
                );
                None
            }
            (false, true) => Some(Candidate {
                path: nested,
                relative: None,
                required,
            }),
            (true, false) => Some(Candidate {
                path: flat,
                relative: Some(name.to_owned()),
                required,
            }),
            (false, false) => {
                if required {
                    self.error(
                        span,
                        format!(
                            "ligand lint could not find the file of `mod {name};` (neither {} nor \
                             {}), so it cannot vouch for it; create the file or remove the \
                             declaration",
                            flat.display(),
                            nested.display()
                        ),
                    );
                }
                None
            }
        }
    }

    /// A module-level `include!`: its items, spliced in a module marked as included, or
    /// nothing after recording why it could not be read.
    fn include(&mut self, mac: ItemMacro) -> Option<Item> {
        let span = mac
            .mac
            .path
            .segments
            .first()
            .map_or_else(Span::call_site, |s| s.ident.span());
        let Some(relative) = mac.mac.parse_body::<Expr>().ok().and_then(|e| eval_str(&e)) else {
            self.error(
                span,
                "ligand lint could not evaluate the path of this `include!` (it follows string \
                 literals, `concat!` and `env!`), so it cannot vouch for the included code"
                    .to_owned(),
            );
            return None;
        };
        let path = parent(&self.current_file()).join(&relative);
        if !path.is_file() {
            self.error(
                span,
                format!(
                    "ligand lint could not find the file included from here ({}), so it cannot \
                     vouch for it",
                    path.display()
                ),
            );
            return None;
        }
        // The included items belong to the current module: same directory, same scope.
        let dir = self.dir.clone();
        let (index, items) = self.read(&path, span, dir)?;
        let module: ItemMod = syn::parse_quote! {
            #[__ligand_lint_file(#index)]
            #[__ligand_lint_included]
            mod __ligand_lint_included {}
        };
        let mut module = module;
        module.content = Some((Default::default(), items));
        Some(Item::Mod(module))
    }

    /// Reads and splices one file with `dir` as its items' directory: its index and items.
    fn read(&mut self, path: &Path, span: Span, dir: Dir) -> Option<(usize, Vec<Item>)> {
        if self.chain.len() > MAX_DEPTH || self.chain.iter().any(|file| file == path) {
            self.error(
                span,
                format!(
                    "ligand lint stopped at {}: modules and inclusions nest too deep or include \
                     themselves",
                    path.display()
                ),
            );
            return None;
        }
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                self.tree.errors.push(LoadError {
                    path: path.to_owned(),
                    line: 1,
                    column: 1,
                    message: format!(
                        "ligand lint could not read this file, so it cannot vouch for it: {err}"
                    ),
                });
                return None;
            }
        };
        let mut file = match syn::parse_file(&text) {
            Ok(file) => file,
            Err(err) => {
                let start = err.span().start();
                self.tree.errors.push(LoadError {
                    path: path.to_owned(),
                    line: start.line,
                    column: start.column + 1,
                    message: format!(
                        "ligand lint could not parse this file, so it cannot vouch for it: {err}"
                    ),
                });
                return None;
            }
        };
        let index = self.tree.files.len();
        self.tree.files.push(SourceFile {
            path: path.to_owned(),
        });
        let outer = std::mem::replace(&mut self.dir, dir);
        self.chain.push(path.to_owned());
        self.items(&mut file.items);
        self.chain.pop();
        self.dir = outer;
        Some((index, file.items))
    }
}

impl VisitMut for Loader<'_> {
    fn visit_block_mut(&mut self, block: &mut Block) {
        let outer = std::mem::replace(&mut self.dir.ownership, Ownership::Block);
        for stmt in std::mem::take(&mut block.stmts) {
            match stmt {
                Stmt::Item(Item::Mod(module)) => {
                    block
                        .stmts
                        .extend(self.module(module).into_iter().map(Stmt::Item));
                }
                mut stmt => {
                    visit_mut::visit_stmt_mut(self, &mut stmt);
                    block.stmts.push(stmt);
                }
            }
        }
        self.dir.ownership = outer;
    }

    fn visit_item_mod_mut(&mut self, module: &mut ItemMod) {
        // Reached only for modules outside item lists, which Rust does not have; splice them
        // the same way all the same.
        if let Some(Item::Mod(spliced)) = self.module(module.clone()).into_iter().next() {
            *module = spliced;
        }
    }
}

struct Candidate {
    path: PathBuf,
    /// `name` for a `name.rs` file, whose children live in `name/`.
    relative: Option<String>,
    /// A missing file is an error (rather than a file used only under some `cfg`).
    required: bool,
}

/// The `#[path = "…"]` values of a module declaration: unconditional, and under `cfg_attr`.
#[derive(Default)]
struct PathAttrs {
    fixed: Vec<String>,
    conditional: Vec<String>,
}

fn path_attrs(attrs: &[Attribute]) -> PathAttrs {
    let mut paths = PathAttrs::default();
    for attr in attrs {
        match &attr.meta {
            Meta::NameValue(_) => paths.fixed.extend(path_value(&attr.meta)),
            Meta::List(list) if list.path.is_ident("cfg_attr") => {
                conditional_paths(list.tokens.clone(), &mut paths.conditional);
            }
            _ => {}
        }
    }
    paths
}

/// `path = "…"` values in the attributes of a `cfg_attr(predicate, attr, …)`, nested too.
fn conditional_paths(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
    let parser = Punctuated::<Meta, Token![,]>::parse_terminated;
    let Ok(metas) = syn::parse::Parser::parse2(parser, tokens) else {
        return;
    };
    for meta in metas.iter().skip(1) {
        match meta {
            Meta::List(list) if list.path.is_ident("cfg_attr") => {
                conditional_paths(list.tokens.clone(), out);
            }
            meta => out.extend(path_value(meta)),
        }
    }
}

fn path_value(meta: &Meta) -> Option<String> {
    match meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            Expr::Lit(lit) => match &lit.lit {
                Lit::Str(s) => Some(s.value()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// `include!`, `std::include!` or `core::include!` as written.
fn is_include(mac: &Macro) -> bool {
    let segments: Vec<String> = mac
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    match segments.as_slice() {
        [name] => name == "include",
        [krate, name] => (krate == "std" || krate == "core") && name == "include",
        _ => false,
    }
}

/// The value of a string expression made of literals, `concat!` and `env!` (the compiler's
/// environment is this process's: `env!("OUT_DIR")` is the build script's output directory).
fn eval_str(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Some(s.value()),
            _ => None,
        },
        Expr::Macro(mac) => {
            let name = mac.mac.path.segments.last()?.ident.to_string();
            let args = mac
                .mac
                .parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
                .ok()?;
            match name.as_str() {
                "concat" => args.iter().map(eval_str).collect(),
                "env" if args.len() == 1 => std::env::var(eval_str(&args[0])?).ok(),
                _ => None,
            }
        }
        Expr::Group(group) => eval_str(&group.expr),
        Expr::Paren(paren) => eval_str(&paren.expr),
        _ => None,
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn unraw(ident: &syn::Ident) -> String {
    let name = ident.to_string();
    match name.strip_prefix("r#") {
        Some(name) => name.to_owned(),
        None => name,
    }
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
    attrs
        .iter()
        .any(|attr| attr.path().is_ident(INCLUDED_MARKER))
}

#[cfg(test)]
mod tests;
