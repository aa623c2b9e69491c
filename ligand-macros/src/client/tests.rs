//! The generated code of `#[ligand::client]` and its errors, as `cargo expand` and the compiler
//! show them.

use proc_macro2::TokenStream;
use quote::quote;

use super::valid::spiffe_id;

const ACCOUNTS: &str = "spiffe://bank.example/service/accounts";

fn expand(args: TokenStream, input: TokenStream) -> String {
    super::expand(args, input, None).to_string()
}

fn accounts() -> TokenStream {
    quote! {
        /// The accounts service.
        pub trait Accounts {
            /// One account.
            #[get("/accounts/{id}")]
            async fn get(&self, id: &str) -> Result<Account, CallError>;
            #[post("/accounts/{id}/debit", action = "debit")]
            async fn debit(&self, id: &str, body: &Debit) -> Result<Receipt, CallError>;
            #[get("/accounts")]
            async fn list(&self, #[query] page: &Page) -> Result<Vec<Account>, CallError>;
            #[delete("/accounts/{id}")]
            async fn close(&self, id: u64) -> Result<(), CallError>;
        }
    }
}

/// `tokens` with the spacing `TokenStream::to_string` gives, to compare against output.
fn rendered(tokens: TokenStream) -> String {
    tokens.to_string()
}

#[test]
fn expands_the_example_token_for_token() {
    let expected = quote! {
        /// The accounts service.
        pub trait Accounts {
            /// One account.
            #[get(__ligand_routed)]
            fn get(&self, id: &str) -> impl ::core::future::Future<Output = Result<Account, CallError> > + ::core::marker::Send;
            #[post(__ligand_routed)]
            fn debit(&self, id: &str, body: &Debit) -> impl ::core::future::Future<Output = Result<Receipt, CallError> > + ::core::marker::Send;
            #[get(__ligand_routed)]
            fn list(&self, page: &Page) -> impl ::core::future::Future<Output = Result<Vec<Account>, CallError> > + ::core::marker::Send;
            #[delete(__ligand_routed)]
            fn close(&self, id: u64) -> impl ::core::future::Future<Output = Result<(), CallError> > + ::core::marker::Send;
        }

        #[doc = " The generated client of [`Accounts`], calling `spiffe://bank.example/service/accounts`. Obtain one with `ctx.client::<AccountsClient>()` in a handler (the request's chain is forwarded) or `server.client::<AccountsClient>()` for background work."]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        pub struct AccountsClient {
            caller: ::ligand::Caller,
        }

        #[automatically_derived]
        impl ::ligand::Client for AccountsClient {
            const SERVICE: &'static str = "spiffe://bank.example/service/accounts";

            fn __from_caller(caller: ::ligand::Caller) -> Self {
                AccountsClient { caller }
            }
        }

        #[automatically_derived]
        impl Accounts for AccountsClient {
            fn get(&self, id: &str) -> impl ::core::future::Future<Output = Result<Account, CallError> > + ::core::marker::Send {
                self.caller
                    .request(::ligand::__private::Method::GET, "/accounts/{id}")
                    .param("id", &id)
                    .send()
            }
            fn debit(&self, id: &str, body: &Debit) -> impl ::core::future::Future<Output = Result<Receipt, CallError> > + ::core::marker::Send {
                self.caller
                    .request(::ligand::__private::Method::POST, "/accounts/{id}/debit")
                    .param("id", &id)
                    .json(&body)
                    .send()
            }
            fn list(&self, page: &Page) -> impl ::core::future::Future<Output = Result<Vec<Account>, CallError> > + ::core::marker::Send {
                self.caller
                    .request(::ligand::__private::Method::GET, "/accounts")
                    .query(&page)
                    .send()
            }
            fn close(&self, id: u64) -> impl ::core::future::Future<Output = Result<(), CallError> > + ::core::marker::Send {
                self.caller
                    .request(::ligand::__private::Method::DELETE, "/accounts/{id}")
                    .param("id", &id)
                    .send()
            }
        }
    };
    let output = expand(quote!(service = #ACCOUNTS), accounts());
    assert_eq!(output, rendered(expected));
}

#[test]
fn binds_arguments_by_rule() {
    let output = expand(
        quote!(service = #ACCOUNTS),
        quote! {
            trait Files {
                #[put("/files/{dir}/{*rest}")]
                async fn put(&self, rest: &str, #[query] opts: &Opts, dir: &str, body: &Bytes) -> Result<(), CallError>;
            }
        },
    );
    let binds = rendered(quote!(
        .request(::ligand::__private::Method::PUT, "/files/{dir}/{*rest}")
        .param("rest", &rest)
        .query(&opts)
        .param("dir", &dir)
        .json(&body)
        .send()
    ));
    assert!(output.contains(&binds), "{output}");
    assert!(!output.contains("compile_error"), "{output}");
    // The struct takes the trait's visibility: private here.
    assert!(output.contains("struct FilesClient"), "{output}");
    assert!(!output.contains("pub struct"), "{output}");
}

#[test]
fn a_hash_key_argument_is_sent_as_bound_and_also_keys_the_call() {
    let output = expand(
        quote!(service = #ACCOUNTS),
        quote! {
            trait Sessions {
                #[get("/sessions/{id}")]
                async fn get(&self, #[hash_key] id: &str) -> Result<(), CallError>;
            }
        },
    );
    let binds = rendered(quote!(
        .request(::ligand::__private::Method::GET, "/sessions/{id}")
        .param("id", &id)
        .hash_key(&id)
        .send()
    ));
    assert!(output.contains(&binds), "{output}");
    assert!(!output.contains("# [hash_key]"), "{output}");
    assert!(!output.contains("compile_error"), "{output}");
}

fn errors(args: TokenStream, input: TokenStream) -> (String, usize) {
    let output = expand(args, input);
    let count = output.matches("compile_error").count();
    (output, count)
}

#[test]
fn reports_every_argument_error() {
    let input = || {
        quote!(
            trait A {}
        )
    };
    let (out, n) = errors(quote!(), input());
    assert!(
        out.contains("expects `service = \\\"spiffe://...\\\"`"),
        "{out}"
    );
    assert_eq!(n, 1, "{out}");
    let (out, n) = errors(
        quote!(service = "spiffe://a/b", service = "spiffe://a/c"),
        input(),
    );
    assert!(out.contains("takes `service` once"), "{out}");
    assert_eq!(n, 1, "{out}");
    let (out, n) = errors(quote!(service = "spiffe://a/b", timeout = 3), input());
    assert!(
        out.contains("unknown #[ligand::client] option `timeout`"),
        "{out}"
    );
    assert_eq!(n, 1, "{out}");
    let (out, n) = errors(quote!(service = ID), input());
    assert!(out.contains("service must be a string literal"), "{out}");
    assert_eq!(n, 1, "{out}");
    let (out, n) = errors(quote!(service = "https://a/b"), input());
    assert!(out.contains("must start with `spiffe://`"), "{out}");
    assert_eq!(n, 1, "{out}");
}

#[test]
fn accepts_workload_spiffe_ids_only() {
    assert_eq!(spiffe_id(ACCOUNTS), Ok(()));
    assert_eq!(spiffe_id("spiffe://td/a.b-c_D/9"), Ok(()));
    let refused = |id: &str| spiffe_id(id).expect_err(id);
    assert!(refused("spiffe://td").contains("names no workload"));
    assert!(refused("spiffe://td/").contains("names no workload"));
    assert!(refused("spiffe:///svc").contains("trust domain is empty"));
    assert!(refused("spiffe://Bank.example/svc").contains("holds `B`"));
    assert!(refused("spiffe://td:8443/svc").contains("a port"));
    assert!(refused("spiffe://user@td/svc").contains("userinfo"));
    assert!(refused("spiffe://td/svc?x=1").contains("a query"));
    assert!(refused("spiffe://td/svc#x").contains("a fragment"));
    assert!(refused("spiffe://td/a//b").contains("empty segment"));
    assert!(refused("spiffe://td/a/").contains("empty segment"));
    assert!(refused("spiffe://td/a/../b").contains("`..` segment"));
    assert!(refused("spiffe://td/./b").contains("`.` segment"));
    assert!(refused("spiffe://td/a b").contains("holds ` `"));
    assert!(refused("SPIFFE://td/a").contains("must start with"));
}

#[test]
fn reports_every_trait_and_method_error_and_still_emits_the_trait() {
    let (out, n) = errors(
        quote!(service = #ACCOUNTS),
        quote! {
            pub trait Bad<T>: Send {
                type Item;
                const N: usize;
                async fn unrouted(&self) -> Result<(), CallError>;
                #[get("/a/{id}")]
                #[post("/a/{id}")]
                async fn twice(&self, id: &str) -> Result<(), CallError>;
                #[get("/a")]
                fn blocking(&self) -> Result<(), CallError>;
                #[get("/a")]
                async fn owned(self) -> Result<(), CallError>;
                #[get("/a")]
                async fn with_body(&self) -> Result<(), CallError> { Ok(()) }
                #[post("/a/{id}")]
                async fn pattern(&self, (a, b): (u8, u8), other: &str) -> Result<(), CallError>;
                #[post("/a")]
                async fn two_bodies(&self, a: &A, b: &B) -> Result<(), CallError>;
                #[put("/a")]
                async fn two_queries(&self, #[query] a: &A, #[query] b: &B) -> Result<(), CallError>;
                #[delete("/a/{id}")]
                async fn delete_body(&self, id: &str, b: &B) -> Result<(), CallError>;
                #[get("/a")]
                async fn generic<U>(&self) -> Result<(), CallError>;
                #[get("/a")]
                async fn wrong_error(&self) -> Result<(), std::io::Error>;
                #[get("/a")]
                async fn no_result(&self) -> String;
                #[get("a")]
                async fn bad_template(&self) -> Result<(), CallError>;
                #[get("/a/{id}/{b}")]
                async fn two_keys(&self, #[hash_key] id: &str, #[hash_key] b: &str) -> Result<(), CallError>;
                #[get("/a/{id}")]
                async fn keyed_with_args(&self, #[hash_key(user)] id: &str) -> Result<(), CallError>;
            }
        },
    );
    for message in [
        "traits cannot be generic",
        "cannot have supertraits",
        "cannot have associated types",
        "cannot have associated constants",
        "`unrouted` needs a route attribute",
        "#[post] cannot be combined with #[get]",
        "client methods must be async fns",
        "client methods take `&self`",
        "client methods are declarations",
        "arguments are plain names",
        "#[post] template parameter `id` has no argument named `id`",
        "#[post] sends one JSON body, and `a` is already it",
        "#[put] sends one #[query] argument, and `a` is already it",
        "#[delete] calls send no body, so `b` must name a template parameter (`id`)",
        "client methods cannot have generic parameters",
        "return `Result<T, CallError>`",
        "#[get] path template must start with `/`",
        "#[get] has one #[hash_key] argument, and `id` is already it",
        "#[hash_key] takes no arguments",
    ] {
        assert!(out.contains(message), "missing {message:?} in {out}");
    }
    assert_eq!(n, 20, "{out}");
    // Next to the errors: the trait with its markers consumed and the client struct, no impl.
    assert!(out.contains("pub trait Bad"), "{out}");
    assert!(out.contains("pub struct BadClient"), "{out}");
    assert!(!out.contains("impl Bad"), "{out}");
    assert!(!out.contains("# [query]"), "{out}");
    assert!(!out.contains("# [hash_key]"), "{out}");
    assert!(
        !out.contains("\"/a/{id}\""),
        "route attributes are consumed: {out}"
    );
}

#[test]
fn only_goes_on_a_trait() {
    let (out, n) = errors(
        quote!(service = #ACCOUNTS),
        quote!(
            struct Accounts;
        ),
    );
    assert!(out.contains("#[ligand::client] goes on a trait"), "{out}");
    assert_eq!(n, 1, "{out}");
}

#[test]
fn lints_its_own_trait_at_the_spans() {
    let (out, n) = errors(
        quote!(service = #ACCOUNTS),
        quote! {
            trait Raw {
                #[get("/a")]
                async fn get(&self) -> Result<reqwest::Response, CallError>;
            }
        },
    );
    assert!(out.contains("[http_client] `reqwest::Response`"), "{out}");
    assert_eq!(n, 1, "{out}");
}
