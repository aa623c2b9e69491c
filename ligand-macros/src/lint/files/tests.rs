//! The crate scan over real files: the module tree, rebuild tracking, allowances, failures.

use super::super::rules::Rule;
use super::super::tempdir::{TempDir, heads};
use super::super::{CrateEnv, files, scan_crate};

const MANIFEST: &str =
    "[package]\nname = \"svc\"\nversion = \"0.1.0\"\n\n[dependencies]\nligand = \"0.1\"\n";

#[test]
fn scans_the_module_tree() {
    let dir = TempDir::new("tree");
    dir.write("Cargo.toml", MANIFEST);
    let main = dir.write(
        "src/main.rs",
        "mod a;\nmod b;\n#[path = \"other/c_file.rs\"]\nmod c;\nmod inline { mod d; }\nfn main() {}\n",
    );
    dir.write("src/a.rs", "mod nested;\npub use std::net::*;\n");
    dir.write("src/a/nested.rs", "fn f() { reqwest::get(\"u\"); }\n");
    dir.write(
        "src/b/mod.rs",
        "fn f() { crate::a::TcpStream::connect(\"x\"); }\n",
    );
    dir.write(
        "src/other/c_file.rs",
        "\n\nfn f() { redis::Client::open(\"r\"); }\n",
    );
    dir.write("src/inline/d.rs", "fn f(_: tokio::net::UdpSocket) {}\n");
    dir.write("tests/t.rs", "fn f() { reqwest::get(\"u\"); }\n");
    dir.write("build.rs", "fn main() { reqwest::get(\"u\"); }\n");
    let env = CrateEnv::bin(&dir.0, "svc");
    let scan = scan_crate(Some(&main), &env);
    let mut errors = scan.errors.clone();
    errors.sort();
    let heads: Vec<_> = errors
        .iter()
        .map(|e| {
            e.split(" is not allowed")
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        heads,
        [
            "src/a/nested.rs:1:10: [http_client] `reqwest::get`",
            "src/b/mod.rs:1:10: [raw_socket] `crate::a::TcpStream::connect` (that is `std::net::TcpStream::connect`)",
            "src/inline/d.rs:1:9: [raw_socket] `tokio::net::UdpSocket`",
            "src/other/c_file.rs:3:10: [backend_client] `redis::Client::open`",
        ],
        "{errors:#?}"
    );
    let mut tracked: Vec<_> = scan
        .tracked
        .iter()
        .map(|p| {
            p.strip_prefix(&dir.0)
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    tracked.sort();
    assert_eq!(
        tracked,
        [
            "Cargo.toml",
            "src/a.rs",
            "src/a/nested.rs",
            "src/b/mod.rs",
            "src/inline/d.rs",
            "src/main.rs",
            "src/other/c_file.rs"
        ]
    );
}

#[test]
fn unparsable_module_files_fail_closed() {
    let dir = TempDir::new("unparsable");
    dir.write("Cargo.toml", MANIFEST);
    let main = dir.write("src/main.rs", "mod broken;\nfn main() {}\n");
    dir.write("src/broken.rs", "fn f( {\n");
    let env = CrateEnv::bin(&dir.0, "svc");
    let scan = scan_crate(Some(&main), &env);
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert!(
        scan.errors[0].starts_with("src/broken.rs:1:")
            && scan.errors[0].contains("[unverified]")
            && scan.errors[0].contains("could not parse this file, so it cannot vouch for it"),
        "{:?}",
        scan.errors
    );
}

#[test]
fn unreadable_root_fails_closed() {
    let dir = TempDir::new("no-root");
    dir.write("Cargo.toml", MANIFEST);
    let env = CrateEnv::bin(&dir.0, "svc");
    let scan = scan_crate(Some(&dir.0.join("src/main.rs")), &env);
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert!(scan.errors[0].starts_with("ligand lint could not read the crate"));
}

#[test]
fn allowances_are_listed_with_file_and_line() {
    let dir = TempDir::new("allowances");
    dir.write("Cargo.toml", MANIFEST);
    let main = dir.write("src/main.rs", "mod probe;\nfn main() {}\n");
    dir.write(
        "src/probe.rs",
        "\n#[ligand::allow(raw_socket, reason = \"sidecar probe\")]\nfn f() { std::net::TcpStream::connect(\"a\"); }\n",
    );
    let env = CrateEnv::bin(&dir.0, "svc");
    let scan = scan_crate(Some(&main), &env);
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let listed: Vec<_> = scan
        .allowances
        .iter()
        .map(|a| (a.file.clone(), a.line, a.rule, a.reason.clone()))
        .collect();
    assert_eq!(
        listed,
        [(
            "src/probe.rs".to_owned(),
            2,
            Rule::RawSocket,
            "sidecar probe".to_owned()
        )]
    );
}

#[test]
fn module_paths_follow_rust_rules() {
    let dir = TempDir::new("paths");
    let main = dir.write("src/main.rs", "mod a;\n");
    dir.write("src/a.rs", "#[path = \"x.rs\"]\nmod b;\nmod c { mod d; }\n");
    dir.write("src/x.rs", "mod e;\n");
    dir.write("src/e.rs", "");
    dir.write("src/a/c/d.rs", "");
    let tree = files::load(&main).expect("loads");
    let mut names: Vec<_> = tree
        .files
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(&dir.0)
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "src/a.rs",
            "src/a/c/d.rs",
            "src/e.rs",
            "src/main.rs",
            "src/x.rs"
        ]
    );
}

#[test]
fn manifest_errors_are_reported() {
    assert!(super::super::manifest::analyze("[dependencies\n", |_| None).is_err());
    let dir = TempDir::new("no-manifest");
    let main = dir.write("src/main.rs", "fn main() {}\n");
    let env = CrateEnv::bin(&dir.0, "svc");
    let scan = scan_crate(Some(&main), &env);
    assert_eq!(scan.errors.len(), 1);
    assert!(scan.errors[0].starts_with("ligand lint could not read the manifest"));
}

/// A one-binary package `svc` with `main` as its `src/main.rs`; the scan of its binary.
fn scan_main(dir: &TempDir, main: &str) -> super::super::CrateScan {
    dir.write("Cargo.toml", MANIFEST);
    let main = dir.write("src/main.rs", main);
    scan_crate(Some(&main), &CrateEnv::bin(&dir.0, "svc"))
}

#[test]
fn missing_module_files_fail_closed() {
    let dir = TempDir::new("missing");
    let scan = scan_main(&dir, "fn main() {}\n#[cfg(any())]\nmod absent;\n");
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert!(
        scan.errors[0].starts_with(
            "src/main.rs:3:1: [unverified] ligand lint could not find the file of `mod absent;`"
        ),
        "{:?}",
        scan.errors
    );
    assert!(scan.errors[0].contains("create the file or remove the declaration"));
}

#[test]
fn raw_identifier_modules_name_their_file() {
    let dir = TempDir::new("raw-ident");
    dir.write(
        "src/dyn.rs",
        "fn f() { std::net::TcpStream::connect(\"a\"); }\n",
    );
    let scan = scan_main(&dir, "mod r#dyn;\nfn main() {}\n");
    assert_eq!(
        heads(&scan),
        ["src/dyn.rs:1:10: [raw_socket] `std::net::TcpStream::connect`"]
    );
}

#[test]
fn cfg_attr_paths_are_all_read() {
    let dir = TempDir::new("cfg-attr");
    dir.write(
        "src/unix.rs",
        "fn f() { std::net::UdpSocket::bind(\"a\"); }\n",
    );
    dir.write("src/other.rs", "fn f() { reqwest::get(\"u\"); }\n");
    let scan = scan_main(
        &dir,
        "#[cfg_attr(unix, path = \"unix.rs\")]\n#[cfg_attr(not(unix), cfg_attr(all(), path = \"other.rs\"))]\nmod sys;\nfn main() {}\n",
    );
    // `sys.rs` is missing: used only when no condition holds, where rustc requires it.
    assert_eq!(
        heads(&scan),
        [
            "src/other.rs:1:10: [http_client] `reqwest::get`",
            "src/unix.rs:1:10: [raw_socket] `std::net::UdpSocket::bind`",
        ]
    );
    let dir = TempDir::new("cfg-attr-missing");
    let scan = scan_main(
        &dir,
        "#[cfg_attr(all(), path = \"gone.rs\")]\nmod sys;\nfn main() {}\n",
    );
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert!(scan.errors[0].contains("could not find the file of `mod sys;`"));
}

#[test]
fn modules_declared_in_blocks_are_read() {
    let dir = TempDir::new("block");
    dir.write(
        "src/dial.rs",
        "pub fn dial() { std::net::TcpStream::connect(\"a\"); }\n",
    );
    dir.write("src/a/inner/deep.rs", "fn f() { reqwest::get(\"u\"); }\n");
    let scan = scan_main(
        &dir,
        "fn main() {\n    #[path = \"dial.rs\"]\n    mod dial;\n    dial::dial();\n}\nimpl S { fn f() { mod a { #[path = \"inner/deep.rs\"] mod deep; } } }\nfn g() { mod nopath; }\n",
    );
    assert_eq!(
        heads(&scan),
        [
            "src/a/inner/deep.rs:1:10: [http_client] `reqwest::get`",
            "src/dial.rs:1:17: [raw_socket] `std::net::TcpStream::connect`",
            "src/main.rs:7:10: [unverified] ligand lint could not locate `mod nopath;` declared in a block without `#[path]`; give it a `#[path = \"…\"]`",
        ]
    );
}

#[test]
fn path_attributes_follow_rustc_directories() {
    // In `a.rs`, `#[path]` on an inline module is relative to `src/`, and a `#[path]` module
    // inside an inline module to `src/a/<inline>/`.
    let dir = TempDir::new("rustc-dirs");
    dir.write(
        "src/a.rs",
        "#[path = \"p\"]\nmod m { mod x; }\nmod inline { #[path = \"y.rs\"] mod y; }\n",
    );
    dir.write("src/p/x.rs", "");
    dir.write("src/a/inline/y.rs", "");
    let main = dir.write("src/main.rs", "mod a;\n");
    let tree = files::load(&main).expect("loads");
    assert!(tree.errors.is_empty(), "{:?}", tree.errors);
    let mut names: Vec<_> = tree
        .files
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(&dir.0)
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["src/a.rs", "src/a/inline/y.rs", "src/main.rs", "src/p/x.rs"]
    );
}

#[test]
fn a_file_declared_twice_is_read_in_each_place() {
    // What `use super::*` brings in depends on where the file is declared.
    let dir = TempDir::new("twice");
    dir.write(
        "src/shared.rs",
        "use super::*;\nfn f() { net::TcpStream::connect(\"a\"); }\n",
    );
    // `#[path]` inside an inline module is relative to its directory, which must exist.
    dir.write("src/clean/.keep", "");
    dir.write("src/dirty/.keep", "");
    let scan = scan_main(
        &dir,
        "mod clean { #[path = \"../shared.rs\"] mod s; }\nmod dirty { use std::net; #[path = \"../shared.rs\"] mod s; }\nfn main() {}\n",
    );
    assert_eq!(
        heads(&scan),
        [
            "src/shared.rs:2:10: [raw_socket] `net::TcpStream::connect` (that is `std::net::TcpStream::connect`)"
        ]
    );
}

#[test]
fn module_level_includes_are_read() {
    let dir = TempDir::new("include");
    dir.write(
        "src/parts/dial.rs",
        "fn dial() { std::net::TcpStream::connect(\"a\"); }\nmod sub;\n",
    );
    dir.write("src/sub.rs", "fn f() { reqwest::get(\"u\"); }\n");
    dir.write("out/gen.rs", "fn g() { redis::Client::open(\"r\"); }\n");
    // `env!` reads the compiler's environment, here the test's: Cargo sets
    // CARGO_MANIFEST_DIR for both. Climb from there to the temp dir.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let up = "../".repeat(std::path::Path::new(&manifest_dir).components().count());
    let out = format!("/{up}{}", dir.0.join("out").display());
    let scan = scan_main(
        &dir,
        &format!(
            "include!(\"parts/dial.rs\");\nmod generated {{ include!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"{out}/gen.rs\")); }}\ninclude!(concat!(env!(\"LIGAND_LINT_UNSET_VAR\"), \"/x.rs\"));\ninclude!(\"nowhere.rs\");\nfn main() {{}}\n"
        ),
    );
    let heads = heads(&scan);
    assert_eq!(heads.len(), 5, "{heads:#?}");
    assert_eq!(
        heads[0],
        "out/gen.rs:1:10: [backend_client] `redis::Client::open`"
    );
    assert_eq!(
        heads[1],
        "src/main.rs:3:1: [unverified] ligand lint could not evaluate the path of this `include!` (it follows string literals, `concat!` and `env!`), so it cannot vouch for the included code"
    );
    assert!(
        heads[2].starts_with(
            "src/main.rs:4:1: [unverified] ligand lint could not find the file included from here"
        ),
        "{}",
        heads[2]
    );
    assert_eq!(
        heads[3],
        "src/parts/dial.rs:1:13: [raw_socket] `std::net::TcpStream::connect`"
    );
    // `mod sub;` in an included file belongs to the including module: `src/sub.rs`.
    assert_eq!(heads[4], "src/sub.rs:1:10: [http_client] `reqwest::get`");
}
