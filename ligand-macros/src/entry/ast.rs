//! A borrowed model of the function under `#[ligand::main]`.

use syn::{FnArg, ItemFn};

use super::attr::MainAttr;

pub(crate) struct Main<'a> {
    pub(crate) original: &'a ItemFn,
    pub(crate) attr: MainAttr,
}

impl Main<'_> {
    /// The declared parameters; valid input has exactly one, the `Server`.
    pub(crate) fn params(&self) -> impl Iterator<Item = &FnArg> {
        self.original.sig.inputs.iter()
    }
}
