//! The checks every routed method's signature gets, in a `#[ligand::service]` impl (handlers)
//! and a `#[ligand::client]` trait (client methods) alike: an `async fn` taking `&self`, not
//! unsafe, const or generic.

use proc_macro2::TokenStream;
use syn::{FnArg, Receiver, Signature, Type};

use super::attr::Method;
use crate::ctxt::Ctxt;

/// Who the method is, for the messages.
pub(crate) struct Role {
    /// What the methods are called: `handlers`, `client methods`.
    pub(crate) plural: &'static str,
    /// Why `&self`: what shares the receiver.
    pub(crate) shared_by: &'static str,
}

/// Records every failure of `sig`, `head` (`fn name`) spanning those without a token of
/// their own.
pub(crate) fn check(cx: &Ctxt, sig: &Signature, head: &TokenStream, method: Method, role: &Role) {
    let what = role.plural;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(head, format!("{method} {what} must be async fns"));
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, format!("{method} {what} cannot be unsafe fns"));
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, format!("{method} {what} cannot be const fns"));
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            format!("{method} {what} cannot have generic parameters"),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            format!("{method} {what} cannot have where-clauses"),
        );
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) if is_shared_ref(receiver) => {}
        Some(FnArg::Receiver(receiver)) => cx.error_spanned_by(
            receiver,
            format!("{method} {what} take `&self`; {}", role.shared_by),
        ),
        Some(FnArg::Typed(_)) | None => cx.error_spanned_by(
            head,
            format!("{method} {what} take `&self` as their first parameter"),
        ),
    }
}

/// `&self` exactly (`self: &Self` too), not `&mut self`, `self` or a smart pointer.
fn is_shared_ref(receiver: &Receiver) -> bool {
    match &*receiver.ty {
        Type::Reference(reference) => {
            reference.mutability.is_none()
                && matches!(&*reference.elem, Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self"))
        }
        _ => false,
    }
}
