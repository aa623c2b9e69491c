//! The walk over every node of every module.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{
    Expr, Import, Literal, LiteralStmt, Module, Query, Rule, RuleAssign, RuleBody, RuleHead, Span,
    WithModifier,
};

use super::pure::{PURE_BUILTINS, is_impure_builtin};
use super::{
    Analysis, Impurity, Reads, is_identifier, is_input, literal_key, package_path, plain_path,
};

/// A node still to visit.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    /// An expression of any kind.
    Expr(&'a Expr),
    /// A rule body, comprehension body or `every` body.
    Query(&'a Query),
    /// One statement of a query, with its modifiers.
    Stmt(&'a LiteralStmt),
    /// One `with` modifier.
    With(&'a WithModifier),
}

/// What a name means inside one module.
#[derive(Debug)]
struct Scope {
    /// `["data", ...]` for the module's package, if it is a plain name.
    package: Option<Vec<String>>,
    /// Import aliases of `data` documents, with their full paths.
    data_imports: BTreeMap<String, Vec<String>>,
    /// Import aliases of parts of `input`.
    input_imports: BTreeSet<String>,
}

/// The walk over every module, collecting reads and the first impure call.
#[derive(Debug)]
pub(super) struct Walker<'f, 'a> {
    /// The full paths of the functions the policy defines.
    functions: &'f BTreeSet<Vec<String>>,
    reads: Reads,
    /// The first impure call found.
    impure: Option<Impurity>,
    /// The nodes still to visit, the next one last.
    stack: Vec<Node<'a>>,
}

impl<'f, 'a> Walker<'f, 'a> {
    /// A walk that resolves calls against `functions`.
    pub(super) fn new(functions: &'f BTreeSet<Vec<String>>) -> Self {
        Self {
            functions,
            reads: Reads::default(),
            impure: None,
            stack: Vec::new(),
        }
    }

    /// What the modules walked so far depend on.
    pub(super) fn finish(self) -> Analysis {
        Analysis {
            reads: self.reads.finish(),
            impure: self.impure,
        }
    }

    /// Walks a module's imports and rules.
    pub(super) fn module(&mut self, module: &'a Module) {
        let Module {
            // The package names where the rules live; it is not evaluated.
            package,
            imports,
            policy,
            rego_v1: _,
            target: _,
            num_expressions: _,
            num_statements: _,
            num_queries: _,
        } = module;
        let mut scope = Scope {
            package: package_path(package),
            data_imports: BTreeMap::new(),
            input_imports: BTreeSet::new(),
        };
        for import in imports {
            self.import(&mut scope, import);
        }
        for rule in policy {
            self.rule(&scope, rule);
        }
    }

    /// An import: its reference is read like one in a rule, and its alias is noted for
    /// resolving calls and `with` targets.
    fn import(&mut self, scope: &mut Scope, import: &'a Import) {
        let Import {
            span: _,
            refr,
            r#as,
        } = import;
        let path = plain_path(refr);
        let alias = match (r#as, &path) {
            (Some(alias), _) => Some(alias.text().to_owned()),
            (None, Some(path)) => path.last().cloned(),
            (None, None) => None,
        };
        if let (Some(alias), Some(path)) = (alias.clone(), path) {
            match path.first().map(String::as_str) {
                Some("data") => {
                    scope.data_imports.insert(alias, path);
                }
                Some("input") => {
                    scope.input_imports.insert(alias);
                }
                _ => {}
            }
        }
        if alias.as_deref() == Some("input") {
            self.reads.whole = true;
        }
        // `import input` reads the whole document and `import input.a.b` reads below `a.b`,
        // exactly as the same reference would in a rule.
        self.walk(scope, [Node::Expr(refr)]);
    }

    /// A rule: its head (name, key, value, function arguments) and every body.
    fn rule(&mut self, scope: &Scope, rule: &'a Rule) {
        let mut nodes = Vec::new();
        match rule {
            Rule::Spec {
                span: _,
                head,
                bodies,
            } => {
                match head {
                    RuleHead::Compr {
                        span: _,
                        refr,
                        assign,
                    } => {
                        nodes.push(Node::Expr(refr));
                        nodes.extend(assign.iter().map(assigned));
                    }
                    RuleHead::Set { span: _, refr, key } => {
                        nodes.push(Node::Expr(refr));
                        nodes.extend(key.iter().map(|key| Node::Expr(key)));
                    }
                    RuleHead::Func {
                        span: _,
                        refr,
                        args,
                        assign,
                    } => {
                        nodes.push(Node::Expr(refr));
                        nodes.extend(args.iter().map(|arg| Node::Expr(arg)));
                        nodes.extend(assign.iter().map(assigned));
                    }
                }
                for body in bodies {
                    let RuleBody {
                        span: _,
                        assign,
                        is_else: _,
                        query,
                    } = body;
                    nodes.extend(assign.iter().map(assigned));
                    nodes.push(Node::Query(query));
                }
            }
            Rule::Default {
                span: _,
                refr,
                args,
                op: _,
                value,
            } => {
                nodes.push(Node::Expr(refr));
                nodes.extend(args.iter().map(|arg| Node::Expr(arg)));
                nodes.push(Node::Expr(value));
            }
        }
        self.walk(scope, nodes);
    }

    /// Visits `nodes` in order, and everything below them.
    fn walk(&mut self, scope: &Scope, nodes: impl IntoIterator<Item = Node<'a>>) {
        let base = self.stack.len();
        self.push(nodes);
        while self.stack.len() > base {
            let Some(node) = self.stack.pop() else {
                break;
            };
            match node {
                Node::Expr(expr) => self.expr(scope, expr),
                Node::Query(query) => self.query(query),
                Node::Stmt(stmt) => self.stmt(stmt),
                Node::With(with) => self.with(scope, with),
            }
        }
    }

    /// Schedules `nodes` to be visited in order, before anything scheduled earlier.
    fn push(&mut self, nodes: impl IntoIterator<Item = Node<'a>>) {
        let start = self.stack.len();
        self.stack.extend(nodes);
        if let Some(pushed) = self.stack.get_mut(start..) {
            pushed.reverse();
        }
    }

    /// A query: its statements in order.
    fn query(&mut self, query: &'a Query) {
        let Query {
            span: _,
            stmts,
            qidx: _,
        } = query;
        self.push(stmts.iter().map(Node::Stmt));
    }

    /// A statement: its literal, then its `with` modifiers.
    fn stmt(&mut self, stmt: &'a LiteralStmt) {
        let LiteralStmt {
            span: _,
            literal,
            with_mods,
            sidx: _,
        } = stmt;
        let mut nodes = Vec::new();
        match literal {
            Literal::SomeVars { span: _, vars } => {
                if vars.iter().any(|var| var.text() == "input") {
                    self.reads.whole = true;
                }
            }
            Literal::SomeIn {
                span: _,
                key,
                value,
                collection,
            } => {
                nodes.extend(key.iter().map(|key| Node::Expr(key)));
                nodes.push(Node::Expr(value));
                nodes.push(Node::Expr(collection));
            }
            Literal::Expr { span: _, expr } | Literal::NotExpr { span: _, expr } => {
                nodes.push(Node::Expr(expr));
            }
            Literal::Every {
                span: _,
                key,
                value,
                domain,
                query,
            } => {
                if key.iter().chain([value]).any(|var| var.text() == "input") {
                    self.reads.whole = true;
                }
                nodes.push(Node::Expr(domain));
                nodes.push(Node::Query(query));
            }
        }
        nodes.extend(with_mods.iter().map(Node::With));
        self.push(nodes);
    }

    /// A `with` modifier: both its target and its value.
    fn with(&mut self, scope: &Scope, with: &'a WithModifier) {
        let WithModifier {
            span: _,
            refr,
            r#as,
        } = with;
        // Replacing any part of `input` makes what the policy reads depend on how the
        // replacement merges; the analysis does not follow it.
        if let Some(root) = plain_path(refr).as_ref().and_then(|path| path.first())
            && (root == "input" || scope.input_imports.contains(root))
        {
            self.reads.whole = true;
        }
        // `with f as g` calls `g` wherever `f` is called, and `g` may be a builtin.
        if let Some(path) = plain_path(r#as) {
            let name = path.join(".");
            if is_impure_builtin(&name) {
                self.impure(name, r#as.span());
            }
        }
        self.push([Node::Expr(refr), Node::Expr(r#as)]);
    }

    /// An expression: every kind, every child.
    fn expr(&mut self, scope: &Scope, expr: &'a Expr) {
        match expr {
            Expr::String {
                span: _,
                value: _,
                eidx: _,
            }
            | Expr::RawString {
                span: _,
                value: _,
                eidx: _,
            }
            | Expr::Number {
                span: _,
                value: _,
                eidx: _,
            }
            | Expr::Bool {
                span: _,
                value: _,
                eidx: _,
            }
            | Expr::Null {
                span: _,
                value: _,
                eidx: _,
            } => {}
            Expr::Var {
                span,
                value,
                eidx: _,
            } => {
                // Any reference into `input` is handled as a chain below; a bare one here
                // hands the whole document on (to a call, a comparison, a variable, ...).
                if is_input(span, value) {
                    self.reads.whole = true;
                }
            }
            Expr::Array {
                span: _,
                items,
                eidx: _,
            }
            | Expr::Set {
                span: _,
                items,
                eidx: _,
            } => self.push(items.iter().map(|item| Node::Expr(item))),
            Expr::Object {
                span: _,
                fields,
                eidx: _,
            } => self.push(
                fields
                    .iter()
                    .flat_map(|(_, key, value)| [Node::Expr(key), Node::Expr(value)]),
            ),
            Expr::ArrayCompr {
                span: _,
                term,
                query,
                eidx: _,
            }
            | Expr::SetCompr {
                span: _,
                term,
                query,
                eidx: _,
            } => self.push([Node::Expr(term), Node::Query(query)]),
            Expr::ObjectCompr {
                span: _,
                key,
                value,
                query,
                eidx: _,
            } => self.push([Node::Expr(key), Node::Expr(value), Node::Query(query)]),
            Expr::Call {
                span,
                fcn,
                params,
                eidx: _,
            } => {
                self.call(scope, span, fcn);
                self.push(params.iter().map(|param| Node::Expr(param)));
            }
            Expr::UnaryExpr {
                span: _,
                expr,
                eidx: _,
            } => self.push([Node::Expr(expr)]),
            Expr::RefDot {
                span: _,
                refr: _,
                field: _,
                eidx: _,
            }
            | Expr::RefBrack {
                span: _,
                refr: _,
                index: _,
                eidx: _,
            } => self.reference(expr),
            Expr::BinExpr {
                span: _,
                op: _,
                lhs,
                rhs,
                eidx: _,
            }
            | Expr::BoolExpr {
                span: _,
                op: _,
                lhs,
                rhs,
                eidx: _,
            }
            | Expr::ArithExpr {
                span: _,
                op: _,
                lhs,
                rhs,
                eidx: _,
            }
            | Expr::AssignExpr {
                span: _,
                op: _,
                lhs,
                rhs,
                eidx: _,
            } => self.push([Node::Expr(lhs), Node::Expr(rhs)]),
            Expr::Membership {
                span: _,
                key,
                value,
                collection,
                eidx: _,
            } => self.push(
                key.iter()
                    .map(|key| Node::Expr(key))
                    .chain([Node::Expr(value), Node::Expr(collection)]),
            ),
        }
    }

    /// A chain of `.field` and `[index]` steps. Rooted at `input`, it reads the longest
    /// prefix of literal string keys; the first other index ends the path there. Every index
    /// expression and any other root (a call, a comprehension, ...) is visited.
    fn reference(&mut self, expr: &'a Expr) {
        let mut keys = Vec::new();
        let mut indexes: Vec<&'a Expr> = Vec::new();
        let mut literal = true;
        let mut root = expr;
        // Steps come outermost first; collected in reverse and flipped below.
        let mut steps = Vec::new();
        loop {
            match root {
                Expr::RefDot {
                    span: _,
                    refr,
                    field,
                    eidx: _,
                } => {
                    steps.push((Some(field.0.text().to_owned()), None));
                    root = refr;
                }
                Expr::RefBrack {
                    span: _,
                    refr,
                    index,
                    eidx: _,
                } => {
                    steps.push((literal_key(index), Some(index)));
                    root = refr;
                }
                // Not a step: the root, visited with the exhaustive match in `expr`.
                _ => break,
            }
        }
        for (key, index) in steps.into_iter().rev() {
            match key {
                Some(key) if literal => keys.push(key),
                _ => literal = false,
            }
            indexes.extend(index.map(|index| index.as_ref()));
        }
        let root = match root {
            Expr::Var { span, value, .. } if is_input(span, value) => {
                self.reads.read(keys);
                None
            }
            _ => Some(root),
        };
        self.push(root.into_iter().chain(indexes).map(Node::Expr));
    }

    /// Checks that a call is pure. Its arguments are visited by the caller.
    fn call(&mut self, scope: &Scope, span: &Span, fcn: &'a Expr) {
        let Some(path) = plain_path(fcn) else {
            // regorus rejects or misreads such a call; it is visited for its reads.
            self.impure(fcn.span().text().to_owned(), span);
            self.push([Node::Expr(fcn)]);
            return;
        };
        if path.first().is_some_and(|root| root == "input") {
            self.reads.whole = true;
        }
        if !self.is_pure_call(scope, &path) {
            self.impure(path.join("."), span);
        }
    }

    /// A pure builtin, or a function the policy defines whose name names no other builtin.
    fn is_pure_call(&self, scope: &Scope, path: &[String]) -> bool {
        if !path.iter().all(|component| is_identifier(component)) {
            return false;
        }
        let name = path.join(".");
        if PURE_BUILTINS.contains(&name.as_str()) {
            // Either the builtin, or a user function of that name whose body is walked.
            return true;
        }
        if is_impure_builtin(&name) {
            // Whether a user function shadows the builtin depends on regorus's lookup order;
            // the builtin is assumed.
            return false;
        }
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        // The candidates regorus tries: an absolute `data` path, a path relative to the
        // module's package, and a path through an import alias.
        let mut candidates = Vec::new();
        if first == "data" {
            candidates.push(path.to_vec());
        } else if let Some(package) = &scope.package {
            candidates.push([package.as_slice(), path].concat());
        }
        if let Some(import) = scope.data_imports.get(first) {
            candidates.push([import.as_slice(), rest].concat());
        }
        candidates
            .iter()
            .any(|candidate| self.functions.contains(candidate))
    }

    /// Records an impure call unless an earlier one was found.
    fn impure(&mut self, builtin: String, span: &Span) {
        if self.impure.is_none() {
            self.impure = Some(Impurity {
                builtin,
                location: format!("{}:{}", span.source.file(), span.line),
            });
        }
    }
}

/// The value a rule head or an `else` assigns (`:=` or `=`).
fn assigned(assign: &RuleAssign) -> Node<'_> {
    let RuleAssign {
        span: _,
        op: _,
        value,
    } = assign;
    Node::Expr(value)
}
