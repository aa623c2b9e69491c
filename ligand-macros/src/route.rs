//! The route vocabulary shared by `#[ligand::service]` (routes it serves) and
//! `#[ligand::client]` (routes it calls): the attributes `#[get("/template")]`, … with their
//! `action` option, and the path template syntax.
//!
//! The route attributes are also attribute macros of their own. Inside a `#[ligand::service]`
//! impl or a `#[ligand::client]` trait the annotating macro has consumed them, rewriting each to
//! `#[get(__ligand_routed)]`, and they expand to the item unchanged. Any other route attribute is
//! misplaced.

pub(crate) mod attr;
pub(crate) mod signature;
pub(crate) mod template;

use proc_macro2::{Span, TokenStream};
use syn::Ident;

use self::attr::{Method, ROUTED};

pub(crate) fn expand(method: Method, args: TokenStream, item: TokenStream) -> TokenStream {
    if syn::parse2::<Ident>(args).is_ok_and(|arg| arg == ROUTED) {
        return item;
    }
    let message = format!(
        "{method} is only valid on a method of an impl annotated #[ligand::service] \
         or of a trait annotated #[ligand::client]"
    );
    let mut tokens = syn::Error::new(Span::call_site(), message).to_compile_error();
    tokens.extend(item);
    tokens
}
