//! Procedural macros for Ligand. Use them through the `ligand` crate, which documents them:
//! `#[ligand::service]` with the route attributes, `#[ligand::client]`, `#[ligand::main]`,
//! `#[ligand::secret]` and `#[ligand::allow]`.
//!
//! ```ignore
//! use ligand::prelude::*;
//!
//! struct Hello;
//!
//! #[ligand::service]
//! impl Hello {
//!     #[get("/hello/{name}")]
//!     async fn hello(&self, Path(name): Path<String>) -> String {
//!         format!("hello {name}")
//!     }
//! }
//!
//! #[ligand::client(service = "spiffe://example.org/service/greeter")]
//! pub trait Greeter {
//!     #[get("/greet/{name}")]
//!     async fn greet(&self, name: &str) -> Result<String, CallError>;
//! }
//!
//! #[ligand::main(config = config)]   // also lints every source file of the crate
//! async fn main(server: Server) -> ligand::Result<()> {
//!     server.serve(Hello).await
//! }
//! ```
//!
//! Each macro lives in its own module, split the way thiserror is: `ast` models the input,
//! `attr` parses the attributes, `valid` holds every check and `expand` generates the code.
//! The lint pass is the `lint` module; its documentation lists the rules, what is scanned and
//! the limits.

mod args;
mod client;
mod ctxt;
mod entry;
mod lint;
mod route;
mod secret;
mod service;
mod symbol;

use proc_macro::TokenStream;

use crate::lint::{CrateEnv, CrateScan};
use crate::route::attr::Method;

/// Generates the enforced routes of an inherent `impl` block: every `async fn(&self, ..)`
/// carrying a route attribute becomes a route, guarded by the Ligand pipeline.
///
/// A route attribute takes the path template, which is also the policy resource, and
/// optionally the policy action, which defaults to the HTTP method in uppercase:
///
/// ```ignore
/// #[ligand::service]
/// impl Bank {
///     #[get("/accounts/{id}")]                             // resource "/accounts/{id}", action "GET"
///     async fn account(&self, ctx: Ctx, Path(id): Path<String>) -> String { .. }
///
///     #[post("/accounts/{id}/transfers", action = "transfer")]
///     async fn transfer(&self, Json(body): Json<Transfer>) -> StatusCode { .. }
///
///     fn helper(&self) { .. }                              // not a route
/// }
/// ```
///
/// Handler arguments after `&self` are axum extractors, the body extractor last; the return
/// type implements `IntoResponse`. Templates use axum 0.8 syntax: `{param}` segments and a
/// final `{*rest}`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    service::expand(args.into(), input.into(), CrateEnv::from_env().as_ref()).into()
}

/// Generates the client of another service from a trait whose methods are that service's
/// routes. `service` is the SPIFFE ID the peer must present; the call fails closed otherwise.
///
/// ```ignore
/// #[ligand::client(service = "spiffe://bank.example/service/accounts")]
/// pub trait Accounts {
///     #[get("/accounts/{id}")]                             // `id` fills the template
///     async fn get(&self, id: &str) -> Result<Account, CallError>;
///
///     #[post("/accounts/{id}/debit", action = "debit")]    // `body` is the JSON body
///     async fn debit(&self, id: &str, body: &Debit) -> Result<Receipt, CallError>;
///
///     #[get("/accounts")]                                  // `page` is the query string
///     async fn list(&self, #[query] page: &Page) -> Result<Vec<Account>, CallError>;
///
///     #[delete("/accounts/{id}")]                          // `()`: no response body
///     async fn close(&self, id: u64) -> Result<(), CallError>;
/// }
///
/// #[ligand::service]
/// impl Payments {
///     #[post("/payments")]
///     async fn pay(&self, ctx: Ctx, Json(p): Json<Payment>) -> Result<Json<Receipt>, StatusCode> {
///         let accounts = ctx.client::<AccountsClient>();    // forwards this request's chain
///         let receipt = accounts.debit(&p.account, &p.debit).await.map_err(..)?;
///         Ok(Json(receipt))
///     }
/// }
/// ```
///
/// Every method is an `async fn(&self, ..) -> Result<T, CallError>` with one route attribute,
/// the same attributes `#[ligand::service]` reads (`action` is accepted so a trait can mirror
/// the service's routes; the callee decides its policy action). An argument named like a
/// template parameter fills it; one argument marked `#[query]` is sent as the query string;
/// one other argument, on `post`, `put` or `patch` only, is sent as the JSON body. `T` is
/// decoded from the response's JSON body.
///
/// The macro keeps the trait, with each `async fn` turned into
/// `fn ..(&self, ..) -> impl Future<Output = ..> + Send` so handlers can spawn the calls, and
/// generates a concrete `{Trait}Client` implementing it, obtained with
/// `ctx.client::<AccountsClient>()` in a handler or `server.client::<AccountsClient>()` for
/// background work. A concrete generated type rather than a `dyn` handle: calls are statically
/// dispatched with no boxing, and code that takes `&impl Accounts` can be tested with a test
/// double implementing the same trait.
#[proc_macro_attribute]
pub fn client(args: TokenStream, input: TokenStream) -> TokenStream {
    client::expand(args.into(), input.into(), CrateEnv::from_env().as_ref()).into()
}

/// Turns `async fn main(server: Server) -> ligand::Result<()>` into the program's entry point:
/// it installs logging, initializes from the configuration, closes the server on SIGTERM or
/// ctrl-c and returns the result of the body. Without `config = ...` the configuration is
/// `ligand::config::load`: `ligand.toml` (or `LIGAND_CONFIG`) with embedded defaults.
///
/// It also runs the lint pass over every source file of the crate (see the `ligand` crate's
/// documentation of `#[ligand::allow]` for the rules): bypassing the framework does not compile.
///
/// ```ignore
/// #[ligand::main]                       // ligand.toml, embedded defaults
/// async fn main(server: Server) -> ligand::Result<()> {
///     server.serve(Hello).await?;
///     Ok(())
/// }
///
/// async fn config() -> Result<ligand::Config, ligand::BoxError> { .. }
///
/// #[ligand::main(config = config)]      // the Rust builder instead
/// async fn main(server: Server) -> ligand::Result<()> {
///     server.serve(Hello).await?;
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, input: TokenStream) -> TokenStream {
    let env = CrateEnv::from_env();
    let scan = match &env {
        Some(env) => {
            let file = proc_macro::Span::call_site().local_file();
            lint::scan_crate(file.as_deref(), env)
        }
        // Fail closed: without Cargo's environment the crate cannot be found, so it is not
        // known to be clean.
        None => CrateScan {
            errors: vec![
                "#[ligand::main] lints the crate from CARGO_MANIFEST_DIR, which is not set; build with cargo"
                    .to_owned(),
            ],
            ..CrateScan::default()
        },
    };
    entry::expand(args.into(), input.into(), env.as_ref(), scan).into()
}

/// Allows a lint rule for everything inside the annotated item, with the reason recorded:
/// `#[ligand::allow(raw_socket, reason = "…")]`. The item passes through unchanged; the
/// allowance is written to the audit log at startup. A missing or empty reason, or an unknown
/// rule, is an error.
///
#[doc = include_str!("../LINT.md")]
#[proc_macro_attribute]
pub fn allow(args: TokenStream, input: TokenStream) -> TokenStream {
    lint::allow::expand(args.into(), input.into()).into()
}

/// A struct whose fields are the keys of the secret stored at `path`, obtained only through
/// the framework's audited cache (`ctx.secret::<DbCreds>().await?`):
///
/// ```ignore
/// #[ligand::secret(path = "secret/data/accounts/db")]
/// struct DbCreds {
///     username: String,
///     #[secret(key = "db-password")]       // a stored key that is not a Rust identifier
///     password: SecretString,
/// }
/// ```
///
/// The struct gets a `Debug` that names its fields and shows no value. A missing or mistyped
/// key is a `SecretError` naming the key, never the value. Tuple structs need a
/// `#[secret(key = "...")]` on every field.
#[proc_macro_attribute]
pub fn secret(args: TokenStream, input: TokenStream) -> TokenStream {
    secret::expand(args.into(), input.into()).into()
}

macro_rules! route_attr {
    ($($name:ident => $method:ident $upper:literal),* $(,)?) => {$(
        #[doc = concat!(
            "A `", $upper, "` route of a `#[ligand::service]` impl (a route it serves) or of a ",
            "`#[ligand::client]` trait (a route it calls): ",
            "`#[", stringify!($name), "(\"/accounts/{id}\")]`, optionally with `action = \"name\"`.",
        )]
        #[proc_macro_attribute]
        pub fn $name(args: TokenStream, input: TokenStream) -> TokenStream {
            route::expand(Method::$method, args.into(), input.into()).into()
        }
    )*};
}

route_attr! {
    get => Get "GET",
    post => Post "POST",
    put => Put "PUT",
    patch => Patch "PATCH",
    delete => Delete "DELETE",
}
