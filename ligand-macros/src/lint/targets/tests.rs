//! Target discovery, and the package scan over every target: a socket anywhere in the library,
//! the binaries or the examples of a service package is reported.

use super::super::tempdir::{TempDir, heads};
use super::super::{CrateEnv, scan_crate};
use super::{Kind, discover};

const MAIN: &str =
    "#[ligand::main]\nasync fn main(server: Server) -> ligand::Result<()> { Ok(()) }\n";

fn names(dir: &TempDir) -> Vec<(Kind, String, String)> {
    discover(&dir.0)
        .expect("manifest reads")
        .into_iter()
        .map(|t| {
            let path = t
                .path
                .strip_prefix(&dir.0)
                .expect("inside")
                .display()
                .to_string();
            (t.kind, t.name, path)
        })
        .collect()
}

#[test]
fn discovers_explicit_and_conventional_targets() {
    let dir = TempDir::new("discover");
    dir.write(
        "Cargo.toml",
        "[package]\nname = \"my-svc\"\n\n[lib]\npath = \"lib/root.rs\"\n\n[[bin]]\nname = \"tool\"\npath = \"tools/tool.rs\"\n\n[[bin]]\nname = \"admin\"\n\n[[example]]\nname = \"demo\"\n\n[[test]]\nname = \"t\"\npath = \"src/bin/not-a-test.rs\"\n",
    );
    for file in [
        "lib/root.rs",
        "src/lib.rs",
        "src/main.rs",
        "src/bin/admin.rs",
        "src/bin/other.rs",
        "src/bin/nested/main.rs",
        "examples/demo/main.rs",
        "examples/flat.rs",
        "tools/tool.rs",
        "tests/t.rs",
        "benches/b.rs",
    ] {
        dir.write(file, "");
    }
    assert_eq!(
        names(&dir),
        [
            (Kind::Lib, "my_svc".to_owned(), "lib/root.rs".to_owned()),
            (Kind::Bin, "tool".to_owned(), "tools/tool.rs".to_owned()),
            (Kind::Bin, "admin".to_owned(), "src/bin/admin.rs".to_owned()),
            (
                Kind::Example,
                "demo".to_owned(),
                "examples/demo/main.rs".to_owned()
            ),
            (Kind::Lib, "my_svc".to_owned(), "src/lib.rs".to_owned()),
            (Kind::Bin, "my-svc".to_owned(), "src/main.rs".to_owned()),
            (
                Kind::Bin,
                "nested".to_owned(),
                "src/bin/nested/main.rs".to_owned()
            ),
            (Kind::Bin, "other".to_owned(), "src/bin/other.rs".to_owned()),
            (
                Kind::Example,
                "flat".to_owned(),
                "examples/flat.rs".to_owned()
            ),
        ]
    );
}

#[test]
fn the_package_library_is_scanned() {
    let dir = TempDir::new("lib");
    dir.write("Cargo.toml", "[package]\nname = \"svc\"\n");
    dir.write("src/lib.rs", "pub mod net;\n");
    dir.write(
        "src/net.rs",
        "pub fn dial() -> bool { std::net::TcpStream::connect(\"a\").is_ok() }\n",
    );
    let main = dir.write("src/main.rs", &format!("use svc::net::dial;\n{MAIN}"));
    let scan = scan_crate(Some(&main), &CrateEnv::bin(&dir.0, "svc"));
    assert_eq!(
        heads(&scan),
        ["src/net.rs:1:25: [raw_socket] `std::net::TcpStream::connect`"]
    );
    assert!(scan.tracked.iter().any(|p| p.ends_with("src/lib.rs")));
}

#[test]
fn every_other_target_is_scanned() {
    let dir = TempDir::new("targets");
    dir.write(
        "Cargo.toml",
        "[package]\nname = \"svc\"\n\n[lib]\npath = \"core/lib.rs\"\n\n[[bin]]\nname = \"side\"\npath = \"side/main.rs\"\n",
    );
    dir.write("core/lib.rs", "pub fn f() { reqwest::get(\"u\"); }\n");
    dir.write(
        "side/main.rs",
        "fn main() { std::net::UdpSocket::bind(\"a\"); }\n",
    );
    dir.write(
        "src/bin/helper.rs",
        "fn main() { tokio::net::TcpListener::bind(\"a\"); }\n",
    );
    dir.write(
        "examples/probe.rs",
        "fn main() { socket2::Socket::new(); }\n",
    );
    dir.write("tests/it.rs", "fn f() { reqwest::get(\"u\"); }\n");
    let main = dir.write("src/main.rs", MAIN);
    let scan = scan_crate(Some(&main), &CrateEnv::bin(&dir.0, "svc"));
    assert_eq!(
        heads(&scan),
        [
            "core/lib.rs:1:14: [http_client] `reqwest::get`",
            "examples/probe.rs:1:13: [raw_socket] `socket2::Socket::new`",
            "side/main.rs:1:13: [raw_socket] `std::net::UdpSocket::bind`",
            "src/bin/helper.rs:1:13: [raw_socket] `tokio::net::TcpListener::bind`",
        ]
    );
}

#[test]
fn missing_targets_fail_closed() {
    let dir = TempDir::new("missing-target");
    dir.write(
        "Cargo.toml",
        "[package]\nname = \"svc\"\n\n[lib]\npath = \"gone/lib.rs\"\n",
    );
    let main = dir.write("src/main.rs", MAIN);
    let scan = scan_crate(Some(&main), &CrateEnv::bin(&dir.0, "svc"));
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert!(
        scan.errors[0].starts_with("ligand lint could not read the library target `svc`"),
        "{:?}",
        scan.errors
    );
}

#[test]
fn services_are_left_to_their_own_main_but_the_built_one_is_scanned() {
    let dir = TempDir::new("services");
    dir.write("Cargo.toml", "[package]\nname = \"svc\"\n");
    let a = dir.write(
        "src/bin/a.rs",
        &format!("fn dial() {{ std::net::TcpStream::connect(\"a\"); }}\n{MAIN}"),
    );
    dir.write(
        "src/bin/b.rs",
        &format!("fn dial() {{ reqwest::get(\"u\"); }}\n{MAIN}"),
    );
    // A `#[ligand::main]` under `cfg` may never expand: that target is scanned by the others.
    dir.write(
        "src/bin/c.rs",
        &format!("fn dial() {{ redis::Client::open(\"r\"); }}\n#[cfg(any())]\n{MAIN}"),
    );
    let scan = scan_crate(Some(&a), &CrateEnv::bin(&dir.0, "a"));
    assert_eq!(
        heads(&scan),
        [
            "src/bin/a.rs:1:13: [raw_socket] `std::net::TcpStream::connect`",
            "src/bin/c.rs:1:13: [backend_client] `redis::Client::open`",
        ]
    );
    // b is tracked all the same: removing its attribute must re-run a's scan.
    assert!(scan.tracked.iter().any(|p| p.ends_with("src/bin/b.rs")));
}

#[test]
fn the_scan_starts_at_the_root_when_main_is_included() {
    let dir = TempDir::new("include-main");
    dir.write("Cargo.toml", "[package]\nname = \"svc\"\n");
    dir.write(
        "src/main.rs",
        "fn dial() { std::net::TcpStream::connect(\"a\"); }\ninclude!(\"entry.rs\");\n",
    );
    let entry = dir.write("src/entry.rs", MAIN);
    let scan = scan_crate(Some(&entry), &CrateEnv::bin(&dir.0, "svc"));
    assert_eq!(
        heads(&scan),
        ["src/main.rs:1:13: [raw_socket] `std::net::TcpStream::connect`"]
    );
}

#[test]
fn framework_names_are_not_exempt() {
    for package in [
        "ligand",
        "ligand-runtime",
        "ligand-policy-anything",
        "ligand-secrets-x",
    ] {
        let dir = TempDir::new(package);
        dir.write("Cargo.toml", &format!("[package]\nname = \"{package}\"\n"));
        let main = dir.write(
            "src/main.rs",
            &format!("fn f() {{ redis::Client::open(\"r\"); }}\n{MAIN}"),
        );
        let scan = scan_crate(Some(&main), &CrateEnv::bin(&dir.0, package));
        assert_eq!(
            heads(&scan),
            ["src/main.rs:1:10: [backend_client] `redis::Client::open`"],
            "{package}"
        );
    }
}

#[test]
fn a_main_in_a_test_scans_the_package_and_the_test() {
    let dir = TempDir::new("test-target");
    dir.write("Cargo.toml", "[package]\nname = \"svc\"\n");
    dir.write("src/lib.rs", "pub fn f() { reqwest::get(\"u\"); }\n");
    let test = dir.write(
        "tests/it.rs",
        &format!("fn dial() {{ std::net::TcpStream::connect(\"a\"); }}\n{MAIN}"),
    );
    let env = CrateEnv {
        bin_name: None,
        ..CrateEnv::bin(&dir.0, "unused")
    };
    let scan = scan_crate(Some(&test), &env);
    assert_eq!(
        heads(&scan),
        [
            "src/lib.rs:1:14: [http_client] `reqwest::get`",
            "tests/it.rs:1:13: [raw_socket] `std::net::TcpStream::connect`",
        ]
    );
}

#[test]
fn doctests_are_not_the_service() {
    let dir = TempDir::new("doctest");
    dir.write("Cargo.toml", "[package]\nname = \"svc\"\n");
    let lib = dir.write("src/lib.rs", "pub fn f() { reqwest::get(\"u\"); }\n");
    let doc = CrateEnv {
        bin_name: None,
        ..CrateEnv::bin(&dir.0, "unused")
    };
    // Merged doctests are compiled from a file outside the package.
    let bundle = std::env::temp_dir().join("rustdoctest/doctest_bundle_2024.rs");
    assert!(scan_crate(Some(&bundle), &doc).errors.is_empty());
    // A standalone one from the documented file, with rustdoc's variable set.
    let standalone = CrateEnv {
        rustdoc: true,
        ..doc.clone()
    };
    assert!(scan_crate(Some(&lib), &standalone).errors.is_empty());
    // A binary is never a doctest, wherever its attribute comes from.
    let bin = CrateEnv::bin(&dir.0, "svc");
    assert_eq!(scan_crate(Some(&bundle), &bin).errors.len(), 1);
    // Nor is a library whose own file holds the attribute.
    assert_eq!(scan_crate(Some(&lib), &doc).errors.len(), 1);
}

#[test]
fn binaries_outside_the_package_are_not_its_source_but_the_library_is() {
    // trybuild's generated package: every case is a binary whose file lies elsewhere.
    let dir = TempDir::new("outside");
    dir.write(
        "pkg/Cargo.toml",
        "[package]\nname = \"svc\"\n\n[lib]\npath = \"../shared/lib.rs\"\n\n[[bin]]\nname = \"case1\"\npath = \"../cases/one.rs\"\n\n[[bin]]\nname = \"case2\"\npath = \"../cases/two.rs\"\n",
    );
    dir.write("shared/lib.rs", "pub fn f() { reqwest::get(\"u\"); }\n");
    let one = dir.write(
        "cases/one.rs",
        &format!("fn dial() {{ std::net::TcpStream::connect(\"a\"); }}\n{MAIN}"),
    );
    dir.write(
        "cases/two.rs",
        "fn main() { let _ = std::net::UdpSocket::bind(\"a\"); }\n",
    );
    let scan = scan_crate(Some(&one), &CrateEnv::bin(&dir.0.join("pkg"), "case1"));
    let mut errors: Vec<_> = scan
        .errors
        .iter()
        .map(|e| {
            e.split(" is not allowed")
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .map(|e| e.replace(&dir.0.display().to_string(), ""))
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            "/cases/one.rs:1:13: [raw_socket] `std::net::TcpStream::connect`",
            "/shared/lib.rs:1:14: [http_client] `reqwest::get`",
        ]
    );
}
