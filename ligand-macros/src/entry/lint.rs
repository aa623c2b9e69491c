//! The lint pass as `#[ligand::main]` runs it: over its own input, with errors at the spans,
//! and over the whole crate, with errors at the attribute naming `file:line:col`.

use proc_macro2::{Span, TokenStream};
use syn::{Item, ItemFn};

use crate::ctxt::Ctxt;
use crate::lint::{self, CrateEnv, CrateScan};

/// Records every violation; returns the allowances and the rebuild tracking for the expansion.
pub(crate) fn check(
    cx: &Ctxt,
    original: &ItemFn,
    env: Option<&CrateEnv>,
    scan: CrateScan,
) -> (Vec<lint::Allowance>, TokenStream) {
    for err in lint::lint_input(&Item::Fn(original.clone()), env) {
        cx.syn_error(err);
    }
    for message in &scan.errors {
        cx.error_at(Span::call_site(), message);
    }
    (scan.allowances, lint::track(&scan.tracked))
}
