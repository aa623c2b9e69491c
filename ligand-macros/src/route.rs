//! The route attributes as attribute macros. Inside a `#[ligand::service]` impl the service
//! macro has consumed them, rewriting each to `#[get(__ligand_routed)]`, and they expand to the
//! item unchanged. Any other route attribute is misplaced.

use proc_macro2::{Span, TokenStream};
use syn::Ident;

use crate::service::attr::{Method, ROUTED};

pub(crate) fn expand(method: Method, args: TokenStream, item: TokenStream) -> TokenStream {
    if syn::parse2::<Ident>(args).is_ok_and(|arg| arg == ROUTED) {
        return item;
    }
    let message =
        format!("{method} is only valid on a method of an impl annotated #[ligand::service]");
    let mut tokens = syn::Error::new(Span::call_site(), message).to_compile_error();
    tokens.extend(item);
    tokens
}
