//! The generated entry point, token for token: what `cargo expand` shows users.

use quote::quote;

#[test]
fn expands_main() {
    let input = quote! {
        /// The entry point.
        async fn main(server: Server) -> ligand::Result<()> {
            server.serve(Hello).await?;
            Ok(())
        }
    };
    let expected = quote! {
        /// The entry point.
        fn main() -> ::core::result::Result<(), ::ligand::Error> {
            async fn __ligand_main(server: Server) -> ligand::Result<()> {
                server.serve(Hello).await?;
                Ok(())
            }

            ::ligand::__private::init_logging();
            ::ligand::__private::run_main(settings::load, __ligand_main)
        }
    };
    let output = super::expand(quote!(config = settings::load), input);
    assert_eq!(output.to_string(), expected.to_string());
}

#[test]
fn reports_every_error_and_still_emits_a_main() {
    let input = quote! {
        fn start<T>() {}
    };
    let output = super::expand(quote!(), input).to_string();
    // missing config, name, not async, generics, no parameter, no return type
    assert_eq!(output.matches("compile_error").count(), 6, "{output}");
    assert!(output.contains("fn main ()"), "{output}");
}
