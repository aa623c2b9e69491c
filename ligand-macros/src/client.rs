//! `#[ligand::client(service = "spiffe://…")]`: turns a trait whose methods are the routes of
//! another service into that service's client. The trait stays (with each `async fn` desugared
//! to a `Send` future, so test doubles can implement it too) and a concrete `{Trait}Client`
//! implements it by calling the routes through the framework's outbound transport.
//! The lint pass runs over the trait first; its violations are reported at their spans.

mod ast;
mod attr;
mod expand;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use syn::Item;

use self::ast::ClientTrait;
use crate::ctxt::Ctxt;
use crate::lint::{self, CrateEnv};

pub(crate) fn expand(args: TokenStream, input: TokenStream, env: Option<&CrateEnv>) -> TokenStream {
    let cx = Ctxt::new();
    let service = attr::parse_args(&cx, args);
    let parsed = syn::parse2::<Item>(input.clone());
    if let Ok(item) = &parsed {
        for err in lint::lint_input(item, env) {
            cx.syn_error(err);
        }
    }
    match parsed {
        Ok(Item::Trait(item)) => {
            let client = ClientTrait::from_syn(&cx, &item, service);
            valid::check(&cx, &client);
            cx.finish(|| expand::expand(&client), || expand::stub(&client))
        }
        Ok(item) => {
            cx.error_spanned_by(
                crate::service::head(&item),
                "#[ligand::client] goes on a trait whose methods are the routes it calls, \
                 such as `pub trait Accounts { ... }`",
            );
            cx.finish(|| input.clone(), || input.clone())
        }
        Err(err) => {
            cx.syn_error(err);
            cx.finish(|| input.clone(), || input.clone())
        }
    }
}
