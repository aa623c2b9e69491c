//! Every check of the function under `#[ligand::main]`.

use quote::quote;
use syn::ReturnType;

use super::ast::Main;
use crate::ctxt::Ctxt;

const SHAPE: &str = "`async fn main(server: Server) -> ligand::Result<()>`";

pub(crate) fn check(cx: &Ctxt, main: &Main<'_>) {
    let sig = &main.original.sig;
    if sig.ident != "main" {
        let ident = &sig.ident;
        let message =
            format!("#[ligand::main] goes on the entry point `main`, not on `{ident}`: {SHAPE}");
        cx.error_spanned_by(ident, message);
    }
    if sig.asyncness.is_none() {
        let (fn_token, ident) = (&sig.fn_token, &sig.ident);
        cx.error_spanned_by(
            quote!(#fn_token #ident),
            format!("#[ligand::main] needs an async fn: {SHAPE}"),
        );
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, "#[ligand::main] cannot be a const fn");
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, "#[ligand::main] cannot be an unsafe fn");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "#[ligand::main] cannot declare an ABI");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "#[ligand::main] cannot have generic parameters",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(where_clause, "#[ligand::main] cannot have a where-clause");
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "#[ligand::main] cannot be variadic");
    }
    let params = main.params().count();
    if params != 1 {
        let message = format!("#[ligand::main] takes exactly one parameter, the `Server`: {SHAPE}");
        if params == 0 {
            cx.error_at(sig.paren_token.span.join(), message);
        } else {
            cx.error_spanned_by(&sig.inputs, message);
        }
    }
    if let ReturnType::Default = sig.output {
        cx.error_at(
            sig.paren_token.span.close(),
            format!("#[ligand::main] must return `ligand::Result<()>`: {SHAPE}"),
        );
    }
}
