//! Every semantic check of a `#[ligand::client]` trait. Each failure is recorded and checking
//! goes on, so one compile shows every mistake.

use quote::quote;
use syn::{GenericArgument, PathArguments, ReturnType, TraitItem, Type, TypePath};

use super::ast::{Binding, Call, ClientTrait};
use crate::ctxt::Ctxt;
use crate::route::attr::Method;
use crate::route::signature::{self, Role};
use crate::route::template;

pub(crate) fn check(cx: &Ctxt, client: &ClientTrait<'_>) {
    check_trait(cx, client);
    for item in &client.others {
        cx.error_spanned_by(
            item,
            match item {
                TraitItem::Type(_) => {
                    "#[ligand::client] traits cannot have associated types; every item is a call"
                }
                TraitItem::Const(_) => {
                    "#[ligand::client] traits cannot have associated constants; every item is a call"
                }
                _ => "#[ligand::client] traits hold only `async fn` calls",
            },
        );
    }
    for call in &client.calls {
        check_call(cx, call);
    }
}

fn check_trait(cx: &Ctxt, client: &ClientTrait<'_>) {
    let item = client.original;
    if let Some(service) = &client.service
        && let Err(reason) = spiffe_id(&service.value())
    {
        cx.error_spanned_by(
            service,
            format!(
                "#[ligand::client] service must be a SPIFFE ID such as \
                 \"spiffe://bank.example/service/accounts\": {reason}"
            ),
        );
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.generics,
            "#[ligand::client] traits cannot be generic; the client calls one fixed API",
        );
    }
    if let Some(where_clause) = &item.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "#[ligand::client] traits cannot have where-clauses",
        );
    }
    if !item.supertraits.is_empty() {
        cx.error_spanned_by(
            &item.supertraits,
            "#[ligand::client] traits cannot have supertraits; the generated client implements only this trait",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "#[ligand::client] traits cannot be unsafe");
    }
    if let Some(auto_token) = &item.auto_token {
        cx.error_spanned_by(auto_token, "#[ligand::client] traits cannot be auto traits");
    }
}

fn check_call(cx: &Ctxt, call: &Call<'_>) {
    let sig = &call.original.sig;
    let (fn_token, ident) = (&sig.fn_token, &sig.ident);
    let head = quote!(#fn_token #ident);

    let Some(route) = &call.route else {
        cx.error_spanned_by(
            &head,
            format!(
                "`{ident}` needs a route attribute such as #[get(\"/accounts/{{id}}\")]; \
                 every method of a #[ligand::client] trait is a call"
            ),
        );
        return;
    };
    let method = route.method;
    for (attr, other) in &call.extra {
        cx.error_spanned_by(
            attr,
            format!("{other} cannot be combined with {method}; a method is exactly one call"),
        );
    }
    if let Some(template) = &route.template
        && let Err(err) = template::parse(&template.value())
    {
        cx.error_spanned_by(template, format!("{method} {err}"));
    }
    if let Some(body) = &call.original.default {
        cx.error_spanned_by(
            body,
            format!("{method} client methods are declarations; #[ligand::client] writes the body"),
        );
    }
    signature::check(
        cx,
        sig,
        &head,
        method,
        &Role {
            plural: "client methods",
            shared_by: "a client is shared by concurrent calls",
        },
    );
    check_args(cx, call, method);
    if !returns_call_result(&sig.output) {
        let message = format!(
            "{method} client methods return `Result<T, CallError>`, \
             T being the response body decoded from JSON"
        );
        match &sig.output {
            ReturnType::Type(_, ty) => cx.error_spanned_by(ty, message),
            ReturnType::Default => cx.error_spanned_by(&head, message),
        }
    }
}

fn check_args(cx: &Ctxt, call: &Call<'_>, method: Method) {
    let mut query = None;
    let mut body = None;
    let mut hash_key = None;
    for arg in &call.args {
        let Some(ident) = arg.ident else {
            cx.error_spanned_by(
                &arg.original.pat,
                format!(
                    "{method} client method arguments are plain names such as `id: &str`; \
                     the name says how the argument is sent"
                ),
            );
            continue;
        };
        if let Some(marker) = arg.hash_key {
            match hash_key {
                Some(first) => cx.error_spanned_by(
                    marker,
                    format!("{method} has one #[hash_key] argument, and `{first}` is already it"),
                ),
                None => hash_key = Some(ident),
            }
        }
        match arg.binding {
            Binding::Param => {}
            Binding::Query => match query {
                Some(first) => cx.error_spanned_by(
                    arg.query,
                    format!("{method} sends one #[query] argument, and `{first}` is already it"),
                ),
                None => query = Some(ident),
            },
            Binding::Body if matches!(method, Method::Get | Method::Delete) => {
                let params = listed(&call.params);
                cx.error_spanned_by(
                    ident,
                    format!(
                        "{method} calls send no body, so `{ident}` must name a template \
                         parameter ({params}) or be marked #[query]"
                    ),
                );
            }
            Binding::Body => match body {
                Some(first) => cx.error_spanned_by(
                    ident,
                    format!(
                        "{method} sends one JSON body, and `{first}` is already it; \
                         `{ident}` names no template parameter and is not #[query]"
                    ),
                ),
                None => body = Some(ident),
            },
        }
    }
    let Some(template) = call
        .route
        .as_ref()
        .and_then(|route| route.template.as_ref())
    else {
        return;
    };
    for param in &call.params {
        let bound = call
            .args
            .iter()
            .any(|arg| arg.binding == Binding::Param && arg.ident.is_some_and(|i| i == param));
        if !bound {
            cx.error_spanned_by(
                template,
                format!("{method} template parameter `{param}` has no argument named `{param}`"),
            );
        }
    }
}

/// `{a}, {b}` for a message, or a note that there are none.
fn listed(params: &[String]) -> String {
    if params.is_empty() {
        return "the template has none".to_owned();
    }
    params
        .iter()
        .map(|param| format!("`{param}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `&self` or `self: &Self`.
/// `Result<T, CallError>`, read syntactically: a path ending in `Result` with two type
/// arguments, the second a path ending in `CallError`. Type aliases are not followed; the
/// compiler checks the types themselves against the generated call.
fn returns_call_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Some(result) = last_segment(ty) else {
        return false;
    };
    if result.ident != "Result" {
        return false;
    }
    let PathArguments::AngleBracketed(args) = &result.arguments else {
        return false;
    };
    let types: Vec<_> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [_, error] if args.args.len() == 2 => {
            last_segment(error).is_some_and(|error| error.ident == "CallError")
        }
        _ => false,
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// Checks that `id` is a SPIFFE ID naming a workload: `spiffe://<trust-domain>/<path>`, the
/// trust domain lowercase `[a-z0-9.-_]`, the path non-empty segments of `[A-Za-z0-9.-_]` other
/// than `.` and `..`, and no query, fragment, port or userinfo. The error completes the
/// sentence "service must be a SPIFFE ID: …".
pub(crate) fn spiffe_id(id: &str) -> Result<(), String> {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err("it must start with `spiffe://`".to_owned());
    };
    if let Some(c) = rest.chars().find(|c| matches!(c, '?' | '#' | ':' | '@')) {
        let what = match c {
            '?' => "a query",
            '#' => "a fragment",
            ':' => "a port",
            _ => "userinfo",
        };
        return Err(format!("it must not contain {what} (`{c}`)"));
    }
    let (domain, path) = match rest.split_once('/') {
        Some((domain, path)) => (domain, Some(path)),
        None => (rest, None),
    };
    if domain.is_empty() {
        return Err("the trust domain is empty".to_owned());
    }
    if let Some(c) = domain
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(format!(
            "the trust domain `{domain}` holds `{c}`; only lowercase letters, digits, `.`, `-` and `_` are allowed"
        ));
    }
    let Some(path) = path.filter(|path| !path.is_empty()) else {
        return Err(format!(
            "`spiffe://{domain}` is the trust domain itself and names no workload; add its path, such as `spiffe://{domain}/service/name`"
        ));
    };
    for segment in path.split('/') {
        match segment {
            "" => {
                return Err(
                    "the path must not hold an empty segment (`//` or a trailing `/`)".to_owned(),
                );
            }
            "." | ".." => return Err(format!("the path must not hold a `{segment}` segment")),
            _ => {}
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!(
                "the path segment `{segment}` holds `{c}`; only letters, digits, `.`, `-` and `_` are allowed"
            ));
        }
    }
    Ok(())
}
