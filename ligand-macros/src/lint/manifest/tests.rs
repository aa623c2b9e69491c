//! The manifest: banned dependencies, renames, workspace inheritance, untrusted text.

use std::path::PathBuf;

use proptest::prelude::*;

use super::super::rules::Rule;
use super::analyze;

fn banned(text: &str) -> Vec<(Rule, String, String, usize)> {
    let manifest = analyze(text, |key| match key {
        "web" => Some((Some("reqwest".to_owned()), Vec::new(), PathBuf::from("ws"))),
        "hyper" => Some((None, vec!["client".to_owned()], PathBuf::from("ws"))),
        _ => None,
    })
    .expect("parses");
    manifest
        .banned
        .into_iter()
        .map(|b| (b.rule, b.name, b.package, b.line))
        .collect()
}

#[test]
fn manifest_dependencies() {
    let text = r#"
[package]
name = "svc"

[dependencies]
ligand = "0.1"
tokio = { version = "1", features = ["net"] }
reqwest = "0.12"
http = { package = "reqwest", version = "0.12" }
hyper-util = { version = "0.1", features = ["server", "client-legacy"] }
spiffe = { version = "0.19", default-features = false }

[target.'cfg(unix)'.dependencies]
redis = "0.27"

[dev-dependencies]
ureq = "2"

[build-dependencies]
curl = "0.4"
"#;
    assert_eq!(
        banned(text),
        [
            (Rule::HttpClient, "reqwest".into(), "reqwest".into(), 8),
            (Rule::HttpClient, "http".into(), "reqwest".into(), 9),
            (
                Rule::HttpClient,
                "hyper-util".into(),
                "hyper-util".into(),
                10
            ),
            (Rule::BackendClient, "redis".into(), "redis".into(), 14),
        ]
    );
}

#[test]
fn socket_crates_as_dependencies() {
    let text = "[dependencies]\nasync-net = \"2\"\nnet2 = \"0.2\"\nnix = { version = \"0.29\", features = [\"socket\"] }\nrustix = { version = \"1\", features = [\"net\"] }\nlibc = \"0.2\"\nnix-fs = { package = \"nix\", version = \"0.29\", features = [\"fs\"] }\n";
    let names: Vec<_> = banned(text)
        .into_iter()
        .map(|(rule, name, ..)| (rule, name))
        .collect();
    assert_eq!(
        names,
        [
            (Rule::RawSocket, "async-net".to_owned()),
            (Rule::RawSocket, "net2".to_owned()),
            (Rule::RawSocket, "nix".to_owned()),
            (Rule::RawSocket, "rustix".to_owned()),
        ]
    );
}

#[test]
fn manifest_workspace_inheritance_and_renames() {
    let text = "[dependencies]\nweb = { workspace = true }\nhyper = { workspace = true }\nspiffe = { version = \"0.19\", features = [\"x509-source\"] }\n";
    assert_eq!(
        banned(text),
        [
            (Rule::HttpClient, "web".into(), "reqwest".into(), 2),
            (Rule::HttpClient, "hyper".into(), "hyper".into(), 3),
            (Rule::BackendClient, "spiffe".into(), "spiffe".into(), 4),
        ]
    );
    let manifest = analyze(text, |_| {
        Some((Some("reqwest".to_owned()), Vec::new(), PathBuf::from("ws")))
    })
    .expect("parses");
    assert_eq!(
        manifest.renames.get("web").map(String::as_str),
        Some("reqwest")
    );
}

proptest! {
    #[test]
    fn manifest_analysis_never_panics(text in ".{0,400}") {
        let _ = analyze(&text, |_| None);
    }

    #[test]
    fn manifest_analysis_survives_corrupted_manifests(
        cut in 0usize..300,
        byte in any::<u8>(),
    ) {
        let mut text = "[dependencies]\nreqwest = { version = \"1\", features = [\"json\"] }\n[target.'cfg(unix)'.dependencies]\nredis = \"1\"\n".as_bytes().to_vec();
        let at = cut % text.len();
        text[at] = byte;
        let text = String::from_utf8_lossy(&text);
        let _ = analyze(&text, |_| None);
    }
}
