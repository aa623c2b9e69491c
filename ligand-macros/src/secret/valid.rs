//! Every semantic check of `#[ligand::secret]`.

use std::collections::HashMap;

use syn::Fields;

use super::ast::SecretStruct;
use crate::ctxt::Ctxt;

pub(crate) fn check(cx: &Ctxt, secret: &SecretStruct<'_>) {
    let item = secret.original;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "#[ligand::secret] structs cannot be generic",
        );
    }
    if matches!(item.fields, Fields::Unit) {
        cx.error_spanned_by(
            &item.ident,
            "#[ligand::secret] struct has no fields; its fields are the secret's keys",
        );
    }
    if secret.is_tuple() {
        for field in secret.fields.iter().filter(|f| f.key.is_none()) {
            cx.error_spanned_by(
                &field.original.ty,
                "#[ligand::secret] tuple struct fields need a key mapping: #[secret(key = \"name\")]",
            );
        }
    }
    let mut seen: HashMap<String, ()> = HashMap::new();
    for field in &secret.fields {
        let key = match (&field.key, &field.original.ident) {
            (Some(lit), _) => lit.value(),
            (None, Some(ident)) => ident.to_string().trim_start_matches("r#").to_owned(),
            (None, None) => continue,
        };
        if seen.insert(key.clone(), ()).is_some() {
            let span = field.key.as_ref().map_or_else(
                || field.original.ident.as_ref().map(|i| i.span()),
                |k| Some(k.span()),
            );
            if let Some(span) = span {
                cx.error_at(
                    span,
                    format!("#[ligand::secret] key `{key}` is used by two fields"),
                );
            }
        }
    }
}
