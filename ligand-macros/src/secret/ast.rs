//! The struct as the macro sees it: the original syn nodes kept for spans.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Field, Fields, Item, ItemStruct, LitStr};

use super::attr;
use crate::ctxt::Ctxt;

pub(crate) struct SecretStruct<'a> {
    pub(crate) original: &'a ItemStruct,
    pub(crate) path: Option<LitStr>,
    pub(crate) fields: Vec<SecretField<'a>>,
}

pub(crate) struct SecretField<'a> {
    pub(crate) original: &'a Field,
    /// The stored key: `#[secret(key = "...")]`, else the field's name.
    pub(crate) key: Option<LitStr>,
}

impl<'a> SecretStruct<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, item: &'a ItemStruct, path: Option<LitStr>) -> Self {
        let fields = match &item.fields {
            Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            Fields::Unnamed(unnamed) => unnamed.unnamed.iter().collect(),
            Fields::Unit => Vec::new(),
        };
        let fields = fields
            .into_iter()
            .map(|field| SecretField {
                original: field,
                key: attr::field_key(cx, &field.attrs),
            })
            .collect();
        Self {
            original: item,
            path,
            fields,
        }
    }

    pub(crate) fn is_tuple(&self) -> bool {
        matches!(self.original.fields, Fields::Unnamed(_))
    }
}

/// The part of an item to point at when it is the wrong kind of item.
pub(crate) fn head(item: &Item) -> TokenStream {
    match item {
        Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            quote!(#token #ident)
        }
        Item::Fn(f) => f.sig.to_token_stream(),
        Item::Impl(i) => {
            let (token, ty) = (&i.impl_token, &i.self_ty);
            quote!(#token #ty)
        }
        Item::Union(u) => {
            let (token, ident) = (&u.union_token, &u.ident);
            quote!(#token #ident)
        }
        other => other.to_token_stream(),
    }
}
