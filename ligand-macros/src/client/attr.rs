//! The macro's option (`service = "spiffe://…"`) and the `#[query]` and `#[hash_key]` argument
//! markers.

use proc_macro2::TokenStream;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Meta};

use crate::args::{self, Arg};
use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

const SERVICE: Symbol = Symbol("service");
const QUERY: Symbol = Symbol("query");
const HASH_KEY: Symbol = Symbol("hash_key");

const EXPECTS_SERVICE: &str = "#[ligand::client] expects `service = \"spiffe://...\"`, \
     such as #[ligand::client(service = \"spiffe://bank.example/service/accounts\")]";

/// `service = "spiffe://…"`, the only option. Returns the literal when it is one; whether it is
/// a valid SPIFFE ID is checked in `valid`.
pub(crate) fn parse_args(cx: &Ctxt, args: TokenStream) -> Option<LitStr> {
    let parsed = match args::parse(args.clone()) {
        Ok(parsed) => parsed,
        Err(err) => {
            cx.syn_error(err);
            return None;
        }
    };
    let mut service: Option<LitStr> = None;
    let mut seen = false;
    for arg in parsed {
        match arg {
            Arg::Named { name, value, expr } if name == SERVICE => {
                if seen {
                    cx.error_spanned_by(expr, "#[ligand::client] takes `service` once");
                    continue;
                }
                seen = true;
                match string_literal(&value) {
                    Some(lit) => service = Some(lit.clone()),
                    None => cx.error_spanned_by(
                        &value,
                        "#[ligand::client] service must be a string literal such as \
                         \"spiffe://bank.example/service/accounts\"",
                    ),
                }
            }
            Arg::Named { name, .. } => cx.error_spanned_by(
                &name,
                format!(
                    "unknown #[ligand::client] option `{name}`; the only option is `service = \"spiffe://...\"`"
                ),
            ),
            Arg::Positional(expr) => cx.error_spanned_by(&expr, EXPECTS_SERVICE),
        }
    }
    // Other argument errors already explain themselves; an empty list needs its own.
    if !seen && args.is_empty() {
        cx.error_spanned_by(&args, EXPECTS_SERVICE);
    }
    service
}

fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit),
            attrs,
        }) if attrs.is_empty() => Some(lit),
        _ => None,
    }
}

/// Whether `attr` is `#[query]`, which marks the argument sent as the query string.
pub(crate) fn is_query(attr: &Attribute) -> bool {
    attr.path() == QUERY
}

/// Reports a `#[query]` that is not the bare form.
pub(crate) fn check_query(cx: &Ctxt, attr: &Attribute) {
    if !matches!(attr.meta, Meta::Path(_)) {
        cx.error_spanned_by(
            attr,
            "#[query] takes no arguments; it marks the argument sent as the query string",
        );
    }
}

/// Whether `attr` is `#[hash_key]`, which marks the argument whose `Display` form is the
/// call's sticky key for a ring-hash balancer.
pub(crate) fn is_hash_key(attr: &Attribute) -> bool {
    attr.path() == HASH_KEY
}

/// Reports a `#[hash_key]` that is not the bare form.
pub(crate) fn check_hash_key(cx: &Ctxt, attr: &Attribute) {
    if !matches!(attr.meta, Meta::Path(_)) {
        cx.error_spanned_by(
            attr,
            "#[hash_key] takes no arguments; it marks the argument that chooses the endpoint \
             under the ring_hash balancer",
        );
    }
}

/// Whether `attr` is one of the argument markers this macro consumes.
pub(crate) fn is_marker(attr: &Attribute) -> bool {
    is_query(attr) || is_hash_key(attr)
}
