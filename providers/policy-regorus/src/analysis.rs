//! What a compiled policy's decisions depend on, found by walking its AST: the parts of
//! `input` it can read, and whether every function it calls is a pure function of its
//! arguments. A decision cache keys on exactly those parts of `input` and is enabled only for
//! a pure policy.
//!
//! A decision is a function of `input`, `data` and the builtins the policy calls. `data` is
//! fixed for a loaded policy. When every call is pure, two requests that agree on the value at
//! every path of [`InputReads::Paths`] (a missing value counting as its own value, distinct
//! from `null`) get the same decision.
//!
//! # Soundness
//!
//! The analysis may claim more than the policy reads, never less: when unsure it widens a
//! path to its prefix or to the whole document, and calls a policy impure when it cannot
//! show a call to be pure.
//!
//! - The walk matches every AST enum without a catch-all and destructures every node struct
//!   without `..`, so a regorus upgrade that adds a node kind or a field (such as the
//!   `OrExpr` regorus's `rego-extensions` feature adds) fails to compile here instead of
//!   being skipped in silence. The helpers that only classify a node (is it a plain name, a
//!   string key?) do have a catch-all, which answers the wider case: not a name, not a key.
//! - Any variable named `input`, wherever it appears, is taken for the input document: the
//!   analysis does not track shadowing.
//! - A call is pure when its name is on [`PURE_BUILTINS`](pure::PURE_BUILTINS), or when it
//!   resolves to a function the policy defines (whose body is walked like any rule) and does
//!   not also name another builtin. Anything else is impure, including a function
//!   expression that is not a plain name and a name the analysis cannot resolve.
//! - It assumes the engine has no extensions (`Engine::add_extension`): regorus looks them up
//!   by name before builtins, and they live outside the modules. The engine in
//!   [`crate::compiled`] registers none.
//!
//! regorus bounds expression nesting when it parses (32 levels), but a reference chain or an
//! operator chain can still be long; the walk uses an explicit stack rather than recursion,
//! so no policy regorus accepts can overflow the thread's stack here.

use std::collections::BTreeSet;

use regorus::Value;
use regorus::unstable::{Expr, Module, Package, Ref, Rule, RuleHead, Span};

use self::walk::Walker;

mod pure;
mod walk;

#[cfg(test)]
mod tests;

/// What a policy's decisions depend on, found by walking its AST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// The parts of `input` the policy can read.
    pub(crate) reads: InputReads,
    /// Why decisions must not be cached, if they must not.
    pub(crate) impure: Option<Impurity>,
}

/// The parts of `input` a policy can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputReads {
    /// The whole document: bare `input`, `with input ...`, a non-literal top-level index,
    /// `import input`, ...
    Whole,
    /// Only these paths, each a list of object keys from the input root. Prefix-minimal:
    /// when a path and one of its prefixes both occur, only the prefix is kept. Sorted.
    ///
    /// The policy may read anything below a path, including whether it exists.
    Paths(Vec<Vec<String>>),
}

/// Why decisions must not be cached: the first call (in module, rule and source order) that
/// the analysis cannot show to be pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Impurity {
    /// The called name as written (`time.now_ns`), or the source text of a function
    /// expression that is not a plain name.
    pub(crate) builtin: String,
    /// Where the call is, as `file:line`.
    pub(crate) location: String,
}

/// Walks every module (as [`regorus::Engine::get_modules`] returns them) and reports what
/// the policy's decisions depend on.
pub(crate) fn analyse(modules: &[Ref<Module>]) -> Analysis {
    let functions = user_functions(modules);
    let mut walker = Walker::new(&functions);
    for module in modules {
        walker.module(module);
    }
    walker.finish()
}

// === user functions ===

/// The full paths (`["data", "pkg", "f"]`) of every function the modules define, default
/// functions included, as regorus's function table keys them.
fn user_functions(modules: &[Ref<Module>]) -> BTreeSet<Vec<String>> {
    let mut functions = BTreeSet::new();
    for module in modules {
        let Some(package) = package_path(&module.package) else {
            continue;
        };
        for rule in &module.policy {
            // Only picks definitions out; a rule missed here makes calls to it impure.
            let refr = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Func { refr, .. } => Some(refr),
                    RuleHead::Compr { .. } | RuleHead::Set { .. } => None,
                },
                Rule::Default { refr, args, .. } => (!args.is_empty()).then_some(refr),
            };
            if let Some(name) = refr.and_then(|refr| plain_path(refr)) {
                functions.insert([package.as_slice(), name.as_slice()].concat());
            }
        }
    }
    functions
}

/// `["data", "a", "b"]` for `package a.b`.
fn package_path(package: &Package) -> Option<Vec<String>> {
    let Package { span: _, refr } = package;
    let mut path = vec!["data".to_owned()];
    path.extend(plain_path(refr)?);
    Some(path)
}

/// The components of a plain name (`a.b["c"]`) as regorus resolves names: a variable, then
/// `.field` or `["string"]` steps. `None` for anything else.
fn plain_path(expr: &Expr) -> Option<Vec<String>> {
    let mut path = Vec::new();
    let mut expr = expr;
    loop {
        match expr {
            Expr::Var { span, .. } => {
                path.push(span.text().to_owned());
                break;
            }
            Expr::RefDot { refr, field, .. } => {
                path.push(field.0.text().to_owned());
                expr = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                path.push(string_key(index)?);
                expr = refr;
            }
            // Classification only: any other kind is not a plain name.
            _ => return None,
        }
    }
    path.reverse();
    Some(path)
}

/// The key of an index that is a plain string literal (`["key"]`). regorus resolves
/// function names through this form only, not through raw strings.
fn string_key(index: &Expr) -> Option<String> {
    match index {
        Expr::String {
            value: Value::String(key),
            ..
        } => Some(key.as_ref().to_owned()),
        _ => None,
    }
}

/// The key of an index into `input` that is a string literal, raw or not: both index with
/// their value. Anything else ends an input path.
fn literal_key(index: &Expr) -> Option<String> {
    match index {
        Expr::String {
            value: Value::String(key),
            ..
        }
        | Expr::RawString {
            value: Value::String(key),
            ..
        } => Some(key.as_ref().to_owned()),
        _ => None,
    }
}

/// Whether a name can only be read as one identifier per component, so that joining the
/// components with `.` gives the name regorus looks up.
fn is_identifier(component: &str) -> bool {
    let mut bytes = component.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Whether a variable stands for the input document. Both the source text and the parsed
/// value are checked, so that neither alone can hide it.
fn is_input(span: &Span, value: &Value) -> bool {
    span.text() == "input" || matches!(value, Value::String(name) if name.as_ref() == "input")
}

// === input reads ===

/// The input paths found so far.
#[derive(Debug, Default)]
struct Reads {
    /// Whether the whole document is read; the paths then no longer matter.
    whole: bool,
    /// Every path read, prefixes and extensions alike.
    paths: BTreeSet<Vec<String>>,
}

impl Reads {
    /// Records a read of `path`; the empty path is the whole document.
    fn read(&mut self, path: Vec<String>) {
        if path.is_empty() {
            self.whole = true;
        } else {
            self.paths.insert(path);
        }
    }

    /// The reads as reported: the whole document, or the prefix-minimal paths.
    fn finish(self) -> InputReads {
        if self.whole {
            return InputReads::Whole;
        }
        // In sorted order a path's extensions follow it directly, so comparing with the last
        // kept path is enough to drop every extension.
        let mut kept: Vec<Vec<String>> = Vec::new();
        for path in self.paths {
            if kept.last().is_none_or(|prefix| !path.starts_with(prefix)) {
                kept.push(path);
            }
        }
        InputReads::Paths(kept)
    }
}
