//! `docs/settings.md` is generated from the settings table of `ligand::config`'s module docs,
//! the one source of truth. This test fails when the committed file differs from what the
//! table generates; `LIGAND_BLESS=1 cargo test -p ligand --test settings_doc` rewrites it.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

/// The markdown reference: a heading, how it is made, and the table.
fn generated(source: &str) -> String {
    let mut out = String::from(
        "# `ligand.toml` settings\n\n\
         <!-- Generated from the module docs of ligand/src/config.rs by ligand/tests/settings_doc.rs:\n     \
         edit the table there, then run LIGAND_BLESS=1 cargo test -p ligand --test settings_doc -->\n\n\
         Every setting of `ligand.toml`, its environment override, and its default. Paths are\n\
         relative to the file's folder; durations are written as `\"30s\"`, `\"5m\"`, `\"1h 30m\"`.\n\
         Providers that reach a backend need a feature of the `ligand` crate (`redis`, `openbao`,\n\
         `bundle-fetch`, `etcd`, `otel`, or `full`).\n\n",
    );
    let table: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("//! "))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .collect();
    assert!(table.len() > 2, "no settings table in the module docs");
    for line in table {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_settings_reference_matches_the_module_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let expected = generated(&source);
    let path = root.join("../docs/settings.md");
    if std::env::var_os("LIGAND_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/settings.md differs from the settings table in ligand/src/config.rs; \
         run LIGAND_BLESS=1 cargo test -p ligand --test settings_doc to regenerate it"
    );
}
