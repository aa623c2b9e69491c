//! The attribute's options (`path = "..."`) and the per-field `#[secret(key = "...")]`.

use proc_macro2::TokenStream;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr};

use crate::args::{self, Arg};
use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

pub(crate) const PATH: Symbol = Symbol("path");
pub(crate) const KEY: Symbol = Symbol("key");
pub(crate) const SECRET: Symbol = Symbol("secret");

fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        _ => None,
    }
}

/// `path = "secret/data/..."`, the only option. Returns the path when it is usable.
pub(crate) fn parse_args(cx: &Ctxt, args: TokenStream) -> Option<LitStr> {
    let parsed = match args::parse(args.clone()) {
        Ok(parsed) => parsed,
        Err(err) => {
            cx.syn_error(err);
            return None;
        }
    };
    let mut path: Option<LitStr> = None;
    for arg in parsed {
        match arg {
            Arg::Named { name, value, .. } if name == PATH => match string_literal(&value) {
                Some(_) if path.is_some() => cx.error_spanned_by(&name, "#[ligand::secret] takes `path` once"),
                Some(lit) if lit.value().is_empty() => {
                    cx.error_spanned_by(lit, "#[ligand::secret] path must not be empty");
                }
                Some(lit) => path = Some(lit.clone()),
                None => cx.error_spanned_by(
                    &value,
                    "#[ligand::secret] path must be a string literal such as \"secret/data/accounts/db\"",
                ),
            },
            Arg::Named { name, .. } => cx.error_spanned_by(
                &name,
                format!("unknown #[ligand::secret] option `{name}`; the only option is `path = \"...\"`"),
            ),
            Arg::Positional(expr) => cx.error_spanned_by(
                &expr,
                "#[ligand::secret] expects `path = \"...\"`, such as #[ligand::secret(path = \"secret/data/accounts/db\")]",
            ),
        }
    }
    // Other argument errors already explain themselves; an empty list needs its own.
    if path.is_none() && args.is_empty() {
        cx.error_spanned_by(
            &args,
            "#[ligand::secret] expects `path = \"...\"`, such as #[ligand::secret(path = \"secret/data/accounts/db\")]",
        );
    }
    path
}

/// A field's `#[secret(key = "...")]`, if any; other `#[secret(...)]` forms are errors.
pub(crate) fn field_key(cx: &Ctxt, attrs: &[Attribute]) -> Option<LitStr> {
    let mut key = None;
    for attr in attrs.iter().filter(|a| a.path() == SECRET) {
        let tokens = match attr.meta.require_list() {
            Ok(list) => list.tokens.clone(),
            Err(_) => {
                cx.error_spanned_by(attr, "#[secret] on a field expects `key = \"name\"`");
                continue;
            }
        };
        match args::parse(tokens) {
            Ok(parsed) => {
                for arg in parsed {
                    match arg {
                        Arg::Named { name, value, .. } if name == KEY => match string_literal(&value) {
                            Some(lit) if lit.value().is_empty() => {
                                cx.error_spanned_by(lit, "#[secret] key must not be empty");
                            }
                            Some(_) if key.is_some() => cx.error_spanned_by(&name, "#[secret] takes `key` once"),
                            Some(lit) => key = Some(lit.clone()),
                            None => cx.error_spanned_by(&value, "#[secret] key must be a string literal"),
                        },
                        Arg::Named { name, .. } => cx.error_spanned_by(
                            &name,
                            format!("unknown #[secret] option `{name}`; the only option is `key = \"name\"`"),
                        ),
                        Arg::Positional(expr) => {
                            cx.error_spanned_by(&expr, "#[secret] on a field expects `key = \"name\"`");
                        }
                    }
                }
            }
            Err(err) => cx.syn_error(err),
        }
    }
    key
}
