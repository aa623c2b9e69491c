//! This example depends on `ligand` without the provider features: a `ligand.toml` naming a
//! provider whose feature is off is refused, naming the setting and the feature. Cargo unifies
//! features across the workspace, so under `cargo test --workspace` another member may have
//! turned a feature on: such a setting must then get past the feature check (it may still be
//! refused for a setting of that provider's own, which this minimal file leaves out).
#![allow(clippy::unwrap_used, reason = "tests")]

use ligand::config::{ConfigError, Environment, PROVIDER_FEATURES, load_from};

#[test]
fn a_provider_whose_feature_is_off_is_refused_naming_the_feature() {
    for (toml, setting, feature) in [
        (
            "[rate_limit]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n",
            "rate_limit.kind",
            "`redis`",
        ),
        (
            "[secrets]\nkind = \"openbao\"\naddress = \"https://bao:8200\"\n",
            "secrets.kind",
            "`openbao`",
        ),
        (
            "[bundle_fetcher]\nurl = \"https://b:8443\"\nserver_id = \"spiffe://ligand.local/b\"\n",
            "bundle_fetcher",
            "`bundle-fetch`",
        ),
        (
            "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
            "registry.kind",
            "`etcd`",
        ),
        (
            "[wimse]\njwks = \"jwks.json\"\nreplay = \"redis\"\nreplay_url = \"redis://h:1\"\n",
            "wimse.replay",
            "`redis`",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policy")).unwrap();
        std::fs::write(
            dir.path().join("policy/authz.rego"),
            "package ligand.authz\n\ndefault allow := false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("jwks.json"),
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ligand.toml"),
            format!("[admin]\nenabled = false\n\n{toml}"),
        )
        .unwrap();
        let env = Environment {
            dev_dir: Some(dir.path().join("dev")),
            ..Environment::default()
        };
        let loaded = load_from(&dir.path().join("ligand.toml"), true, &env);
        if PROVIDER_FEATURES.contains(&feature.trim_matches('`')) {
            if let Err(error) = loaded {
                let shown = error.to_string();
                assert!(!shown.contains("feature"), "{toml}: {shown}");
            }
            continue;
        }
        match loaded {
            Err(error @ ConfigError::Invalid { setting: s, .. }) => {
                let shown = error.to_string();
                assert_eq!(s, setting, "{shown}");
                assert!(shown.contains(feature), "{shown}");
            }
            Err(other) => panic!("{toml}: {other}"),
            Ok(_) => panic!("{toml}: accepted"),
        }
    }
}
