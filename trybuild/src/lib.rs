//! Compile-pass and compile-fail suites for the Ligand macros; see `tests/`.
