//! The argument list of a Ligand attribute: positional values then `name = value` options,
//! kept as syn expressions so every error can point at the argument it is about.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

/// One argument of an attribute.
#[allow(
    clippy::large_enum_variant,
    reason = "a handful live for one attribute's parse; boxing would only add indirection"
)]
pub(crate) enum Arg {
    /// A bare value, such as the path template of `#[get("/accounts/{id}")]`.
    Positional(Expr),
    /// An option, such as `action = "read"`; `expr` is the whole `name = value` for spans.
    Named {
        name: Ident,
        value: Expr,
        expr: Expr,
    },
}

/// Splits `tokens` (the inside of the attribute's parentheses) into arguments.
pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Vec<Arg>> {
    let exprs = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens)?;
    Ok(exprs.into_iter().map(classify).collect())
}

fn classify(expr: Expr) -> Arg {
    if let Expr::Assign(assign) = &expr
        && let Expr::Path(left) = &*assign.left
        && left.attrs.is_empty()
        && left.qself.is_none()
        && let Some(name) = left.path.get_ident()
    {
        let name = name.clone();
        let value = (*assign.right).clone();
        return Arg::Named { name, value, expr };
    }
    Arg::Positional(expr)
}
