//! Code generation for `#[ligand::client]`: the trait with its route attributes consumed and
//! each `async fn` desugared to a `Send` future, the `{Trait}Client` struct, its `Client` impl
//! and its impl of the trait, one call chain per method.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemTrait, LitStr, ReturnType, Signature, TraitItem, Type};

use super::ast::{Binding, Call, ClientTrait};
use super::attr;
use crate::route::attr as route;

pub(crate) fn expand(client: &ClientTrait<'_>) -> TokenStream {
    let item = declaration(client.original);
    let trait_ident = &item.ident;
    let client_ident = client_ident(trait_ident);
    let head = client_struct(client);
    let methods = client.calls.iter().map(call);
    quote! {
        #item

        #head

        #[automatically_derived]
        impl #trait_ident for #client_ident {
            #(#methods)*
        }
    }
}

/// What to emit next to the errors: the trait as declared, with its attributes consumed (so
/// none reports itself as misplaced) and its `async fn`s desugared where they can be, and the
/// client struct, so code naming `{Trait}Client` elsewhere does not fail too.
pub(crate) fn stub(client: &ClientTrait<'_>) -> TokenStream {
    let item = declaration(client.original);
    let head = client_struct(client);
    quote! {
        #item

        #head
    }
}

fn client_ident(trait_ident: &Ident) -> Ident {
    format_ident!("{}Client", trait_ident)
}

/// The struct and its `Client` impl.
fn client_struct(client: &ClientTrait<'_>) -> TokenStream {
    let item = client.original;
    let vis = &item.vis;
    let trait_ident = &item.ident;
    let client_ident = client_ident(trait_ident);
    let service = client
        .service
        .clone()
        .unwrap_or_else(|| LitStr::new("", Span::call_site()));
    let doc = format!(
        " The generated client of [`{trait_ident}`], calling `{}`. Obtain one with \
         `ctx.client::<{client_ident}>()` in a handler (the request's chain is forwarded) \
         or `server.client::<{client_ident}>()` for background work.",
        service.value(),
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client_ident {
            caller: ::ligand::Caller,
        }

        #[automatically_derived]
        impl ::ligand::Client for #client_ident {
            const SERVICE: &'static str = #service;

            fn __from_caller(caller: ::ligand::Caller) -> Self {
                #client_ident { caller }
            }
        }
    }
}

/// `fn name(&self, args..) -> impl Future<Output = Ret> + Send { self.caller.request(..)..send() }`
fn call(call: &Call<'_>) -> TokenStream {
    let Some(route) = &call.route else {
        return TokenStream::new();
    };
    let sig = desugared(&call.original.sig);
    let template = route
        .template
        .clone()
        .unwrap_or_else(|| LitStr::new("/", route.original.span()));
    // `http::Method`'s constants are the method names in uppercase, as the default action is.
    let constant = Ident::new(route.method.action(), route.original.span());
    // Every argument is passed by reference: an owned `id: u64` must be borrowed, and a
    // borrowed `id: &str` becomes `&&str`, still `Display` and `Serialize`.
    let binds = call.args.iter().filter_map(|arg| {
        let ident = arg.ident?;
        Some(match arg.binding {
            Binding::Param => {
                let name = ident.to_string();
                quote_spanned!(ident.span()=> .param(#name, &#ident))
            }
            Binding::Query => quote_spanned!(ident.span()=> .query(&#ident)),
            Binding::Body => quote_spanned!(ident.span()=> .json(&#ident)),
        })
    });
    let key = call
        .args
        .iter()
        .filter(|arg| arg.hash_key.is_some())
        .filter_map(|arg| arg.ident)
        .map(|ident| quote_spanned!(ident.span()=> .hash_key(&#ident)));
    quote! {
        #sig {
            self.caller
                .request(::ligand::__private::Method::#constant, #template)
                #(#binds)*
                #(#key)*
                .send()
        }
    }
}

/// The trait as declared: route attributes consumed, `#[query]` and `#[hash_key]` markers
/// removed and each
/// `async fn` without a body desugared.
fn declaration(original: &ItemTrait) -> ItemTrait {
    let mut item = original.clone();
    for trait_item in &mut item.items {
        match trait_item {
            TraitItem::Fn(method) => {
                route::consume(&mut method.attrs);
                strip_markers(&mut method.sig);
                if method.default.is_none() && method.sig.asyncness.is_some() {
                    method.sig = desugared(&method.sig);
                }
            }
            TraitItem::Const(item) => route::consume(&mut item.attrs),
            TraitItem::Type(item) => route::consume(&mut item.attrs),
            TraitItem::Macro(item) => route::consume(&mut item.attrs),
            _ => {}
        }
    }
    item
}

/// `async fn f(..) -> T` as `fn f(..) -> impl Future<Output = T> + Send`, markers removed:
/// a trait's `async fn` promises no `Send` future, and handlers need one to be spawned.
fn desugared(sig: &Signature) -> Signature {
    let mut sig = sig.clone();
    let span = sig
        .asyncness
        .map_or_else(|| sig.fn_token.span, |token| token.span);
    sig.asyncness = None;
    strip_markers(&mut sig);
    let output: Type = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    sig.output = syn::parse_quote_spanned! {span=>
        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    };
    sig
}

fn strip_markers(sig: &mut Signature) {
    for input in &mut sig.inputs {
        if let FnArg::Typed(arg) = input {
            arg.attrs.retain(|attr| !attr::is_marker(attr));
        }
    }
}
