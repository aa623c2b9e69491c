//! A borrowed model of a `#[ligand::service]` impl: its routes and where every route attribute
//! sits, with the original syn nodes kept for spans.

use syn::{Attribute, FnArg, ImplItem, ImplItemFn, ItemImpl, PatType};

use crate::ctxt::Ctxt;
use crate::route::attr::{self, Method, RouteAttr, route_attrs};

pub(crate) struct Service<'a> {
    pub(crate) original: &'a ItemImpl,
    /// `#[ligand::service(gateway)]`.
    pub(crate) gateway: bool,
    pub(crate) routes: Vec<Route<'a>>,
    /// Route attributes on impl items that are not methods (constants, types, macros).
    pub(crate) misplaced: Vec<(&'a Attribute, Method)>,
}

/// A method carrying a route attribute.
pub(crate) struct Route<'a> {
    pub(crate) original: &'a ImplItemFn,
    pub(crate) attr: RouteAttr<'a>,
    /// Route attributes after the first on the same method; each is an error.
    pub(crate) extra: Vec<(&'a Attribute, Method)>,
}

impl<'a> Service<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, item: &'a ItemImpl, args: super::attr::Args) -> Self {
        let mut routes = Vec::new();
        let mut misplaced = Vec::new();
        for impl_item in &item.items {
            match impl_item {
                ImplItem::Fn(method) => {
                    let mut found = route_attrs(&method.attrs);
                    if found.is_empty() {
                        continue;
                    }
                    let (first, method_kind) = found.remove(0);
                    let attr = attr::parse(cx, first, method_kind);
                    routes.push(Route {
                        original: method,
                        attr,
                        extra: found,
                    });
                }
                ImplItem::Const(item) => misplaced.extend(route_attrs(&item.attrs)),
                ImplItem::Type(item) => misplaced.extend(route_attrs(&item.attrs)),
                ImplItem::Macro(item) => misplaced.extend(route_attrs(&item.attrs)),
                _ => {}
            }
        }
        Service {
            original: item,
            gateway: args.gateway,
            routes,
            misplaced,
        }
    }
}

impl<'a> Route<'a> {
    /// The handler's arguments after the receiver, as declared.
    pub(crate) fn args(&self) -> impl Iterator<Item = &'a PatType> + use<'a> {
        self.original
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(arg) => Some(arg),
                FnArg::Receiver(_) => None,
            })
    }
}
