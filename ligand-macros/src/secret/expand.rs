//! Code generation for `#[ligand::secret]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, ItemStruct, LitStr};

use super::ast::SecretStruct;
use super::attr::SECRET;

/// The struct without the `#[secret(...)]` field attributes.
fn cleaned(item: &ItemStruct) -> ItemStruct {
    let mut item = item.clone();
    for field in item.fields.iter_mut() {
        field.attrs.retain(|a| a.path() != SECRET);
    }
    item
}

pub(crate) fn expand(secret: &SecretStruct<'_>) -> TokenStream {
    let item = cleaned(secret.original);
    let ident = &item.ident;
    let path = secret
        .path
        .clone()
        .unwrap_or_else(|| LitStr::new("", ident.span()));
    let debug = redacting_debug(&item);

    let mirror: Vec<TokenStream> = secret
        .fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let name = format_ident!("__ligand_field{index}");
            let ty = &field.original.ty;
            let key = match (&field.key, &field.original.ident) {
                (Some(key), _) => key.value(),
                (None, Some(ident)) => ident.to_string().trim_start_matches("r#").to_owned(),
                (None, None) => String::new(),
            };
            quote! { #[serde(rename = #key)] #name: #ty }
        })
        .collect();
    let names: Vec<_> = (0..secret.fields.len())
        .map(|i| format_ident!("__ligand_field{i}"))
        .collect();
    let construct = match &item.fields {
        Fields::Named(named) => {
            let idents = named.named.iter().map(|f| &f.ident);
            quote! { #ident { #(#idents: __ligand_fields.#names),* } }
        }
        _ => quote! { #ident ( #(__ligand_fields.#names),* ) },
    };

    quote! {
        #item

        #debug

        const _: () = {
            // The keys are deserialized into this private mirror, so the struct itself never
            // implements `Deserialize`: the framework is the only way to obtain one.
            #[derive(::ligand::__private::serde::Deserialize)]
            #[serde(crate = "::ligand::__private::serde")]
            struct __LigandSecretKeys {
                #(#mirror),*
            }

            #[automatically_derived]
            impl ::ligand::Secret for #ident {
                const PATH: &'static str = #path;

                fn __from_secret(bytes: &[u8]) -> ::core::result::Result<Self, ::ligand::SecretError> {
                    let __ligand_fields: __LigandSecretKeys = ::ligand::decode_secret(Self::PATH, bytes)?;
                    ::core::result::Result::Ok(#construct)
                }
            }
        };
    }
}

/// `Debug` naming the fields and showing no value.
fn redacting_debug(item: &ItemStruct) -> TokenStream {
    let ident = &item.ident;
    let name = ident.to_string();
    let fields = match &item.fields {
        Fields::Named(named) => {
            let entries = named.named.iter().map(|f| {
                let field = f
                    .ident
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let field = field.trim_start_matches("r#").to_owned();
                quote! { .field(#field, &::core::format_args!("<redacted>")) }
            });
            quote! { f.debug_struct(#name) #(#entries)* .finish() }
        }
        _ => {
            let entries = item
                .fields
                .iter()
                .map(|_| quote! { .field(&::core::format_args!("<redacted>")) });
            quote! { f.debug_tuple(#name) #(#entries)* .finish() }
        }
    };
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #fields
            }
        }
    }
}

/// After errors: the struct as written (field attributes removed) with a redacting `Debug`
/// and no `Secret` impl, so the only errors shown are the real ones.
pub(crate) fn stub(item: &ItemStruct) -> TokenStream {
    let item = cleaned(item);
    let debug = redacting_debug(&item);
    quote! { #item #debug }
}
