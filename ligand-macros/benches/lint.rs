//! The cost of the lint pass on a generated crate of about 10,000 lines: reading and parsing
//! every file with syn and walking the tree, as `#[ligand::main]` does once per build.
//!
//! Run with: cargo bench -p ligand-macros --bench lint

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]
#![allow(
    dead_code,
    unreachable_pub,
    reason = "the lint modules are compiled here outside their proc-macro crate"
)]
#![allow(
    clippy::expect_used,
    reason = "a bench that cannot write its fixture cannot run"
)]
#![cfg_attr(
    test,
    allow(
        unused_imports,
        reason = "`cargo check --all-targets` builds this bench with cfg(test), which pulls in \
                  the lint's unit tests without their test harness"
    )
)]

extern crate proc_macro;

// A proc-macro crate exports only macros, so the bench compiles the lint's modules itself.
#[path = "../src/args.rs"]
mod args;
#[path = "../src/ctxt.rs"]
mod ctxt;
/// The lint module at its own path, so its `mod` declarations find `src/lint/…`.
#[path = "../src"]
mod src {
    pub(crate) mod lint;
}
#[path = "../src/symbol.rs"]
mod symbol;

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};

use crate::src::lint::{CrateEnv, scan_crate};

/// Modules of ~500 lines each: handlers, closures, async blocks, uses, macros.
fn module(index: usize) -> String {
    let mut text = String::from(
        "use std::collections::HashMap;\nuse std::net::SocketAddr;\nuse std::sync::Arc;\n\n",
    );
    for item in 0..25 {
        text.push_str(&format!(
            r#"/// Item {item} of module {index}.
pub struct Thing{item} {{
    name: String,
    values: HashMap<String, Vec<u64>>,
    addr: Option<SocketAddr>,
}}

impl Thing{item} {{
    pub async fn run(&self, input: &[u64]) -> Result<u64, String> {{
        let total: u64 = input.iter().map(|v| v * 2).sum();
        let shared = Arc::new(self.name.clone());
        let task = async move {{ format!("{{}} {{}}", shared, total) }};
        let _ = task.await;
        if total > 10 {{
            return Err(format!("too big: {{}}", total));
        }}
        Ok(total + self.values.len() as u64)
    }}
}}
"#
        ));
    }
    text
}

/// A crate of 20 modules plus a root: about 10,000 lines.
fn generate(dir: &Path) -> (PathBuf, usize) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("src")).expect("bench dir");
    fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"svc\"\nversion = \"0.1.0\"\n\n[dependencies]\nligand = \"0.1\"\n",
    )
    .expect("manifest");
    let mut root = String::new();
    let mut lines = 0;
    for index in 0..20 {
        root.push_str(&format!("mod m{index};\n"));
        let text = module(index);
        lines += text.lines().count();
        fs::write(dir.join("src").join(format!("m{index}.rs")), text).expect("module");
    }
    root.push_str("fn main() {}\n");
    lines += root.lines().count();
    let main = dir.join("src").join("main.rs");
    fs::write(&main, root).expect("main");
    (main, lines)
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ligand-lint-bench-{}", std::process::id()));
    let (main, lines) = generate(&dir);
    let env = CrateEnv {
        manifest_dir: dir.clone(),
        bin_name: Some("svc".to_owned()),
        rustdoc: false,
    };
    let scan = scan_crate(Some(&main), &env);
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    eprintln!(
        "generated crate: {lines} lines in {} files",
        scan.tracked.len() - 1
    );
    c.bench_function("scan_crate_10k_lines", |b| {
        b.iter(|| black_box(scan_crate(Some(black_box(&main)), &env)))
    });
    let _ = fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
