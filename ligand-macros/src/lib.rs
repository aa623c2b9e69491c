//! Procedural macros for Ligand. Use them through the `ligand` crate, which documents them:
//! `#[ligand::service]` with the route attributes, and `#[ligand::main]`.
//!
//! Each macro lives in its own module, split the way thiserror is: `ast` models the input,
//! `attr` parses the attributes, `valid` holds every check and `expand` generates the code.

mod args;
mod ctxt;
mod entry;
mod route;
mod service;
mod symbol;

use proc_macro::TokenStream;

use crate::service::attr::Method;

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
    service::expand(args.into(), input.into()).into()
}

/// Turns `async fn main(server: Server) -> ligand::Result<()>` into the program's entry point:
/// it installs logging, initializes from `config`, closes the server on SIGTERM or ctrl-c and
/// returns the result of the body.
///
/// ```ignore
/// async fn config() -> Result<ligand::Config, ligand::BoxError> { .. }
///
/// #[ligand::main(config = config)]
/// async fn main(server: Server) -> ligand::Result<()> {
///     server.serve(Hello).await?;
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, input: TokenStream) -> TokenStream {
    entry::expand(args.into(), input.into()).into()
}

macro_rules! route_attr {
    ($($name:ident => $method:ident $upper:literal),* $(,)?) => {$(
        #[doc = concat!(
            "A `", $upper, "` route of a `#[ligand::service]` impl: ",
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
