#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use proptest::prelude::*;

use super::*;

const GOOD: &str = r#"
trust_domain = "example.org"
state_dir = "/var/lib/agent"

[socket]
path = "/run/agent/api.sock"
mode = 0o770

[oidc]
listen = "127.0.0.1:0"
algorithm = "RS256"
key_rotation = "1h"

[[entry]]
spiffe_id = "spiffe://example.org/service/a"
selectors = ["unix:uid:1000", "unix:path:/usr/bin/a"]
x509_ttl = "5s"

[[entry]]
spiffe_id = "spiffe://example.org/service/b"
selectors = ["unix:gid:20"]
"#;

fn invalid(text: &str) -> (usize, String, String) {
    match AgentConfig::parse(text, "agent.toml") {
        Err(ConfigError::Invalid {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected an invalid-config error, got {other:?}"),
    }
}

#[test]
fn parses_a_full_file() {
    let config = AgentConfig::parse(GOOD, "agent.toml").unwrap();
    assert_eq!(config.trust_domain.to_string(), "example.org");
    assert_eq!(config.socket.mode, 0o770);
    assert_eq!(config.oidc.algorithm, JwtAlgorithm::Rs256);
    assert_eq!(config.oidc.key_rotation, Duration::from_secs(3600));
    assert_eq!(config.entries.len(), 2);
    assert_eq!(config.entries[0].x509_ttl, Duration::from_secs(5));
    assert_eq!(config.entries[0].jwt_ttl, DEFAULT_JWT_TTL);
    assert_eq!(config.entries[1].x509_ttl, DEFAULT_X509_TTL);
    assert_eq!(
        config.entries[0].selectors,
        vec![Selector::Uid(1000), Selector::Path("/usr/bin/a".into())]
    );
}

#[test]
fn defaults_socket_mode_to_owner_only() {
    let config = AgentConfig::parse(
        "trust_domain = \"example.org\"\n[socket]\npath = \"/tmp/a.sock\"\n",
        "agent.toml",
    )
    .unwrap();
    assert_eq!(config.socket.mode, 0o700);
    assert!(config.state_dir.is_none());
}

#[test]
fn bad_selector_names_line_and_field() {
    let text = GOOD.replace("unix:gid:20", "unix:gid:staff");
    let (line, field, message) = invalid(&text);
    assert_eq!(line, 21);
    assert_eq!(field, "entry.selectors");
    assert!(message.contains("staff"), "{message}");
}

#[test]
fn missing_field_names_it() {
    let text = GOOD.replace("spiffe_id = \"spiffe://example.org/service/b\"\n", "");
    let (_, field, message) = invalid(&text);
    assert_eq!(field, "entry.spiffe_id");
    assert!(message.contains("missing field"), "{message}");
}

#[test]
fn unknown_field_names_line_and_field() {
    let text = GOOD.replace("x509_ttl = \"5s\"", "x509_tll = \"5s\"");
    let (line, field, _) = invalid(&text);
    assert_eq!(line, 17);
    assert_eq!(field, "entry.x509_tll");
}

#[test]
fn wrong_type_names_line_and_field() {
    let text = GOOD.replace(
        "selectors = [\"unix:gid:20\"]",
        "selectors = \"unix:gid:20\"",
    );
    let (line, field, _) = invalid(&text);
    assert_eq!(line, 21);
    assert_eq!(field, "entry.selectors");
}

#[test]
fn bad_ttl_and_foreign_domain_are_refused() {
    let (line, field, _) = invalid(&GOOD.replace("\"5s\"", "\"soon\""));
    assert_eq!((line, field.as_str()), (17, "entry.x509_ttl"));
    let (_, field, message) = invalid(&GOOD.replace("\"5s\"", "\"10ms\""));
    assert_eq!(field, "entry.x509_ttl");
    assert!(message.contains("minimum"), "{message}");
    let (line, field, _) = invalid(&GOOD.replace("example.org/service/a", "other.org/service/a"));
    assert_eq!((line, field.as_str()), (15, "entry.spiffe_id"));
}

#[test]
fn root_path_spiffe_id_is_refused() {
    // The X.509-SVID specification gives a workload's SVID a non-root path: the bare trust
    // domain ID names the domain, not a workload.
    for root in ["spiffe://example.org", "spiffe://example.org/"] {
        let (line, field, message) = invalid(&GOOD.replace("spiffe://example.org/service/a", root));
        assert_eq!((line, field.as_str()), (15, "entry.spiffe_id"), "{root}");
        assert!(!message.is_empty());
    }
    let (_, _, message) =
        invalid(&GOOD.replace("spiffe://example.org/service/a", "spiffe://example.org"));
    assert!(message.contains("path"), "{message}");
}

#[test]
fn validate_refuses_entries_the_file_parser_would_refuse() {
    let domain = TrustDomain::new("example.org").unwrap();
    let entry =
        |id: &str| RegistrationEntry::new(SpiffeId::new(id).unwrap(), vec![Selector::Uid(1000)]);
    let config = |id: &str| AgentConfig::new(domain.clone(), "/run/a.sock").entry(entry(id));
    assert!(config("spiffe://example.org/service/a").validate().is_ok());
    assert!(matches!(
        config("spiffe://example.org").validate(),
        Err(ConfigError::Entry { .. })
    ));
    assert!(matches!(
        config("spiffe://other.org/service/a").validate(),
        Err(ConfigError::Entry { .. })
    ));
    let no_selectors = AgentConfig::new(domain.clone(), "/run/a.sock").entry(
        RegistrationEntry::new(SpiffeId::new("spiffe://example.org/a").unwrap(), Vec::new()),
    );
    assert!(matches!(
        no_selectors.validate(),
        Err(ConfigError::Entry { .. })
    ));
}

#[test]
fn empty_selectors_are_refused() {
    let (_, field, message) = invalid(&GOOD.replace("[\"unix:gid:20\"]", "[]"));
    assert_eq!(field, "entry.selectors");
    assert!(message.contains("at least one"), "{message}");
}

#[test]
fn display_names_file_line_and_field() {
    let error = AgentConfig::parse(&GOOD.replace("unix:gid:20", "gid"), "agent.toml").unwrap_err();
    assert!(error.to_string().starts_with("agent.toml:21:"), "{error}");
    assert!(error.to_string().contains("entry.selectors"), "{error}");
}

#[test]
fn an_entry_without_selectors_matches_nobody() {
    let entry =
        RegistrationEntry::new(SpiffeId::new("spiffe://example.org/x").unwrap(), Vec::new());
    assert!(!entry.matches(&[Selector::Uid(0)]));
}

proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        let _ = AgentConfig::parse(&text, "fuzz.toml");
    }

    #[test]
    fn parse_never_panics_on_near_valid_input(cut in 0usize..GOOD.len(), byte in any::<char>()) {
        let mut text: String = GOOD.chars().take(cut).collect();
        text.push(byte);
        text.extend(GOOD.chars().skip(cut + 1));
        let _ = AgentConfig::parse(&text, "fuzz.toml");
    }
}
