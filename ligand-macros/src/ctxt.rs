//! Error collection shared by every macro: each check records its error and goes on, so one
//! compile reports every mistake at once (serde_derive's `Ctxt`).

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Collects errors during parsing and validation.
///
/// Dropping it unchecked panics: every path must call [`Ctxt::check`], so no error is lost.
pub(crate) struct Ctxt {
    // `None` once checked, which is how `Drop` tells a forgotten check from a finished one.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanning the tokens of `obj`.
    pub(crate) fn error_spanned_by<A: ToTokens, T: Display>(&self, obj: A, msg: T) {
        self.push(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at<T: Display>(&self, span: proc_macro2::Span, msg: T) {
        self.push(syn::Error::new(span, msg));
    }

    /// Records one of syn's parse errors.
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.push(err);
    }

    fn push(&self, err: syn::Error) {
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(err);
        }
    }

    /// Consumes the context: every recorded error combined into one, in the order found.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .unwrap_or_default()
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }

    /// Consumes the context into the macro's output: `output()` when no error was recorded,
    /// otherwise the errors followed by `stub()`, the minimal code that keeps the compiler from
    /// reporting consequences of the errors as further errors.
    pub(crate) fn finish(
        self,
        output: impl FnOnce() -> TokenStream,
        stub: impl FnOnce() -> TokenStream,
    ) -> TokenStream {
        match self.check() {
            Ok(()) => output(),
            Err(err) => {
                let mut tokens = err.to_compile_error();
                tokens.extend(stub());
                tokens
            }
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("ligand-macros: error context dropped without check");
        }
    }
}
