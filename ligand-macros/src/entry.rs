//! `#[ligand::main(config = path::to::async_fn)]`: the program's entry point.
//!
//! The module is named `entry` because `src/main.rs` would make Cargo build a binary.

mod ast;
mod attr;
mod expand;
mod lint;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use syn::ItemFn;

use self::ast::Main;
use crate::ctxt::Ctxt;
use crate::lint::{CrateEnv, CrateScan};

/// Expands `#[ligand::main]`. `env` and `scan` are the crate being compiled and what the lint
/// found in its files; both are computed by the caller, which knows where the attribute is.
pub(crate) fn expand(
    args: TokenStream,
    input: TokenStream,
    env: Option<&CrateEnv>,
    scan: CrateScan,
) -> TokenStream {
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
    let (allowances, track) = lint::check(&cx, &original, env, scan);
    let config = main.attr.config.as_ref();
    cx.finish(
        || match config {
            Some(config) => expand::expand(&main, config, &allowances, &track),
            // Unreachable: an invalid `config` is always reported. Emit the stub all the same
            // rather than panic inside the compiler.
            None => expand::stub(&original, None, &track),
        },
        || expand::stub(&original, config, &track),
    )
}
