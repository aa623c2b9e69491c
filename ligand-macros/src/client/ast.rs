//! A borrowed model of a `#[ligand::client]` trait: its calls and how each argument is sent,
//! with the original syn nodes kept for spans.

use syn::{Attribute, FnArg, Ident, ItemTrait, LitStr, Pat, PatType, TraitItem, TraitItemFn};

use super::attr;
use crate::ctxt::Ctxt;
use crate::route::attr::{self as route, Method, RouteAttr, route_attrs};
use crate::route::template;

pub(crate) struct ClientTrait<'a> {
    pub(crate) original: &'a ItemTrait,
    /// The `service = "…"` literal, when it is one.
    pub(crate) service: Option<LitStr>,
    pub(crate) calls: Vec<Call<'a>>,
    /// Trait items that are not methods (types, constants, macros); each is an error.
    pub(crate) others: Vec<&'a TraitItem>,
}

/// A method of the trait: one call of the service.
pub(crate) struct Call<'a> {
    pub(crate) original: &'a TraitItemFn,
    /// The first route attribute; `None` when the method has none.
    pub(crate) route: Option<RouteAttr<'a>>,
    /// Route attributes after the first on the same method; each is an error.
    pub(crate) extra: Vec<(&'a Attribute, Method)>,
    /// The template's parameter names, empty when the template is missing or invalid.
    pub(crate) params: Vec<String>,
    /// The arguments after the receiver, as declared.
    pub(crate) args: Vec<Arg<'a>>,
}

/// An argument after `&self`.
pub(crate) struct Arg<'a> {
    pub(crate) original: &'a PatType,
    /// The argument's name; `None` when the pattern is not a plain identifier.
    pub(crate) ident: Option<&'a Ident>,
    /// The `#[query]` marker, if present.
    pub(crate) query: Option<&'a Attribute>,
    /// The `#[hash_key]` marker, if present: the argument also sets the call's sticky key.
    pub(crate) hash_key: Option<&'a Attribute>,
    pub(crate) binding: Binding,
}

/// How an argument is sent, by rule: its name is a template parameter, it is marked
/// `#[query]`, or it is the JSON body.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    Param,
    Query,
    Body,
}

impl<'a> ClientTrait<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, item: &'a ItemTrait, service: Option<LitStr>) -> Self {
        let mut calls = Vec::new();
        let mut others = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(method) => calls.push(Call::from_syn(cx, method)),
                other => others.push(other),
            }
        }
        ClientTrait {
            original: item,
            service,
            calls,
            others,
        }
    }
}

impl<'a> Call<'a> {
    fn from_syn(cx: &Ctxt, method: &'a TraitItemFn) -> Self {
        let mut found = route_attrs(&method.attrs);
        let (route, extra) = if found.is_empty() {
            (None, found)
        } else {
            let (first, method_kind) = found.remove(0);
            (Some(route::parse(cx, first, method_kind)), found)
        };
        let params = route
            .as_ref()
            .and_then(|route| route.template.as_ref())
            .and_then(|template| template::parse(&template.value()).ok())
            .map(|template| template.params)
            .unwrap_or_default();
        let args = method
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(arg) => Some(Arg::from_syn(cx, arg, &params)),
                FnArg::Receiver(_) => None,
            })
            .collect();
        Call {
            original: method,
            route,
            extra,
            params,
            args,
        }
    }
}

impl<'a> Arg<'a> {
    fn from_syn(cx: &Ctxt, arg: &'a PatType, params: &[String]) -> Self {
        let ident = match &*arg.pat {
            Pat::Ident(pat)
                if pat.by_ref.is_none() && pat.mutability.is_none() && pat.subpat.is_none() =>
            {
                Some(&pat.ident)
            }
            _ => None,
        };
        let query = arg.attrs.iter().find(|attr| attr::is_query(attr));
        if let Some(query) = query {
            attr::check_query(cx, query);
        }
        let hash_key = arg.attrs.iter().find(|attr| attr::is_hash_key(attr));
        if let Some(hash_key) = hash_key {
            attr::check_hash_key(cx, hash_key);
        }
        let binding = if query.is_some() {
            Binding::Query
        } else if ident.is_some_and(|ident| params.iter().any(|param| ident == param)) {
            Binding::Param
        } else {
            Binding::Body
        };
        Arg {
            original: arg,
            ident,
            query,
            hash_key,
            binding,
        }
    }
}
