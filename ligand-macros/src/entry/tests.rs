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
            ::ligand::__private::run_main_with_allowances(settings::load, __ligand_main, &[])
        }
    };
    let output = super::expand(
        quote!(config = settings::load),
        input,
        None,
        Default::default(),
    );
    assert_eq!(output.to_string(), expected.to_string());
}

#[test]
fn without_config_uses_ligand_toml_with_embedded_defaults() {
    let input = quote! {
        async fn main(server: Server) -> ligand::Result<()> {
            Ok(())
        }
    };
    // `#[ligand::main]` and `#[ligand::main()]` both arrive as no tokens.
    let output = super::expand(quote!(), input, None, Default::default()).to_string();
    assert!(!output.contains("compile_error"), "{output}");
    assert!(
        output.contains(
            ":: ligand :: __private :: run_main_with_allowances (:: ligand :: config :: load"
        ),
        "{output}"
    );
}

#[test]
fn reports_every_error_and_still_emits_a_main() {
    let input = quote! {
        fn start<T>() {}
    };
    let output = super::expand(quote!(), input, None, Default::default()).to_string();
    // name, not async, generics, no parameter, no return type
    assert_eq!(output.matches("compile_error").count(), 5, "{output}");
    assert!(output.contains("fn main ()"), "{output}");
}

#[test]
fn lists_allowances_and_tracks_scanned_files() {
    use crate::lint::rules::Rule;
    use crate::lint::{Allowance, CrateScan};

    let input = quote! {
        async fn main(server: Server) -> ligand::Result<()> {
            Ok(())
        }
    };
    let scan = CrateScan {
        errors: Vec::new(),
        tracked: vec!["/srv/app/Cargo.toml".into(), "/srv/app/src/main.rs".into()],
        allowances: vec![Allowance {
            file: "src/probe.rs".to_owned(),
            line: 7,
            rule: Rule::RawSocket,
            reason: "sidecar probe".to_owned(),
        }],
    };
    let expected = quote! {
        fn main() -> ::core::result::Result<(), ::ligand::Error> {
            async fn __ligand_main(server: Server) -> ligand::Result<()> {
                Ok(())
            }
            const _: &[u8] = ::core::include_bytes!("/srv/app/Cargo.toml");
            const _: &[u8] = ::core::include_bytes!("/srv/app/src/main.rs");

            ::ligand::__private::init_logging();
            ::ligand::__private::run_main_with_allowances(config, __ligand_main, &[
                ::ligand::__private::Allowance {
                    file: "src/probe.rs",
                    line: 7u32,
                    rule: "raw_socket",
                    reason: "sidecar probe",
                }
            ])
        }
    };
    let output = super::expand(quote!(config = config), input, None, scan);
    assert_eq!(output.to_string(), expected.to_string());
}

#[test]
fn crate_violations_are_errors_at_the_attribute_and_input_violations_at_their_span() {
    let input = quote! {
        async fn main(server: Server) -> ligand::Result<()> {
            let _ = std::net::TcpStream::connect("127.0.0.1:9");
            Ok(())
        }
    };
    let scan = crate::lint::CrateScan {
        errors: vec![
            "src/net.rs:3:5: [raw_socket] `std::net::UdpSocket` is not allowed".to_owned(),
        ],
        ..Default::default()
    };
    let output = super::expand(quote!(config = config), input, None, scan).to_string();
    assert_eq!(output.matches("compile_error").count(), 2, "{output}");
    assert!(output.contains("src/net.rs:3:5: [raw_socket]"), "{output}");
    assert!(
        output.contains("[raw_socket] `std::net::TcpStream::connect`"),
        "{output}"
    );
    // The stub keeps the build to these errors.
    assert!(output.contains("fn main ()"), "{output}");
}
