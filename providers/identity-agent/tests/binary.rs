//! The `ligand-agent` binary as a real process: help, configuration errors, and serving a
//! real client.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ligand-agent");

#[test]
fn help_documents_the_flags() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--config",
        "--socket",
        "--socket-mode",
        "--oidc-listen",
        "--state-dir",
        "--log",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn malformed_entries_name_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "trust_domain = \"example.org\"\n[socket]\npath = \"/tmp/x.sock\"\n\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = [\"unix:uid:abc\"]\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("agent.toml:7:"), "{stderr}");
    assert!(stderr.contains("entry.selectors"), "{stderr}");
    assert!(stderr.contains("abc"), "{stderr}");
}

#[tokio::test]
async fn serves_a_spiffe_client_as_a_separate_process() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("api.sock");
    let config = dir.path().join("agent.toml");
    let uid = rustix::process::geteuid().as_raw();
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"example.org\"\nstate_dir = \"{}\"\n[socket]\npath = \"{}\"\n[oidc]\nlisten = \"127.0.0.1:0\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/test\"\nselectors = [\"unix:uid:{uid}\"]\n",
            dir.path().join("state").display(),
            socket.display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for the socket to appear (bounded: 10 s for a cold start on a loaded machine).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(tokio::time::Instant::now() < deadline, "agent did not bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = spiffe::WorkloadApiClient::connect_to(format!("unix://{}", socket.display()))
        .await
        .unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/test");
    child.kill().await.unwrap();
}
