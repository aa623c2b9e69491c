//! `#[ligand::service]`: turns an inherent impl into a `Service` whose routes are its methods
//! carrying `#[get("…")]`, `#[post("…")]`, `#[put("…")]`, `#[patch("…")]` or `#[delete("…")]`.
//! The lint pass runs over the impl first; its violations are reported at their spans.
//!
//! `#[ligand::service(gateway)]` marks a service for external callers: the same routes,
//! handlers and `Ctx`, served on the gateway listener and authenticated by access token. It
//! is an argument of `service` rather than a macro of its own because nothing else about the
//! service changes: one macro to learn, and turning an internal service into a gateway (or
//! back) is a one-word diff that review cannot miss.

mod ast;
mod attr;
mod expand;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Item, ItemImpl};

use self::ast::Service;
use crate::ctxt::Ctxt;
use crate::lint::{self, CrateEnv};

pub(crate) fn expand(args: TokenStream, input: TokenStream, env: Option<&CrateEnv>) -> TokenStream {
    let cx = Ctxt::new();
    let args = attr::parse_args(&cx, args);
    let parsed = syn::parse2::<Item>(input.clone());
    if let Ok(item) = &parsed {
        for err in lint::lint_input(item, env) {
            cx.syn_error(err);
        }
    }
    match parsed {
        Ok(Item::Impl(item)) if item.trait_.is_none() => {
            let service = Service::from_syn(&cx, &item, args);
            valid::check(&cx, &service);
            cx.finish(|| expand::expand(&service), || expand::stub(&item))
        }
        Ok(Item::Impl(item)) => {
            trait_impl(&cx, &item);
            cx.finish(|| expand::stub(&item), || expand::stub(&item))
        }
        Ok(item) => {
            cx.error_spanned_by(
                head(&item),
                "#[ligand::service] goes on an inherent impl block, such as `impl MyService { ... }`",
            );
            cx.finish(|| input.clone(), || input.clone())
        }
        Err(err) => {
            cx.syn_error(err);
            cx.finish(|| input.clone(), || input.clone())
        }
    }
}

fn trait_impl(cx: &Ctxt, item: &ItemImpl) {
    let Some((bang, path, for_token)) = &item.trait_ else {
        return;
    };
    cx.error_spanned_by(
        quote!(#bang #path #for_token),
        "#[ligand::service] goes on an inherent impl block, such as `impl MyService { ... }`, not on a trait impl",
    );
}

/// The start of an item, for an error that should not underline the whole item.
pub(crate) fn head(item: &Item) -> TokenStream {
    match item {
        Item::Fn(item) => {
            let (fn_token, ident) = (&item.sig.fn_token, &item.sig.ident);
            quote!(#fn_token #ident)
        }
        Item::Struct(item) => {
            let (struct_token, ident) = (&item.struct_token, &item.ident);
            quote!(#struct_token #ident)
        }
        Item::Enum(item) => {
            let (enum_token, ident) = (&item.enum_token, &item.ident);
            quote!(#enum_token #ident)
        }
        Item::Trait(item) => {
            let (trait_token, ident) = (&item.trait_token, &item.ident);
            quote!(#trait_token #ident)
        }
        Item::Mod(item) => {
            let (mod_token, ident) = (&item.mod_token, &item.ident);
            quote!(#mod_token #ident)
        }
        item => item.to_token_stream(),
    }
}
