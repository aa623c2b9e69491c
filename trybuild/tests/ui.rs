//! Compile-pass and compile-fail suites for the Ligand macros. Regenerate the expected output
//! with `TRYBUILD=overwrite cargo test -p ligand-trybuild`, then read every changed `.stderr`.
//!
//! trybuild builds every case as a binary of one generated package whose targets all lie
//! outside its directory, so the crate scan of `#[ligand::main]` reads only its own case there.
//! Multi-target packages (a socket in the library or in another binary) are tested in
//! `ligand-macros/src/lint/targets/tests.rs` over temp dirs.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/service/pass/*.rs");
    t.pass("tests/main/pass/*.rs");
    t.pass("tests/lint/pass/*.rs");
    t.pass("tests/secret/pass/*.rs");
    t.pass("tests/client/pass/*.rs");
    t.compile_fail("tests/service/fail/*.rs");
    t.compile_fail("tests/route/fail/*.rs");
    t.compile_fail("tests/main/fail/*.rs");
    t.compile_fail("tests/lint/fail/*.rs");
    t.compile_fail("tests/secret/fail/*.rs");
    t.compile_fail("tests/client/fail/*.rs");
}
