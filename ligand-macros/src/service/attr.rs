//! The arguments of `#[ligand::service(...)]`: none, or `gateway`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;

use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

const GATEWAY: Symbol = Symbol("gateway");

/// What the arguments ask for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Args {
    /// `#[ligand::service(gateway)]`: served to external callers on the gateway listener.
    pub(crate) gateway: bool,
}

pub(crate) fn parse_args(cx: &Ctxt, args: TokenStream) -> Args {
    let mut parsed = Args::default();
    if args.is_empty() {
        return parsed;
    }
    let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
        if meta.path == GATEWAY {
            if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                return Err(
                    meta.error("`gateway` takes no value: write #[ligand::service(gateway)]")
                );
            }
            if parsed.gateway {
                return Err(meta.error("duplicate `gateway` in #[ligand::service(...)]"));
            }
            parsed.gateway = true;
            Ok(())
        } else {
            Err(meta.error(
                "unknown #[ligand::service] argument: the only one is `gateway`, as in #[ligand::service(gateway)]",
            ))
        }
    });
    if let Err(err) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(err);
    }
    parsed
}
