//! The arguments of `#[ligand::main]` and `#[ligand::main(config = path::to::async_fn)]`.

use proc_macro2::TokenStream;
use syn::{Expr, ExprPath};

use crate::args::{self, Arg};
use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

const CONFIG: Symbol = Symbol("config");

pub(crate) const EXPECTS_CONFIG: &str =
    "#[ligand::main] expects `config = path::to::async_fn` returning Result<ligand::Config, E>";

/// Parsed arguments. Without `config`, it is `::ligand::config::load`; an invalid one was
/// reported and is `None`.
pub(crate) struct MainAttr {
    /// The async fn that builds the configuration.
    pub(crate) config: Option<ExprPath>,
}

pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> MainAttr {
    let mut attr = MainAttr { config: None };
    let args = match args::parse(tokens) {
        Ok(args) => args,
        Err(err) => {
            cx.syn_error(err);
            return attr;
        }
    };
    let mut seen_config = false;
    for arg in args {
        match arg {
            Arg::Named { name, value, expr } if name == CONFIG => {
                if seen_config {
                    cx.error_spanned_by(expr, "duplicate #[ligand::main] option `config`");
                    continue;
                }
                seen_config = true;
                match value {
                    Expr::Path(path) if path.attrs.is_empty() => attr.config = Some(path),
                    value => cx.error_spanned_by(value, EXPECTS_CONFIG),
                }
            }
            Arg::Named { name, .. } => cx.error_spanned_by(
                &name,
                format!("unknown #[ligand::main] option `{name}`; the only option is `config = path::to::async_fn`"),
            ),
            Arg::Positional(expr) => {
                seen_config = true;
                cx.error_spanned_by(expr, EXPECTS_CONFIG);
            }
        }
    }
    if !seen_config {
        // No `config`: `ligand.toml` with embedded defaults, from the facade's `config` module.
        attr.config = Some(syn::parse_quote!(::ligand::config::load));
    }
    attr
}
