//! `#[ligand::allow(rule_id, reason = "…")]`: the one escape hatch. The attribute passes its
//! item through unchanged; the lint pass honours it for everything inside the item, and
//! `#[ligand::main]` compiles every allowance into the list written to the audit log.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{Attribute, Expr, ExprLit, Item, Lit, Meta};

use super::rules::Rule;
use crate::args::{self, Arg};
use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

const REASON: Symbol = Symbol("reason");
const LIGAND: Symbol = Symbol("ligand");
const ALLOW: Symbol = Symbol("allow");

const EXPECTS: &str = "#[ligand::allow] expects rule ids then a reason, such as \
                       `#[ligand::allow(raw_socket, reason = \"why this is safe\")]`";

/// A parsed allowance.
#[derive(Clone, Debug)]
pub(crate) struct AllowAttr {
    pub(crate) rules: Vec<Rule>,
    pub(crate) reason: String,
}

/// Whether `attr` is written `ligand::allow` or `::ligand::allow`.
pub(crate) fn is_allow(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<_> = path.segments.iter().collect();
    matches!(segments.as_slice(), [krate, last] if krate.ident == LIGAND && last.ident == ALLOW)
}

/// Parses the arguments of an allowance, recording every mistake.
pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Option<AllowAttr> {
    let args = match args::parse(tokens) {
        Ok(args) => args,
        Err(err) => {
            cx.syn_error(err);
            return None;
        }
    };
    let mut rules = Vec::new();
    let mut reason: Option<String> = None;
    let mut valid = true;
    for arg in args {
        match arg {
            Arg::Positional(Expr::Path(path)) if path.path.get_ident().is_some() => {
                let ident = path.path.get_ident().map(ToString::to_string);
                match ident.as_deref().and_then(Rule::from_id) {
                    Some(rule) if rules.contains(&rule) => {
                        cx.error_spanned_by(&path, format!("duplicate rule `{rule}`"));
                    }
                    Some(rule) => rules.push(rule),
                    None => {
                        valid = false;
                        let known: Vec<_> = Rule::ALL.iter().map(|rule| rule.id()).collect();
                        cx.error_spanned_by(
                            &path,
                            format!(
                                "unknown lint rule `{}`; the rules are {}",
                                path.to_token_stream(),
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
            Arg::Positional(expr) => {
                valid = false;
                cx.error_spanned_by(expr, EXPECTS);
            }
            Arg::Named { name, value, expr } if name == REASON => {
                if reason.is_some() {
                    valid = false;
                    cx.error_spanned_by(expr, "duplicate #[ligand::allow] option `reason`");
                    continue;
                }
                match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(lit), ..
                    }) if lit.value().trim().is_empty() => {
                        valid = false;
                        cx.error_spanned_by(
                            lit,
                            "#[ligand::allow] reason must not be empty; say why this bypass is safe",
                        );
                    }
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(lit), ..
                    }) => reason = Some(lit.value()),
                    value => {
                        valid = false;
                        cx.error_spanned_by(
                            value,
                            "#[ligand::allow] expects `reason = \"…\"` with a string literal",
                        );
                    }
                }
            }
            Arg::Named { name, .. } => {
                valid = false;
                cx.error_spanned_by(
                    &name,
                    format!("unknown #[ligand::allow] option `{name}`; the only option is `reason = \"…\"`"),
                );
            }
        }
    }
    if rules.is_empty() && valid {
        valid = false;
        cx.error_at(Span::call_site(), EXPECTS);
    }
    let Some(reason) = reason else {
        if valid {
            cx.error_at(
                Span::call_site(),
                "#[ligand::allow] needs `reason = \"…\"`: every allowance is written to the audit log with its reason",
            );
        }
        return None;
    };
    valid.then_some(AllowAttr { rules, reason })
}

/// The allowance `attr` grants, if it is a valid `#[ligand::allow(…)]`. Invalid ones grant
/// nothing; the attribute macro reports them.
pub(crate) fn of(attr: &Attribute) -> Option<AllowAttr> {
    if !is_allow(attr) {
        return None;
    }
    let Meta::List(list) = &attr.meta else {
        return None;
    };
    let cx = Ctxt::new();
    let parsed = parse(&cx, list.tokens.clone());
    match cx.check() {
        Ok(()) => parsed,
        Err(_) => None,
    }
}

/// `#[ligand::service]`, `#[ligand::client]` or `#[ligand::main]`: a Ligand attribute macro
/// that lints its own input, and so must see the allowance.
pub(crate) fn is_linting_macro(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<_> = path.segments.iter().collect();
    matches!(segments.as_slice(), [krate, last]
        if krate.ident == LIGAND
            && (last.ident == "service" || last.ident == "client" || last.ident == "main"))
}

/// `#[ligand::main]` or `#[::ligand::main]`.
pub(crate) fn is_main(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<_> = path.segments.iter().collect();
    matches!(segments.as_slice(), [krate, last] if krate.ident == LIGAND && last.ident == "main")
}

/// The attribute macro: checks the arguments and passes the item through. When a
/// `#[ligand::service]`, `#[ligand::client]` or `#[ligand::main]` follows on the same item, the allowance moves below
/// it, so that macro, which expands next, sees the allowance in its input.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let _ = parse(&cx, args.clone());
    let output = match syn::parse2::<Item>(input.clone()) {
        Ok(mut item) => match item_attrs(&mut item) {
            Some(attrs) if attrs.iter().any(is_linting_macro) => {
                let at = attrs.iter().position(is_linting_macro).unwrap_or(0);
                let allow: Attribute = syn::parse_quote!(#[::ligand::allow(#args)]);
                attrs.insert(at + 1, allow);
                item.into_token_stream()
            }
            _ => input,
        },
        Err(_) => input,
    };
    match cx.check() {
        Ok(()) => output,
        Err(err) => {
            let mut tokens = err.to_compile_error();
            tokens.extend(output);
            tokens
        }
    }
}

fn item_attrs(item: &mut Item) -> Option<&mut Vec<Attribute>> {
    match item {
        Item::Fn(item) => Some(&mut item.attrs),
        Item::Impl(item) => Some(&mut item.attrs),
        Item::Trait(item) => Some(&mut item.attrs),
        _ => None,
    }
}

/// One allowance as the generated main lists it.
#[derive(Debug)]
pub(crate) struct Allowance {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) rule: Rule,
    pub(crate) reason: String,
}

impl ToTokens for Allowance {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let Allowance {
            file,
            line,
            rule,
            reason,
        } = self;
        let (line, rule) = (*line as u32, rule.id());
        tokens.extend(quote! {
            ::ligand::__private::Allowance {
                file: #file,
                line: #line,
                rule: #rule,
                reason: #reason,
            }
        });
    }
}
