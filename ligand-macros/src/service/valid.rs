//! Every semantic check of a `#[ligand::service]` impl. Each failure is recorded and checking
//! goes on, so one compile shows every mistake.

use std::collections::HashMap;

use quote::quote;
use syn::TypeImplTrait;
use syn::visit::{self, Visit};

use super::ast::{Route, Service};
use crate::ctxt::Ctxt;
use crate::route::signature::{self, Role};
use crate::route::template;
use crate::symbol::Symbol;

const CFG: Symbol = Symbol("cfg");

/// axum implements `Handler` for up to 16 extractors; the state takes one.
const MAX_ARGS: usize = 15;

pub(crate) fn check(cx: &Ctxt, service: &Service<'_>) {
    check_impl(cx, service);
    for (attr, method) in &service.misplaced {
        cx.error_spanned_by(
            attr,
            format!("{method} belongs on an `async fn` of the impl, not on this item"),
        );
    }
    for route in &service.routes {
        check_route(cx, route);
    }
    check_unique(cx, &service.routes);
}

fn check_impl(cx: &Ctxt, service: &Service<'_>) {
    let item = service.original;
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.generics,
            "#[ligand::service] does not support generic impl blocks yet",
        );
    }
    if let Some(where_clause) = &item.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "#[ligand::service] does not support where-clauses yet",
        );
    }
    if service.routes.is_empty() && service.misplaced.is_empty() {
        let (impl_token, self_ty) = (&item.impl_token, &item.self_ty);
        cx.error_spanned_by(
            quote!(#impl_token #self_ty),
            "#[ligand::service] impl has no routes; add #[get(\"/path\")] or another route attribute",
        );
    }
}

fn check_route(cx: &Ctxt, route: &Route<'_>) {
    let method = route.attr.method;
    let sig = &route.original.sig;
    let (fn_token, ident) = (&sig.fn_token, &sig.ident);
    let head = quote!(#fn_token #ident);

    for (attr, other) in &route.extra {
        cx.error_spanned_by(
            attr,
            format!("{other} cannot be combined with {method}; a method is exactly one route"),
        );
    }
    if let Some(template) = &route.attr.template
        && let Err(err) = template::parse(&template.value())
    {
        cx.error_spanned_by(template, format!("{method} {err}"));
    }
    signature::check(
        cx,
        sig,
        &head,
        method,
        &Role {
            plural: "handlers",
            shared_by: "the service is shared by concurrent requests",
        },
    );
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, format!("{method} handlers cannot be variadic"));
    }
    let args: Vec<_> = route.args().collect();
    for arg in &args {
        let mut finder = ImplTraitFinder::default();
        finder.visit_type(&arg.ty);
        for impl_trait in finder.found {
            cx.error_spanned_by(
                impl_trait,
                format!(
                    "{method} handler arguments cannot use `impl Trait`; name the extractor type"
                ),
            );
        }
    }
    if args.len() > MAX_ARGS {
        cx.error_spanned_by(
            &sig.inputs,
            format!("{method} handlers take at most {MAX_ARGS} arguments after `&self`"),
        );
    }
    for attr in &route.original.attrs {
        if attr.path() == CFG {
            cx.error_spanned_by(
                attr,
                format!("{method} handlers cannot be conditionally compiled with #[cfg] yet"),
            );
        }
    }
}

/// `&self` or `self: &Self`.
#[derive(Default)]
struct ImplTraitFinder<'ast> {
    found: Vec<&'ast TypeImplTrait>,
}

impl<'ast> Visit<'ast> for ImplTraitFinder<'ast> {
    fn visit_type_impl_trait(&mut self, node: &'ast TypeImplTrait) {
        self.found.push(node);
        visit::visit_type_impl_trait(self, node);
    }
}

/// One method per template, and one spelling of the parameters per template shape: axum panics
/// on either when the router is built.
fn check_unique(cx: &Ctxt, routes: &[Route<'_>]) {
    // shape → (template as written, handlers already routed to it)
    let mut seen: HashMap<String, (String, Vec<&Route<'_>>)> = HashMap::new();
    for route in routes {
        let Some(lit) = &route.attr.template else {
            continue;
        };
        let written = lit.value();
        let Ok(template) = template::parse(&written) else {
            continue;
        };
        let method = route.attr.method;
        let (first_spelling, handlers) = seen
            .entry(template.shape)
            .or_insert_with(|| (written.clone(), Vec::new()));
        if *first_spelling != written {
            let other = handlers.first().map(|other| &other.original.sig.ident);
            let other = other.map_or_else(String::new, |other| format!(" of `{other}`"));
            cx.error_spanned_by(
                lit,
                format!(
                    "{method} \"{written}\" matches the same paths as \"{first_spelling}\"{other}; \
                     use the same parameter names"
                ),
            );
            continue;
        }
        if let Some(other) = handlers.iter().find(|other| other.attr.method == method) {
            let other = &other.original.sig.ident;
            cx.error_spanned_by(
                lit,
                format!("{method} \"{written}\" is already routed to `{other}`"),
            );
            continue;
        }
        handlers.push(route);
    }
}
