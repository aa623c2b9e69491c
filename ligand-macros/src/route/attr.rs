//! The route attributes: `#[get("/template")]`, `#[post("/template", action = "name")]`, …
//! parsed the same way for the routes a service serves and the routes a client calls.

use std::fmt::{self, Display};

use proc_macro2::Ident;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, MacroDelimiter, Meta, MetaList};

use crate::args::{self, Arg};
use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

const ACTION: Symbol = Symbol("action");
const LIGAND: Symbol = Symbol("ligand");

/// The argument of a route attribute that `#[ligand::service]` or `#[ligand::client]` has
/// already consumed.
pub(crate) const ROUTED: Symbol = Symbol("__ligand_routed");

/// The HTTP method of a route attribute, one per attribute macro.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];

    /// The attribute's name, which is also the axum routing function's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }

    /// The default policy action: the method in uppercase.
    pub(crate) fn action(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn from_ident(ident: &Ident) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|method| ident == method.name())
    }

    /// The method of a route attribute, written `get`, `ligand::get` or `::ligand::get`.
    pub(crate) fn of(attr: &Attribute) -> Option<Method> {
        let path = attr.path();
        let segments: Vec<_> = path.segments.iter().collect();
        match segments.as_slice() {
            [only] if path.leading_colon.is_none() => Method::from_ident(&only.ident),
            [krate, last] if krate.ident == LIGAND => Method::from_ident(&last.ident),
            _ => None,
        }
    }
}

/// Displays as the attribute, `#[get]`, the way every message names it.
impl Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#[{}]", self.name())
    }
}

/// A parsed route attribute. Missing parts were reported to the context and are `None`.
pub(crate) struct RouteAttr<'a> {
    pub(crate) original: &'a Attribute,
    pub(crate) method: Method,
    pub(crate) template: Option<LitStr>,
    pub(crate) action: Option<LitStr>,
}

impl RouteAttr<'_> {
    /// The policy action: the override, or the HTTP method.
    pub(crate) fn action(&self) -> String {
        match &self.action {
            Some(action) => action.value(),
            None => self.method.action().to_owned(),
        }
    }
}

pub(crate) fn expects_template(method: Method) -> String {
    format!("{method} expects a path template such as \"/accounts/{{id}}\"")
}

/// Parses the arguments of `attr`: the template first, then options.
pub(crate) fn parse<'a>(cx: &Ctxt, attr: &'a Attribute, method: Method) -> RouteAttr<'a> {
    let mut route = RouteAttr {
        original: attr,
        method,
        template: None,
        action: None,
    };
    let tokens = match &attr.meta {
        Meta::List(list) => list.tokens.clone(),
        Meta::Path(_) | Meta::NameValue(_) => {
            cx.error_spanned_by(attr, expects_template(method));
            return route;
        }
    };
    let args = match args::parse(tokens) {
        Ok(args) => args,
        Err(err) => {
            cx.syn_error(err);
            return route;
        }
    };
    if !matches!(args.first(), Some(Arg::Positional(_))) {
        cx.error_spanned_by(attr, expects_template(method));
    }
    let mut seen_action = false;
    for (index, arg) in args.into_iter().enumerate() {
        match arg {
            Arg::Positional(expr) if index == 0 => match string(&expr) {
                Some(template) => route.template = Some(template),
                None => cx.error_spanned_by(expr, expects_template(method)),
            },
            Arg::Positional(expr) => cx.error_spanned_by(
                expr,
                format!(
                    "{method} takes one path template, then options such as `action = \"read\"`"
                ),
            ),
            Arg::Named { name, value, expr } if name == ACTION => {
                if seen_action {
                    cx.error_spanned_by(expr, format!("duplicate {method} option `action`"));
                    continue;
                }
                seen_action = true;
                match string(&value) {
                    Some(action) if action.value().trim().is_empty() => {
                        cx.error_spanned_by(action, format!("{method} action must not be empty"));
                    }
                    Some(action) => route.action = Some(action),
                    None => cx.error_spanned_by(
                        value,
                        format!("{method} expects `action = \"name\"` with a string literal"),
                    ),
                }
            }
            Arg::Named { name, .. } => cx.error_spanned_by(
                &name,
                format!("unknown {method} option `{name}`; the only option is `action = \"name\"`"),
            ),
        }
    }
    route
}

fn string(expr: &Expr) -> Option<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit),
            attrs,
        }) if attrs.is_empty() => Some(lit.clone()),
        _ => None,
    }
}

/// The route attributes among `attrs`, in order.
pub(crate) fn route_attrs(attrs: &[Attribute]) -> Vec<(&Attribute, Method)> {
    attrs
        .iter()
        .filter_map(|attr| Some((attr, Method::of(attr)?)))
        .collect()
}

/// Replaces every route attribute in `attrs` by its consumed form `#[get(__ligand_routed)]`.
/// Stripping them instead would leave the user's `use ligand::prelude::*` unused; the consumed
/// form still resolves, then expands to nothing.
pub(crate) fn consume(attrs: &mut [Attribute]) {
    for attr in attrs.iter_mut().filter(|attr| Method::of(attr).is_some()) {
        let path = attr.path().clone();
        let routed = Ident::new(ROUTED.0, path.span());
        attr.meta = Meta::List(MetaList {
            path,
            delimiter: MacroDelimiter::Paren(Default::default()),
            tokens: quote!(#routed),
        });
    }
}
