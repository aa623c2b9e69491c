//! `#[ligand::secret(path = "...")]`: a struct whose fields are the keys of a stored secret.
//! It implements `ligand::Secret` (deserialization stays private to the framework, so the
//! struct can only be obtained through `ctx.secret::<T>()`) and a `Debug` that redacts every
//! value.

mod ast;
mod attr;
mod expand;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use syn::Item;

use self::ast::SecretStruct;
use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let path = attr::parse_args(&cx, args);
    match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Struct(item)) => {
            let secret = SecretStruct::from_syn(&cx, &item, path);
            valid::check(&cx, &secret);
            cx.finish(|| expand::expand(&secret), || expand::stub(&item))
        }
        Ok(item) => {
            cx.error_spanned_by(
                ast::head(&item),
                "#[ligand::secret] goes on a struct whose fields are the secret's keys",
            );
            cx.finish(|| input.clone(), || input.clone())
        }
        Err(err) => {
            cx.syn_error(err);
            cx.finish(|| input.clone(), || input.clone())
        }
    }
}
