//! Code generation for `#[ligand::main]`: a synchronous `fn main` that installs logging and
//! hands the configuration, the user's async main and the lint allowances to the runtime.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{ExprPath, ItemFn, Visibility};

use super::ast::Main;
use crate::lint::Allowance;

pub(crate) fn expand(
    main: &Main<'_>,
    config: &ExprPath,
    allowances: &[Allowance],
    track: &TokenStream,
) -> TokenStream {
    let original = main.original;
    let attrs = &original.attrs;
    let vis = &original.vis;
    let user_main = format_ident!("__ligand_main");
    let mut inner = original.clone();
    inner.attrs.clear();
    inner.vis = Visibility::Inherited;
    inner.sig.ident = user_main.clone();
    quote! {
        #(#attrs)*
        #vis fn main() -> ::core::result::Result<(), ::ligand::Error> {
            #inner
            #track

            ::ligand::__private::init_logging();
            ::ligand::__private::run_main_with_allowances(#config, #user_main, &[#(#allowances),*])
        }
    }
}

/// What to emit next to the errors: an empty `fn main` holding the user's function unchanged,
/// so neither the missing entry point nor unused items add errors or warnings of their own.
pub(crate) fn stub(
    original: &ItemFn,
    config: Option<&ExprPath>,
    track: &TokenStream,
) -> TokenStream {
    let config = config.map(|config| quote!(let _ = #config;));
    quote! {
        fn main() {
            #track
            #config
            #[allow(dead_code)]
            #original
        }
    }
}
