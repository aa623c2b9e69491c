//! A small model of Rust name resolution: modules and block scopes with the names their `use`
//! declarations, `extern crate` items and local items bind, and their glob imports. It resolves a
//! path as written to the crate-first paths it can mean, so a rename, a glob or a re-export
//! through a local module ends at the same banned path as the path written in full.
//!
//! It is deliberately generous where it cannot know (a glob from another crate may bring any
//! name): every path a name may resolve to is checked. Where it gives up (alias chains or glob
//! graphs past its limits) it says so, and the lint treats the path as unverified.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

/// Index of a scope in [`Model::scopes`].
pub(crate) type ScopeId = usize;

/// A path as written in a `use` or an expression.
#[derive(Clone, Debug)]
pub(crate) struct UsePath {
    /// Written with a leading `::`: the first segment is a crate.
    pub(crate) absolute: bool,
    pub(crate) segments: Vec<String>,
}

/// What a name stands for in the scope that binds it.
#[derive(Clone, Debug)]
pub(crate) enum Binding {
    /// `use path;` or `use path as name;`, resolved from the declaring scope.
    Use(UsePath),
    /// `extern crate name as alias;`
    Extern(String),
    /// A module declared here.
    Module(ScopeId),
    /// Any other local item: paths through it are never banned.
    Item,
}

#[derive(Debug)]
pub(crate) struct Scope {
    /// Blocks see the names of their enclosing scope; modules do not.
    pub(crate) is_module: bool,
    pub(crate) parent: Option<ScopeId>,
    pub(crate) names: HashMap<String, Binding>,
    pub(crate) globs: Vec<UsePath>,
}

/// The crate-first paths a path may stand for.
#[derive(Clone, Debug)]
pub(crate) struct Resolution {
    pub(crate) paths: Vec<Vec<String>>,
    /// False when a limit cut the resolution short: the path may stand for more than `paths`.
    pub(crate) complete: bool,
}

/// What a path resolves to.
#[derive(Clone, Debug)]
enum Res {
    /// A path into a crate, crate name first.
    External(Vec<String>),
    Module(ScopeId),
}

/// Deeper alias chains than this are cut off, and the path is reported as unverified. About
/// forty re-exports in a row; rustc's own resolution slows exponentially past twenty.
const MAX_DEPTH: usize = 128;

/// Resolution steps per path: globs that import each other branch, and valid code needs few.
const MAX_STEPS: usize = 4096;

/// Every scope of the analysed code; scope 0 is the crate root.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) scopes: Vec<Scope>,
    /// `[dependencies]` renames: the name code uses → the package's crate name.
    pub(crate) renames: HashMap<String, String>,
    /// Steps left for the path being resolved.
    steps: Cell<usize>,
    /// Whether resolving the current path hit a limit: what it could mean is then unknown.
    cut: Cell<bool>,
    /// Globs being expanded, (scope, index): a glob never expands through itself.
    expanding: RefCell<HashSet<(ScopeId, usize)>>,
}

impl Model {
    pub(crate) fn new(renames: HashMap<String, String>) -> Self {
        Model {
            scopes: vec![Scope {
                is_module: true,
                parent: None,
                names: HashMap::new(),
                globs: Vec::new(),
            }],
            renames,
            steps: Cell::new(0),
            cut: Cell::new(false),
            expanding: RefCell::new(HashSet::new()),
        }
    }

    pub(crate) fn push(&mut self, parent: ScopeId, is_module: bool) -> ScopeId {
        self.scopes.push(Scope {
            is_module,
            parent: Some(parent),
            names: HashMap::new(),
            globs: Vec::new(),
        });
        self.scopes.len() - 1
    }

    pub(crate) fn bind(&mut self, scope: ScopeId, name: String, binding: Binding) {
        // A later `use` does not replace a module or an item of the same name in this model;
        // both are kept by Rust in different namespaces, and the module matters for paths.
        let names = &mut self.scopes[scope].names;
        match (names.get(&name), &binding) {
            (Some(Binding::Module(_)), _) => {}
            (Some(Binding::Use(_) | Binding::Extern(_)), Binding::Item) => {}
            _ => {
                names.insert(name, binding);
            }
        }
    }

    pub(crate) fn glob(&mut self, scope: ScopeId, path: UsePath) {
        self.scopes[scope].globs.push(path);
    }

    /// The crate-first paths `path`, written in `scope`, may stand for. Local paths resolve
    /// through local modules to what they re-export; a path to a local item yields nothing.
    pub(crate) fn resolve(&self, scope: ScopeId, path: &UsePath) -> Resolution {
        self.steps.set(MAX_STEPS);
        self.cut.set(false);
        let mut out = Vec::new();
        for res in self.resolve_in(scope, path, 0) {
            if let Res::External(mut segments) = res {
                if let Some(krate) = segments.first_mut()
                    && let Some(package) = self.renames.get(krate.as_str())
                {
                    *krate = package.clone();
                }
                out.push(segments);
            }
        }
        Resolution {
            paths: out,
            complete: !self.cut.get(),
        }
    }

    fn module_of(&self, mut scope: ScopeId) -> ScopeId {
        while !self.scopes[scope].is_module {
            match self.scopes[scope].parent {
                Some(parent) => scope = parent,
                None => break,
            }
        }
        scope
    }

    fn resolve_in(&self, scope: ScopeId, path: &UsePath, depth: usize) -> Vec<Res> {
        let Some((first, rest)) = path.segments.split_first() else {
            return Vec::new();
        };
        if depth > MAX_DEPTH || self.steps.get() == 0 {
            self.cut.set(true);
            return Vec::new();
        }
        self.steps.set(self.steps.get() - 1);
        if path.absolute {
            return vec![Res::External(path.segments.clone())];
        }
        let starts = match first.as_str() {
            "crate" => vec![Res::Module(0)],
            "self" => vec![Res::Module(self.module_of(scope))],
            "super" => {
                let module = self.module_of(scope);
                let parent = self.scopes[module].parent.map(|p| self.module_of(p));
                parent.map(Res::Module).into_iter().collect()
            }
            // `Self::…` names an associated item of a local type.
            "Self" => Vec::new(),
            name => self.lookup_first(scope, name, depth),
        };
        self.walk(starts, rest, depth)
    }

    /// Continues each start with the remaining segments.
    fn walk(&self, starts: Vec<Res>, rest: &[String], depth: usize) -> Vec<Res> {
        let mut out = Vec::new();
        for start in starts {
            match start {
                Res::External(mut segments) => {
                    segments.extend(rest.iter().cloned());
                    out.push(Res::External(segments));
                }
                Res::Module(module) => match rest.split_first() {
                    None => out.push(Res::Module(module)),
                    Some((name, rest)) => {
                        // `super` inside a path continues from the parent module.
                        let next = if name == "super" {
                            let parent = self.scopes[module].parent.map(|p| self.module_of(p));
                            parent.map(Res::Module).into_iter().collect()
                        } else if name == "self" {
                            vec![Res::Module(module)]
                        } else {
                            self.lookup_in_module(module, name, depth + 1)
                        };
                        out.extend(self.walk(next, rest, depth + 1));
                    }
                },
            }
        }
        out
    }

    fn binding_res(&self, scope: ScopeId, binding: &Binding, depth: usize) -> Vec<Res> {
        match binding {
            Binding::Use(path) => self.resolve_in(scope, path, depth + 1),
            Binding::Extern(krate) => vec![Res::External(vec![krate.clone()])],
            Binding::Module(module) => vec![Res::Module(*module)],
            Binding::Item => Vec::new(),
        }
    }

    /// The first segment of a relative path: block scopes outward to the module, then the
    /// module's globs, then the extern prelude.
    fn lookup_first(&self, scope: ScopeId, name: &str, depth: usize) -> Vec<Res> {
        let mut current = scope;
        loop {
            let here = &self.scopes[current];
            if let Some(binding) = here.names.get(name) {
                // `use reqwest;` binds `reqwest` to the crate of that name, not to itself.
                let itself = matches!(binding, Binding::Use(path)
                    if !path.absolute && path.segments.first().is_some_and(|first| first == name));
                if itself {
                    break;
                }
                return self.binding_res(current, binding, depth);
            }
            if here.is_module {
                break;
            }
            match here.parent {
                Some(parent) => current = parent,
                None => break,
            }
        }
        let mut out = Vec::new();
        let mut current = scope;
        loop {
            out.extend(self.glob_candidates(current, name, depth));
            let here = &self.scopes[current];
            if here.is_module {
                break;
            }
            match here.parent {
                Some(parent) => current = parent,
                None => break,
            }
        }
        out.push(Res::External(vec![name.to_owned()]));
        out
    }

    /// A name inside a local module: its own bindings, then its globs.
    fn lookup_in_module(&self, module: ScopeId, name: &str, depth: usize) -> Vec<Res> {
        if depth > MAX_DEPTH {
            self.cut.set(true);
            return Vec::new();
        }
        if let Some(binding) = self.scopes[module].names.get(name) {
            return self.binding_res(module, binding, depth);
        }
        self.glob_candidates(module, name, depth)
    }

    fn glob_candidates(&self, scope: ScopeId, name: &str, depth: usize) -> Vec<Res> {
        let mut out = Vec::new();
        for (index, glob) in self.scopes[scope].globs.iter().enumerate() {
            if !self.expanding.borrow_mut().insert((scope, index)) {
                continue;
            }
            let targets = self.resolve_in(scope, glob, depth + 1);
            self.expanding.borrow_mut().remove(&(scope, index));
            for target in targets {
                match target {
                    Res::External(mut segments) => {
                        segments.push(name.to_owned());
                        out.push(Res::External(segments));
                    }
                    Res::Module(module) if module != scope => {
                        out.extend(self.lookup_in_module(module, name, depth + 1));
                    }
                    Res::Module(_) => {}
                }
            }
        }
        out
    }
}
