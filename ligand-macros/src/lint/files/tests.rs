//! The crate scan over real files: the module tree, rebuild tracking, allowances, failures.

use std::fs;
use std::path::PathBuf;

use super::super::rules::Rule;
use super::super::{CrateEnv, files, scan_crate};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ligand-lint-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, path: &str, text: &str) -> PathBuf {
        let path = self.0.join(path);
        fs::create_dir_all(path.parent().expect("has parent")).expect("dirs");
        fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const MANIFEST: &str =
    "[package]\nname = \"svc\"\nversion = \"0.1.0\"\n\n[dependencies]\nligand = \"0.1\"\n";

#[test]
fn scans_the_module_tree() {
    let dir = TempDir::new("tree");
    dir.write("Cargo.toml", MANIFEST);
    let main = dir.write(
        "src/main.rs",
        "mod a;\nmod b;\n#[path = \"other/c_file.rs\"]\nmod c;\nmod inline { mod d; }\nmod missing;\nfn main() {}\n",
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
    let env = CrateEnv {
        package: "svc".to_owned(),
        manifest_dir: dir.0.clone(),
    };
    let scan = scan_crate(&main, &env);
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
    let env = CrateEnv {
        package: "svc".to_owned(),
        manifest_dir: dir.0.clone(),
    };
    let scan = scan_crate(&main, &env);
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert!(
        scan.errors[0].contains("could not parse src/broken.rs"),
        "{:?}",
        scan.errors
    );
}

#[test]
fn unreadable_root_fails_closed() {
    let dir = TempDir::new("no-root");
    dir.write("Cargo.toml", MANIFEST);
    let env = CrateEnv {
        package: "svc".to_owned(),
        manifest_dir: dir.0.clone(),
    };
    let scan = scan_crate(&dir.0.join("src/main.rs"), &env);
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
    let env = CrateEnv {
        package: "svc".to_owned(),
        manifest_dir: dir.0.clone(),
    };
    let scan = scan_crate(&main, &env);
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
fn framework_crates_are_not_linted() {
    let dir = TempDir::new("framework");
    dir.write("Cargo.toml", MANIFEST);
    let main = dir.write("src/main.rs", "fn f() { redis::Client::open(\"r\"); }\n");
    for package in ["ligand", "ligand-runtime", "ligand-ratelimit-redis"] {
        let env = CrateEnv {
            package: package.to_owned(),
            manifest_dir: dir.0.clone(),
        };
        assert!(scan_crate(&main, &env).errors.is_empty(), "{package}");
    }
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
    let env = CrateEnv {
        package: "svc".to_owned(),
        manifest_dir: dir.0.clone(),
    };
    let scan = scan_crate(&main, &env);
    assert_eq!(scan.errors.len(), 1);
    assert!(scan.errors[0].starts_with("ligand lint could not read the manifest"));
}
