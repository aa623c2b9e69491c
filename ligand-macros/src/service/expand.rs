//! Code generation for `#[ligand::service]`: the impl as written with its route attributes
//! consumed, and the `Service` impl that lists the routes.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ImplItem, ItemImpl, LitStr, ReturnType};

use super::ast::{Route, Service};
use crate::route::attr;

pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let item = consume_route_attrs(service.original);
    let self_ty = &item.self_ty;
    let routes = service.routes.iter().map(route);
    let start = if service.gateway {
        quote!(gateway)
    } else {
        quote!(new)
    };
    quote! {
        #item

        #[automatically_derived]
        impl ::ligand::__private::Service for #self_ty {
            fn __ligand_routes(self) -> ::ligand::__private::Routes<Self> {
                ::ligand::__private::Routes::#start(self)
                    #(#routes)*
            }
        }
    }
}

/// What to emit next to the errors: the impl with its route attributes consumed, so none
/// reports itself as misplaced, and an empty `Service` impl, so `server.serve(..)` elsewhere
/// does not fail too.
pub(crate) fn stub(original: &ItemImpl) -> TokenStream {
    let item = consume_route_attrs(original);
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return quote!(#item);
    }
    let self_ty = &item.self_ty;
    quote! {
        #item

        #[automatically_derived]
        impl ::ligand::__private::Service for #self_ty {
            fn __ligand_routes(self) -> ::ligand::__private::Routes<Self> {
                ::ligand::__private::Routes::new(self)
            }
        }
    }
}

/// `.route("/template", "ACTION", |this| get(move |args..| async move { .. }))`: the handler
/// owns its `Arc` of the service, moved into each call's future, rather than taking it from
/// the router's state (which axum clones for every call, and the `State` extractor again).
fn route(route: &Route<'_>) -> TokenStream {
    let attr = &route.attr;
    let template = attr
        .template
        .clone()
        .unwrap_or_else(|| LitStr::new("/", attr.original.span()));
    let action = attr.action();
    let handler = &route.original.sig.ident;
    let routing = Ident::new(attr.method.name(), handler.span());
    let (params, args): (Vec<_>, Vec<_>) = route
        .args()
        .enumerate()
        .map(|(index, arg)| {
            let name = format_ident!("__ligand_arg{index}");
            let ty = &arg.ty;
            (quote!(#name: #ty), name)
        })
        .unzip();
    // The response is converted inside the async block: the handler's future borrows the
    // `Arc`, and under Rust 2024 an `impl IntoResponse` return type captures that borrow, so
    // the value as returned cannot leave the block. A `Response` owns everything.
    let output = match &route.original.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => handler.span(),
    };
    let mut method = handler.clone();
    method.set_span(output);
    let call = quote_spanned! {output=> Self::#method(&__ligand_this, #(#args),*).await };
    let respond = quote_spanned! {output=>
        ::ligand::__private::axum::response::IntoResponse::into_response(#call)
    };
    // Spanned at the handler's name: when an argument is not an extractor, the compiler's
    // complaint points at the method, not at the impl.
    quote_spanned! {handler.span()=>
        .route(
            #template,
            #action,
            |__ligand_this: ::ligand::__private::Arc<Self>| ::ligand::__private::#routing(
                move |#(#params),*| async move { #respond },
            ),
        )
    }
}

/// The impl as written, each route attribute replaced by its consumed form.
fn consume_route_attrs(original: &ItemImpl) -> ItemImpl {
    let mut item = original.clone();
    for impl_item in &mut item.items {
        match impl_item {
            ImplItem::Fn(item) => attr::consume(&mut item.attrs),
            ImplItem::Const(item) => attr::consume(&mut item.attrs),
            ImplItem::Type(item) => attr::consume(&mut item.attrs),
            ImplItem::Macro(item) => attr::consume(&mut item.attrs),
            _ => {}
        }
    }
    item
}
