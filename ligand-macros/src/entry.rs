//! `#[ligand::main(config = path::to::async_fn)]`: the program's entry point.
//!
//! The module is named `entry` because `src/main.rs` would make Cargo build a binary.

mod ast;
mod attr;
mod expand;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use syn::ItemFn;

use self::ast::Main;
use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let attr = attr::parse(&cx, args);
    let Ok(original) = syn::parse2::<ItemFn>(input.clone()) else {
        cx.error_spanned_by(
            &input,
            "#[ligand::main] goes on `async fn main(server: Server) -> ligand::Result<()>`",
        );
        return cx.finish(|| input.clone(), || input.clone());
    };
    let main = Main {
        original: &original,
        attr,
    };
    valid::check(&cx, &main);
    let config = main.attr.config.as_ref();
    cx.finish(
        || match config {
            Some(config) => expand::expand(&main, config),
            // Unreachable: a missing `config` is always reported. Emit the stub all the same
            // rather than panic inside the compiler.
            None => expand::stub(&original, None),
        },
        || expand::stub(&original, config),
    )
}
