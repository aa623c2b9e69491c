//! The generated code, token for token: what `cargo expand` shows users.

use quote::quote;

#[test]
fn expands_two_routes() {
    let input = quote! {
        impl Bank {
            #[get("/accounts/{id}")]
            async fn account(&self, ctx: Ctx, Path(id): Path<String>) -> String {
                id
            }

            #[post("/accounts/{id}/transfers", action = "transfer")]
            async fn transfer(&self, Json(body): Json<Transfer>) -> StatusCode {
                StatusCode::OK
            }

            fn helper(&self) {}
        }
    };
    let expected = quote! {
        impl Bank {
            #[get(__ligand_routed)]
            async fn account(&self, ctx: Ctx, Path(id): Path<String>) -> String {
                id
            }

            #[post(__ligand_routed)]
            async fn transfer(&self, Json(body): Json<Transfer>) -> StatusCode {
                StatusCode::OK
            }

            fn helper(&self) {}
        }

        #[automatically_derived]
        impl ::ligand::__private::Service for Bank {
            fn __ligand_routes(self) -> ::ligand::__private::Routes<Self> {
                ::ligand::__private::Routes::new(self)
                    .route(
                        "/accounts/{id}",
                        "GET",
                        |__ligand_this: ::ligand::__private::Arc<Self>| ::ligand::__private::get(
                            move |__ligand_arg0: Ctx,
                             __ligand_arg1: Path<String>| async move {
                                ::ligand::__private::axum::response::IntoResponse::into_response(
                                    Self::account(&__ligand_this, __ligand_arg0, __ligand_arg1).await
                                )
                            },
                        ),
                    )
                    .route(
                        "/accounts/{id}/transfers",
                        "transfer",
                        |__ligand_this: ::ligand::__private::Arc<Self>| ::ligand::__private::post(
                            move |__ligand_arg0: Json<Transfer>| async move {
                                ::ligand::__private::axum::response::IntoResponse::into_response(
                                    Self::transfer(&__ligand_this, __ligand_arg0).await
                                )
                            },
                        ),
                    )
            }
        }
    };
    let output = super::expand(quote!(), input, None);
    assert_eq!(output.to_string(), expected.to_string());
}

#[test]
fn reports_every_error_and_still_emits_the_service() {
    let input = quote! {
        impl Bank {
            #[get("accounts")]
            fn account(&mut self) {}
        }
    };
    let output = super::expand(quote!(), input, None).to_string();
    assert_eq!(output.matches("compile_error").count(), 3, "{output}");
    assert!(
        output.contains("impl :: ligand :: __private :: Service for Bank"),
        "{output}"
    );
    assert!(!output.contains(".route"), "{output}");
}

#[test]
fn lints_its_own_impl_at_the_spans() {
    let input = quote! {
        impl Bank {
            #[get("/dial")]
            async fn dial(&self) -> String {
                let c = || async { tokio::net::TcpStream::connect("a:1").await };
                reqwest::get("http://x").await;
                String::new()
            }

            #[ligand::allow(raw_socket, reason = "sidecar probe")]
            fn probe(&self) -> bool {
                std::net::TcpStream::connect("a:1").is_ok()
            }
        }
    };
    let output = super::expand(quote!(), input, None).to_string();
    assert_eq!(output.matches("compile_error").count(), 2, "{output}");
    assert!(
        output.contains("[raw_socket] `tokio::net::TcpStream::connect`"),
        "{output}"
    );
    assert!(output.contains("[http_client] `reqwest::get`"), "{output}");
    // The errors come with the service stub, so nothing else fails.
    assert!(
        output.contains("impl :: ligand :: __private :: Service for Bank"),
        "{output}"
    );
}
