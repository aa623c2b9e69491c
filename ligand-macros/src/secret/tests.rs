use quote::quote;

use super::expand;

fn render(args: proc_macro2::TokenStream, input: proc_macro2::TokenStream) -> String {
    expand(args, input).to_string()
}

#[test]
fn generates_a_secret_impl_and_a_redacting_debug() {
    let out = render(
        quote!(path = "secret/data/accounts/db"),
        quote!(
            struct DbCreds {
                username: String,
                #[secret(key = "db-password")]
                password: SecretString,
            }
        ),
    );
    assert!(
        out.contains("impl :: ligand :: Secret for DbCreds"),
        "{out}"
    );
    assert!(out.contains("\"secret/data/accounts/db\""), "{out}");
    assert!(out.contains("rename = \"db-password\""), "{out}");
    assert!(
        out.contains("impl :: core :: fmt :: Debug for DbCreds"),
        "{out}"
    );
    assert!(
        !out.contains("# [secret"),
        "field attributes are consumed: {out}"
    );
    assert!(!out.contains("compile_error"), "{out}");
}

#[test]
fn reports_every_error_at_once() {
    let out = render(
        quote!(path = some_const, flavour = "x"),
        quote!(
            struct Keys(String, #[secret(key = "b")] String);
        ),
    );
    assert!(out.contains("path must be a string literal"), "{out}");
    assert!(
        out.contains("unknown #[ligand::secret] option `flavour`"),
        "{out}"
    );
    assert!(
        out.contains("tuple struct fields need a key mapping"),
        "{out}"
    );
    assert_eq!(out.matches("compile_error").count(), 3, "{out}");
}
