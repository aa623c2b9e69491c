//! The `ligand` binary, run as a process: `svid fetch` against a real identity agent on a
//! temporary socket, `policy test` and `policy eval` on real Rego, `config validate`.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use ligand_identity_agent::{Agent, AgentConfig, RegistrationEntry, Selector};
use ligand_runtime::{SpiffeId, TrustDomain};

const WORKLOAD: &str = "spiffe://example.org/service/cli";

fn ligand(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ligand"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LIGAND_CONFIG")
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .env_remove("LIGAND_REDIS_URL")
        .env_remove("LIGAND_OPENBAO_ADDR")
        .env("LIGAND_DEV_DIR", cwd.join("dev"))
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, relative: &str, contents: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// The first PEM block of `path`, decoded.
fn der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).unwrap();
    pem.contents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_fetch_writes_files_that_chain_to_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let uid = rustix::process::geteuid().as_raw();
    let mut config = AgentConfig::new(
        TrustDomain::new("example.org").unwrap(),
        dir.path().join("agent").join("api.sock"),
    )
    .entry(RegistrationEntry::new(
        SpiffeId::new(WORKLOAD).unwrap(),
        vec![Selector::Uid(uid)],
    ));
    config.oidc.listen = "127.0.0.1:0".parse().unwrap();
    let agent = Agent::start(config).await.unwrap();
    let socket = agent.endpoint();
    let out = dir.path().join("svids");
    let cwd = dir.path().to_owned();

    let (fetched, jwt, missing) = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            let fetched = ligand(
                &[
                    "svid",
                    "fetch",
                    "--socket",
                    &socket,
                    "--write",
                    out.to_str().unwrap(),
                ],
                &cwd,
            );
            let jwt = ligand(
                &[
                    "svid",
                    "fetch",
                    "--socket",
                    &socket,
                    "--jwt",
                    "--audience",
                    "bank",
                ],
                &cwd,
            );
            let absent = format!("unix://{}", cwd.join("absent.sock").display());
            let missing = ligand(
                &[
                    "svid",
                    "fetch",
                    "--socket",
                    &absent,
                    "--write",
                    out.to_str().unwrap(),
                ],
                &cwd,
            );
            (fetched, jwt, missing)
        }
    })
    .await
    .unwrap();
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    assert!(stdout(&fetched).contains(WORKLOAD), "{}", stdout(&fetched));

    let mode = |name: &str| {
        std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("svid.0.key"), 0o600);
    let svid_der = der(&out.join("svid.0.pem"));
    let (_, svid) = x509_parser::parse_x509_certificate(&svid_der).unwrap();
    let bundle_der = der(&out.join("bundle.0.pem"));
    let (_, ca) = x509_parser::parse_x509_certificate(&bundle_der).unwrap();
    let san = svid.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.value.general_names.iter().any(|name| matches!(
            name,
            x509_parser::extensions::GeneralName::URI(uri) if *uri == WORKLOAD
        )),
        "{san:?}"
    );
    // The SVID chains to the bundle: issued by its CA, signed by its key.
    assert_eq!(svid.issuer(), ca.subject());
    svid.verify_signature(Some(ca.public_key())).unwrap();
    let key = std::fs::read_to_string(out.join("svid.0.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{key}");

    assert!(jwt.status.success(), "{}", stderr(&jwt));
    assert_eq!(
        stdout(&jwt).trim().split('.').count(),
        3,
        "{}",
        stdout(&jwt)
    );

    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("absent.sock"),
        "{}",
        stderr(&missing)
    );
    agent.shutdown().await;
}

const AUTHZ: &str = r#"package ligand.authz

import rego.v1

default allow := false

allow if input.peer.workload == "spiffe://bank.example/service/teller"

reason := "teller" if allow
reason := "not a teller" if not allow
"#;

const PASSING: &str = r#"package ligand.authz_test

import rego.v1

import data.ligand.authz

test_teller_allowed if authz.allow with input as {"peer": {"workload": "spiffe://bank.example/service/teller"}}

test_others_denied if not authz.allow with input as {"peer": {"workload": "spiffe://bank.example/service/other"}}
"#;

const FAILING: &str = r#"package ligand.more_test

import rego.v1

import data.ligand.authz

test_others_allowed if authz.allow with input as {"peer": {"workload": "spiffe://bank.example/service/other"}}
"#;

#[test]
fn policy_test_passes_and_fails_like_opa_test() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", AUTHZ);
    write(dir.path(), "policy/authz_test.rego", PASSING);
    let passed = ligand(&["policy", "test", "--verbose"], dir.path());
    let shown = stdout(&passed);
    assert!(passed.status.success(), "{shown}{}", stderr(&passed));
    assert!(
        shown.contains("data.ligand.authz_test.test_teller_allowed: PASS"),
        "{shown}"
    );
    assert!(
        shown.contains("data.ligand.authz_test.test_others_denied: PASS"),
        "{shown}"
    );
    assert!(shown.contains("PASS: 2/2"), "{shown}");

    write(dir.path(), "policy/more_test.rego", FAILING);
    let failed = ligand(&["policy", "test", "policy"], dir.path());
    let shown = stdout(&failed);
    assert_eq!(failed.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("data.ligand.more_test.test_others_allowed: FAIL"),
        "{shown}"
    );
    assert!(
        !shown.contains("test_teller_allowed: PASS"),
        "not verbose: {shown}"
    );
    assert!(
        shown.contains("PASS: 2/3") && shown.contains("FAIL: 1/3"),
        "{shown}"
    );

    // --run selects tests by path.
    let selected = ligand(&["policy", "test", "-v", "--run", "authz_test"], dir.path());
    let shown = stdout(&selected);
    assert!(selected.status.success(), "{shown}");
    assert!(
        shown.contains("PASS: 2/2") && !shown.contains("more_test"),
        "{shown}"
    );

    // A module that does not compile is an error, exit 1.
    write(
        dir.path(),
        "policy/broken.rego",
        "package ligand.broken\n\nallow if {\n",
    );
    let broken = ligand(&["policy", "test"], dir.path());
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("broken.rego"),
        "{}",
        stderr(&broken)
    );
}

#[test]
fn policy_eval_prints_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", AUTHZ);
    write(
        dir.path(),
        "teller.json",
        r#"{"peer": {"workload": "spiffe://bank.example/service/teller"}}"#,
    );
    write(
        dir.path(),
        "other.json",
        r#"{"peer": {"workload": "spiffe://bank.example/service/other"}}"#,
    );
    let allowed = ligand(&["policy", "eval", "--input", "teller.json"], dir.path());
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let decision: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(decision["allow"], true);
    assert_eq!(decision["reason"], "teller");

    let denied = ligand(
        &[
            "policy",
            "eval",
            "--policy",
            "policy",
            "--input",
            "other.json",
        ],
        dir.path(),
    );
    let decision: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(decision["allow"], false);
    assert_eq!(decision["reason"], "not a teller");

    // A rule that is not exactly true denies, as in the service.
    let other = ligand(
        &[
            "policy",
            "eval",
            "--input",
            "teller.json",
            "--query",
            "data.ligand.authz.reason",
        ],
        dir.path(),
    );
    let decision: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(decision["allow"], false);

    let missing = ligand(&["policy", "eval", "--input", "absent.json"], dir.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("absent.json"));
}

#[test]
fn config_validate_checks_every_provider_setting() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", AUTHZ);
    write(
        dir.path(),
        "ligand.toml",
        "[admin]\nenabled = false\n\n[rate_limit]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nrate = 5\nburst = 5\n",
    );
    // Valid: nothing connects, so the absent Redis does not matter here.
    let valid = ligand(&["config", "validate"], dir.path());
    assert!(valid.status.success(), "{}", stderr(&valid));
    assert!(stdout(&valid).starts_with("ok: "), "{}", stdout(&valid));

    write(
        dir.path(),
        "bad.toml",
        "[admin]\nenabled = false\n\n[secrets]\nkind = \"openbao\"\n",
    );
    let invalid = ligand(&["config", "validate", "bad.toml"], dir.path());
    assert_eq!(invalid.status.code(), Some(1));
    let shown = stderr(&invalid);
    assert!(
        shown.contains("secrets.address") && shown.contains("bad.toml:4"),
        "{shown}"
    );

    write(dir.path(), "typo.toml", "[rate_limit]\nbrust = 5\n");
    let typo = ligand(&["config", "validate", "typo.toml"], dir.path());
    assert_eq!(typo.status.code(), Some(1));
    assert!(stderr(&typo).contains("brust"), "{}", stderr(&typo));

    let absent = ligand(&["config", "validate", "absent.toml"], dir.path());
    assert_eq!(absent.status.code(), Some(1));
}

/// A chained audit log of `records` decisions sealed by a final checkpoint signed with the
/// service's SVID, as a service writes it.
fn chained_log(ca: &ligand_runtime::testkit::TestCa, records: u64) -> Vec<String> {
    use ligand_runtime::testkit::{audit_checkpoint_line, audit_line_hash};
    let mut lines: Vec<String> = Vec::new();
    let mut prev = "0".repeat(64);
    for seq in 0..records {
        let line = format!(
            r#"{{"seq":{seq},"prev":"{prev}","type":"decision","request_id":"r{seq}","allowed":true}}"#
        );
        prev = audit_line_hash(&line);
        lines.push(line);
    }
    let svid = ca.svid(WORKLOAD);
    lines.push(audit_checkpoint_line(
        &svid,
        records,
        &prev,
        true,
        std::time::SystemTime::now(),
    ));
    lines
}

fn write_lines(dir: &Path, relative: &str, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    write(dir, relative, &text);
}

#[test]
fn audit_verify_accepts_an_intact_log_and_names_the_first_broken_line() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let ca = ligand_runtime::testkit::TestCa::new("example.org");
    let root = base64::engine::general_purpose::STANDARD.encode(ca.root().as_ref());
    write(
        dir.path(),
        "bundle.pem",
        &format!("-----BEGIN CERTIFICATE-----\n{root}\n-----END CERTIFICATE-----\n"),
    );
    let log = chained_log(&ca, 5);
    write_lines(dir.path(), "audit.jsonl", &log);
    let verify = |file: &str, service: &str| {
        ligand(
            &[
                "audit",
                "verify",
                "--service",
                service,
                "--bundle",
                "bundle.pem",
                file,
            ],
            dir.path(),
        )
    };

    let intact = verify("audit.jsonl", WORKLOAD);
    assert!(intact.status.success(), "{}", stderr(&intact));
    assert!(
        stdout(&intact).contains("6 records, 1 signed checkpoints"),
        "{}",
        stdout(&intact)
    );

    // One record's verdict flipped: the next line's link no longer matches it.
    let mut edited = log.clone();
    edited[2] = edited[2].replace("\"allowed\":true", "\"allowed\":false");
    write_lines(dir.path(), "edited.jsonl", &edited);
    let out = verify("edited.jsonl", WORKLOAD);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 3") && stderr(&out).contains("edited"),
        "{}",
        stderr(&out)
    );

    // The sealing checkpoint cut off: the removed tail is detected.
    write_lines(dir.path(), "cut.jsonl", &log[..4]);
    let out = verify("cut.jsonl", WORKLOAD);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // … unless the log is one of a service still running.
    let running = ligand(
        &[
            "audit",
            "verify",
            "--allow-unsealed",
            "--service",
            WORKLOAD,
            "--bundle",
            "bundle.pem",
            "cut.jsonl",
        ],
        dir.path(),
    );
    assert!(running.status.success(), "{}", stderr(&running));

    // Signed by the right CA, but not by the service the log is claimed to be from.
    let out = verify("audit.jsonl", "spiffe://example.org/service/other");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 6"), "{}", stderr(&out));

    // A bundle without certificates is an argument error, not a verdict.
    write(dir.path(), "empty.pem", "");
    let out = ligand(
        &[
            "audit",
            "verify",
            "--service",
            WORKLOAD,
            "--bundle",
            "empty.pem",
            "audit.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no PEM certificate"),
        "{}",
        stderr(&out)
    );
}
