//! The syn visitor. It walks the code twice over one [`Model`]: the first pass records what
//! every scope binds (uses, extern crates, modules, items), the second resolves every path,
//! `use` leaf, trait impl, foreign function and macro body against the scopes and records what
//! breaks a rule, and what it cannot follow (fail closed: unverified code is an error too).
//! Both passes open scopes at the same nodes, so scope ids line up.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{
    Attribute, Block, Expr, ForeignItem, Ident, ImplItem, Item, ItemExternCrate, ItemForeignMod,
    ItemImpl, ItemMod, ItemUse, Macro, Meta, Path, Stmt, Token, TraitItem, UseTree,
};

use super::allow::{self, AllowAttr};
use super::files;
use super::rules::{self, ROUTES_METHOD, Rule, Segment};
use super::scope::{Binding, Model, ScopeId, UsePath};

/// What is wrong with a piece of code.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Problem {
    /// It breaks a rule.
    Rule(Rule),
    /// A path the resolver gave up on: it may stand for a banned path.
    Unresolved,
    /// An `include!` the crate scan did not follow: the included code is unknown.
    Include,
    /// A module declared inside a macro call or `macro_rules!` body: its file is unknown.
    ModuleInMacro,
}

/// One violation.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    pub(crate) problem: Problem,
    /// The path as written, such as `net::TcpStream`.
    pub(crate) written: String,
    /// What it resolves to when that differs, such as `std::net::TcpStream`.
    pub(crate) resolved: Option<String>,
    /// The tokens, for an error spanning them inside a macro's input.
    pub(crate) tokens: TokenStream,
    /// The file index (0 outside file scans) and 1-based line and column of the first token.
    pub(crate) file: usize,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Finding {
    /// The rule broken, if the problem is a rule.
    #[cfg(test)]
    pub(crate) fn rule(&self) -> Option<Rule> {
        match self.problem {
            Problem::Rule(rule) => Some(rule),
            _ => None,
        }
    }

    pub(crate) fn message(&self) -> String {
        let what = match &self.resolved {
            Some(resolved) => format!("`{}` (that is `{resolved}`)", self.written),
            None => format!("`{}`", self.written),
        };
        let unverified = "the lint cannot vouch for code it cannot follow, so this is an error \
                          rather than clean";
        match self.problem {
            Problem::Rule(rule) => format!(
                "[{rule}] {what} is not allowed in a Ligand service: {}; to bypass \
                 deliberately, annotate the item with #[ligand::allow({rule}, reason = \"…\")]",
                rule.advice(),
            ),
            Problem::Unresolved => format!(
                "[unverified] {what} could not be resolved: its re-exports nest deeper, or its \
                 glob imports branch wider, than the lint follows; {unverified}; import the \
                 item from where it is defined"
            ),
            Problem::Include => format!(
                "[unverified] {what} includes code the lint did not read (only \
                 `include!(\"file.rs\")` or `include!(concat!(env!(\"OUT_DIR\"), \"/file.rs\"))` \
                 at module level is followed); {unverified}; make the file a module \
                 (`#[path = \"file.rs\"] mod name;`)"
            ),
            Problem::ModuleInMacro => format!(
                "[unverified] {what} declares a module inside a macro, whose file the lint does \
                 not read; {unverified}; declare the module outside the macro"
            ),
        }
    }
}

/// An allowance found in the code.
#[derive(Clone, Debug)]
pub(crate) struct Granted {
    pub(crate) file: usize,
    pub(crate) line: usize,
    pub(crate) allow: AllowAttr,
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Pass {
    Collect,
    Check,
}

/// What the walk found.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub(crate) findings: Vec<Finding>,
    pub(crate) allowances: Vec<Granted>,
}

/// Lints `items` as the contents of a crate root (a macro's input, or a whole crate tree).
/// `subtract_self_linted` drops what `#[ligand::service]`, `#[ligand::client]` and
/// `#[ligand::main]` report themselves on the items they annotate.
pub(crate) fn analyze(
    items: &[Item],
    renames: &HashMap<String, String>,
    file: usize,
    subtract_self_linted: bool,
) -> Analysis {
    let mut walker = Walker {
        model: Model::new(renames.clone()),
        pass: Pass::Collect,
        scope: 0,
        created: 0,
        file,
        allowed: Vec::new(),
        subtract_self_linted,
        suppressed: HashSet::new(),
        analysis: Analysis::default(),
    };
    for item in items {
        walker.visit_item(item);
    }
    walker.pass = Pass::Check;
    walker.scope = 0;
    walker.created = 0;
    walker.file = file;
    for item in items {
        walker.visit_item(item);
    }
    walker.analysis
}

struct Walker {
    model: Model,
    pass: Pass,
    scope: ScopeId,
    /// Scopes opened so far in this pass; the next one gets this id + 1.
    created: usize,
    file: usize,
    /// Rules allowed by the enclosing items' `#[ligand::allow]`.
    allowed: Vec<Rule>,
    subtract_self_linted: bool,
    /// (problem, file, line, column) reported by a macro on its own input.
    suppressed: HashSet<(Problem, usize, usize, usize)>,
    analysis: Analysis,
}

// === impl Walker ===

impl Walker {
    fn open_scope(&mut self, is_module: bool) -> ScopeId {
        self.created += 1;
        match self.pass {
            Pass::Collect => self.model.push(self.scope, is_module),
            Pass::Check => self.created,
        }
    }

    fn bind(&mut self, name: &Ident, binding: Binding) {
        if self.pass == Pass::Collect {
            self.model.bind(self.scope, unraw(name), binding);
        }
    }

    fn report(
        &mut self,
        problem: impl Into<Problem>,
        tokens: TokenStream,
        written: String,
        resolved: Option<String>,
    ) {
        let problem = problem.into();
        if let Problem::Rule(rule) = problem
            && self.allowed.contains(&rule)
        {
            return;
        }
        let start = tokens
            .clone()
            .into_iter()
            .next()
            .map_or_else(Span::call_site, |token| token.span())
            .start();
        let (line, column) = (start.line, start.column + 1);
        if self
            .suppressed
            .contains(&(problem, self.file, line, column))
        {
            return;
        }
        self.analysis.findings.push(Finding {
            problem,
            written,
            resolved,
            tokens,
            file: self.file,
            line,
            column,
        });
    }

    fn check(&mut self, path: &UsePath, tokens: TokenStream) {
        if self.pass != Pass::Check {
            return;
        }
        let written = written(path);
        let resolution = self.model.resolve(self.scope, path);
        for resolved in resolution.paths {
            if let Some(rule) = rules::check_path(&resolved) {
                let resolved = resolved.join("::");
                let resolved = (resolved != written.trim_start_matches("::")).then_some(resolved);
                self.report(rule, tokens, written, resolved);
                return;
            }
        }
        if !resolution.complete {
            self.report(Problem::Unresolved, tokens, written, None);
        }
    }

    /// A path in a macro body with metavariables (`std::$m::TcpStream`): what its written
    /// prefix resolves to, with the rest as written, checked against every filling.
    fn check_pattern(&mut self, segments: &[Segment], absolute: bool, tokens: TokenStream) {
        if self.pass != Pass::Check {
            return;
        }
        let written = segments
            .iter()
            .map(|segment| match segment {
                Segment::Name(name) => name.as_str(),
                Segment::Meta => "$…",
            })
            .collect::<Vec<_>>()
            .join("::");
        let written = if absolute {
            format!("::{written}")
        } else {
            written
        };
        let split = segments
            .iter()
            .position(|segment| *segment == Segment::Meta)
            .unwrap_or(segments.len());
        let prefix: Vec<String> = segments[..split]
            .iter()
            .filter_map(|segment| match segment {
                Segment::Name(name) => Some(name.clone()),
                Segment::Meta => None,
            })
            .collect();
        let mut patterns = Vec::new();
        if prefix.is_empty() {
            patterns.push(segments.to_vec());
        } else {
            let path = UsePath {
                absolute,
                segments: prefix,
            };
            for resolved in self.model.resolve(self.scope, &path).paths {
                let mut pattern: Vec<Segment> = resolved.into_iter().map(Segment::Name).collect();
                pattern.extend(segments[split..].iter().cloned());
                patterns.push(pattern);
            }
        }
        for pattern in patterns {
            if let Some(rule) = rules::check_pattern(&pattern) {
                self.report(rule, tokens, written, None);
                return;
            }
        }
    }

    /// Runs `f` inside an item with `attrs`: honours its allowances, skips `#[cfg(test)]`.
    fn with_item(&mut self, attrs: &[Attribute], f: impl FnOnce(&mut Self)) {
        if attrs.iter().any(is_cfg_test) {
            return;
        }
        let before = self.allowed.len();
        for attr in attrs {
            if let Some(allow) = allow::of(attr) {
                if self.pass == Pass::Check {
                    let line = attr.pound_token.span.start().line;
                    self.analysis.allowances.push(Granted {
                        file: self.file,
                        line,
                        allow: allow.clone(),
                    });
                }
                self.allowed.extend(allow.rules);
            }
        }
        f(self);
        self.allowed.truncate(before);
    }

    /// What the macro annotating this item reports itself, so the file scan does not repeat it.
    fn suppress_self_linted(&mut self, item: &Item) {
        if !self.subtract_self_linted || self.pass != Pass::Check {
            return;
        }
        let attrs = match item {
            Item::Fn(item) => &item.attrs,
            Item::Impl(item) => &item.attrs,
            Item::Trait(item) => &item.attrs,
            _ => return,
        };
        if !attrs.iter().any(allow::is_linting_macro) {
            return;
        }
        let own = analyze(
            std::slice::from_ref(item),
            &self.model.renames,
            self.file,
            false,
        );
        for finding in own.findings {
            self.suppressed
                .insert((finding.problem, finding.file, finding.line, finding.column));
        }
    }

    fn bind_item(&mut self, item: &Item) {
        let ident = match item {
            Item::Const(item) => &item.ident,
            Item::Enum(item) => &item.ident,
            Item::Fn(item) => &item.sig.ident,
            Item::Static(item) => &item.ident,
            Item::Struct(item) => &item.ident,
            Item::Trait(item) => &item.ident,
            Item::TraitAlias(item) => &item.ident,
            Item::Type(item) => &item.ident,
            Item::Union(item) => &item.ident,
            _ => return,
        };
        self.bind(ident, Binding::Item);
    }

    fn use_tree(&mut self, prefix: &mut UsePath, tree: &UseTree) {
        match tree {
            UseTree::Path(path) => {
                prefix.segments.push(unraw(&path.ident));
                self.use_tree(prefix, &path.tree);
                prefix.segments.pop();
            }
            UseTree::Name(name) => {
                let (full, bound) = leaf(prefix, &name.ident);
                if let Some(bound) = bound {
                    self.bind(
                        &Ident::new(&bound, name.ident.span()),
                        Binding::Use(full.clone()),
                    );
                }
                self.check(&full, name.to_token_stream());
            }
            UseTree::Rename(rename) => {
                let (full, _) = leaf(prefix, &rename.ident);
                if rename.rename != "_" {
                    self.bind(&rename.rename, Binding::Use(full.clone()));
                }
                self.check(&full, rename.to_token_stream());
            }
            UseTree::Glob(glob) => {
                if self.pass == Pass::Collect {
                    self.model.glob(self.scope, prefix.clone());
                }
                let mut tokens = TokenStream::new();
                tokens.extend(glob.to_token_stream());
                self.check(prefix, tokens);
            }
            UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths in a macro body that does not parse as expressions: every `a::b::c` run of tokens,
    /// where a segment may be a metavariable (`$m`) of a `macro_rules!` body. A module declared
    /// in the body (`mod name;`) is reported: its file is not read.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => {
                    self.scan_tokens(group.stream());
                    i += 1;
                }
                TokenTree::Ident(_) | TokenTree::Punct(_) => {
                    if is_module_declaration(&tokens, i) && self.pass == Pass::Check {
                        let run: TokenStream = tokens[i..i + 2].iter().cloned().collect();
                        let written = "mod …;".to_owned();
                        self.report(Problem::ModuleInMacro, run, written, None);
                    }
                    let start = i;
                    let absolute = is_colon2(&tokens, i);
                    if absolute {
                        i += 2;
                    }
                    let mut segments = Vec::new();
                    while let Some((segment, len)) = segment_at(&tokens, i) {
                        if let Some(TokenTree::Ident(ident)) = tokens.get(i)
                            && ident == ROUTES_METHOD
                        {
                            self.report(
                                Rule::FrameworkInternals,
                                ident.to_token_stream(),
                                ROUTES_METHOD.to_owned(),
                                None,
                            );
                        }
                        segments.push(segment);
                        i += len;
                        if is_colon2(&tokens, i) && segment_at(&tokens, i + 2).is_some() {
                            i += 2;
                        } else {
                            break;
                        }
                    }
                    if segments.is_empty() {
                        i = start + 1;
                        continue;
                    }
                    let run: TokenStream = tokens[start..i].iter().cloned().collect();
                    if segments.contains(&Segment::Meta) {
                        self.check_pattern(&segments, absolute, run);
                    } else {
                        let segments = segments
                            .into_iter()
                            .filter_map(|segment| match segment {
                                Segment::Name(name) => Some(name),
                                Segment::Meta => None,
                            })
                            .collect();
                        self.check(&UsePath { absolute, segments }, run);
                    }
                }
                TokenTree::Literal(_) => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Walker {
    fn visit_item(&mut self, item: &'ast Item) {
        let attrs = item_attrs(item);
        self.with_item(attrs, |this| {
            this.bind_item(item);
            this.suppress_self_linted(item);
            visit::visit_item(this, item);
        });
    }

    fn visit_impl_item(&mut self, item: &'ast ImplItem) {
        let attrs: &[Attribute] = match item {
            ImplItem::Const(item) => &item.attrs,
            ImplItem::Fn(item) => &item.attrs,
            ImplItem::Type(item) => &item.attrs,
            ImplItem::Macro(item) => &item.attrs,
            _ => &[],
        };
        self.with_item(attrs, |this| visit::visit_impl_item(this, item));
    }

    fn visit_trait_item(&mut self, item: &'ast TraitItem) {
        let attrs: &[Attribute] = match item {
            TraitItem::Const(item) => &item.attrs,
            TraitItem::Fn(item) => &item.attrs,
            TraitItem::Type(item) => &item.attrs,
            TraitItem::Macro(item) => &item.attrs,
            _ => &[],
        };
        self.with_item(attrs, |this| visit::visit_trait_item(this, item));
    }

    fn visit_item_mod(&mut self, module: &'ast ItemMod) {
        let file = self.file;
        if let Some(index) = files::marker(&module.attrs) {
            self.file = index;
        }
        if files::is_included(&module.attrs) {
            // Items of an `include!`d file, spliced where the macro was: the same scope.
            if let Some((_, items)) = &module.content {
                for item in items {
                    self.visit_item(item);
                }
            }
            self.file = file;
            return;
        }
        let outer = self.scope;
        let id = self.open_scope(true);
        self.bind(&module.ident, Binding::Module(id));
        self.scope = id;
        if let Some((_, items)) = &module.content {
            for item in items {
                self.visit_item(item);
            }
        }
        self.scope = outer;
        self.file = file;
    }

    fn visit_block(&mut self, block: &'ast Block) {
        let has_items = block.stmts.iter().any(|stmt| matches!(stmt, Stmt::Item(_)));
        if !has_items {
            visit::visit_block(self, block);
            return;
        }
        let outer = self.scope;
        self.scope = self.open_scope(false);
        visit::visit_block(self, block);
        self.scope = outer;
    }

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        let mut prefix = UsePath {
            absolute: item.leading_colon.is_some(),
            segments: Vec::new(),
        };
        self.use_tree(&mut prefix, &item.tree);
    }

    fn visit_item_extern_crate(&mut self, item: &'ast ItemExternCrate) {
        let name = unraw(&item.ident);
        let alias = item.rename.as_ref().map_or(&item.ident, |(_, alias)| alias);
        if name == "self" {
            self.bind(alias, Binding::Module(0));
            return;
        }
        self.bind(alias, Binding::Extern(name.clone()));
        let path = UsePath {
            absolute: true,
            segments: vec![name],
        };
        self.check(&path, item.to_token_stream());
    }

    fn visit_item_impl(&mut self, item: &'ast ItemImpl) {
        if self.pass == Pass::Check
            && let Some((_, trait_path, _)) = &item.trait_
        {
            let path = use_path(trait_path);
            let by_hand = self
                .model
                .resolve(self.scope, &path)
                .paths
                .iter()
                .any(|resolved| rules::is_service_trait(resolved));
            if by_hand {
                self.report(
                    Rule::FrameworkInternals,
                    trait_path.to_token_stream(),
                    format!("impl {} for …", written(&path)),
                    None,
                );
            }
        }
        visit::visit_item_impl(self, item);
    }

    fn visit_path(&mut self, path: &'ast Path) {
        self.check(&use_path(path), path.to_token_stream());
        visit::visit_path(self, path);
    }

    fn visit_ident(&mut self, ident: &'ast Ident) {
        if self.pass == Pass::Check && ident == ROUTES_METHOD {
            self.report(
                Rule::FrameworkInternals,
                ident.to_token_stream(),
                ROUTES_METHOD.to_owned(),
                None,
            );
        }
    }

    fn visit_item_foreign_mod(&mut self, block: &'ast ItemForeignMod) {
        if self.pass == Pass::Check {
            for item in &block.items {
                let ForeignItem::Fn(function) = item else {
                    continue;
                };
                let symbol =
                    link_name(&function.attrs).unwrap_or_else(|| unraw(&function.sig.ident));
                if rules::SOCKET_SYMBOLS.contains(&symbol.as_str()) {
                    self.report(
                        Rule::RawSocket,
                        function.sig.to_token_stream(),
                        format!("extern fn {symbol}"),
                        None,
                    );
                }
            }
        }
        visit::visit_item_foreign_mod(self, block);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        self.visit_path(&mac.path);
        if self.pass == Pass::Check && self.is_include(&mac.path) {
            self.report(
                Problem::Include,
                mac.to_token_stream(),
                format!("{}!(…)", written(&use_path(&mac.path))),
                None,
            );
        }
        let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
        match parser.parse2(mac.tokens.clone()) {
            Ok(exprs) => {
                for expr in &exprs {
                    self.visit_expr(expr);
                }
            }
            Err(_) => self.scan_tokens(mac.tokens.clone()),
        }
    }

    fn visit_attribute(&mut self, attr: &'ast Attribute) {
        // Attribute arguments are not code; only the attribute's own path is.
        self.visit_path(attr.path());
    }
}

impl From<Rule> for Problem {
    fn from(rule: Rule) -> Self {
        Problem::Rule(rule)
    }
}

impl Walker {
    /// Whether a macro path is `include!`, under its own name or through a `use`. The crate
    /// scan splices what it can follow; any left is unknown code.
    fn is_include(&self, path: &Path) -> bool {
        if path.is_ident("include") {
            return true;
        }
        self.model
            .resolve(self.scope, &use_path(path))
            .paths
            .iter()
            .any(|resolved| {
                matches!(resolved.as_slice(), [krate, name]
                    if (krate == "std" || krate == "core") && name == "include")
            })
    }
}

/// `#[link_name = "…"]` of a foreign function.
fn link_name(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        Meta::NameValue(nv) if nv.path.is_ident("link_name") => match &nv.value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            }) => Some(name.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The path segment at `tokens[i]`: a name (one token) or a metavariable (`$m`, two tokens;
/// `$crate` is the name `crate`), with its length in tokens.
fn segment_at(tokens: &[TokenTree], i: usize) -> Option<(Segment, usize)> {
    match (tokens.get(i), tokens.get(i + 1)) {
        (Some(TokenTree::Ident(ident)), _) => Some((Segment::Name(unraw(ident)), 1)),
        (Some(TokenTree::Punct(dollar)), Some(TokenTree::Ident(ident)))
            if dollar.as_char() == '$' =>
        {
            if ident == "crate" {
                Some((Segment::Name("crate".to_owned()), 2))
            } else {
                Some((Segment::Meta, 2))
            }
        }
        _ => None,
    }
}

/// `mod name;` or `mod $name;` at `tokens[i]`.
fn is_module_declaration(tokens: &[TokenTree], i: usize) -> bool {
    let is_mod = matches!(tokens.get(i), Some(TokenTree::Ident(ident)) if ident == "mod");
    if !is_mod {
        return false;
    }
    let Some((_, len)) = segment_at(tokens, i + 1) else {
        return false;
    };
    matches!(tokens.get(i + 1 + len), Some(TokenTree::Punct(semi)) if semi.as_char() == ';')
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(item) => &item.attrs,
        Item::Enum(item) => &item.attrs,
        Item::ExternCrate(item) => &item.attrs,
        Item::Fn(item) => &item.attrs,
        Item::ForeignMod(item) => &item.attrs,
        Item::Impl(item) => &item.attrs,
        Item::Macro(item) => &item.attrs,
        Item::Mod(item) => &item.attrs,
        Item::Static(item) => &item.attrs,
        Item::Struct(item) => &item.attrs,
        Item::Trait(item) => &item.attrs,
        Item::TraitAlias(item) => &item.attrs,
        Item::Type(item) => &item.attrs,
        Item::Union(item) => &item.attrs,
        Item::Use(item) => &item.attrs,
        _ => &[],
    }
}

/// `#[cfg(test)]`: compiled only into the crate's own unit tests, never into the service.
fn is_cfg_test(attr: &Attribute) -> bool {
    match &attr.meta {
        Meta::List(list) if list.path.is_ident("cfg") => {
            syn::parse2::<Ident>(list.tokens.clone()).is_ok_and(|ident| ident == "test")
        }
        _ => false,
    }
}

fn unraw(ident: &Ident) -> String {
    let name = ident.to_string();
    match name.strip_prefix("r#") {
        Some(name) => name.to_owned(),
        None => name,
    }
}

fn use_path(path: &Path) -> UsePath {
    UsePath {
        absolute: path.leading_colon.is_some(),
        segments: path.segments.iter().map(|s| unraw(&s.ident)).collect(),
    }
}

/// The full path of a `use` leaf and the name it binds (`self` binds the last segment).
fn leaf(prefix: &UsePath, ident: &Ident) -> (UsePath, Option<String>) {
    if ident == "self" {
        let bound = prefix.segments.last().cloned();
        (prefix.clone(), bound)
    } else {
        let mut full = prefix.clone();
        full.segments.push(unraw(ident));
        (full, Some(unraw(ident)))
    }
}

fn written(path: &UsePath) -> String {
    let joined = path.segments.join("::");
    if path.absolute {
        format!("::{joined}")
    } else {
        joined
    }
}

fn is_colon2(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && b.as_char() == ':'
    )
}
