//! `hello-service` as a process: `--help`, `--validate` on good and bad settings, unknown
//! arguments, and the `curl` line it logs once listening, run as logged.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hello-service");
const POLICY: &str = include_str!("../policy/authz.rego");

/// The service in `dir`, with the development folder in `dir` and no `LIGAND_*` of the caller.
fn service(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env("LIGAND_DEV_DIR", dir.join("dev"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LIGAND_") || name == "SPIFFE_ENDPOINT_SOCKET" {
            command.env_remove(name);
        }
    }
    command
}

fn folder(toml: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/authz.rego"), POLICY).unwrap();
    if let Some(toml) = toml {
        std::fs::write(dir.path().join("ligand.toml"), toml).unwrap();
    }
    dir
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_prints_usage_and_exits_without_serving() {
    let dir = folder(None);
    let output = service(dir.path()).arg("--help").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    for expected in [
        "Usage: hello-service",
        "--validate",
        "ligand.toml",
        "LIGAND_CONFIG",
        "LIGAND_DEV_DIR",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(!dir.path().join("dev").exists(), "--help touches nothing");
}

#[test]
fn validate_accepts_good_settings_and_no_file() {
    for toml in [
        None,
        Some("listen = \"127.0.0.1:8443\"\n[rate_limit]\nrate = 5\nburst = 10\n"),
    ] {
        let dir = folder(toml);
        let output = service(dir.path()).arg("--validate").output().unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{toml:?}: {stdout}{stderr}");
        assert!(
            stdout.contains("ok: the configuration is valid"),
            "{stdout}"
        );
        assert!(
            !stdout.contains("listening"),
            "validate binds nothing: {stdout}"
        );
    }
}

#[test]
fn validate_names_the_setting_at_fault_with_display_text() {
    let cases = [
        (
            Some("[connections]\nmax = 0\n"),
            None,
            "connections.max: must be at least 1",
        ),
        (
            Some("[admin]\nlisten = \"localhost\"\n"),
            None,
            "admin.listen",
        ),
        (Some("lisen = \"127.0.0.1:1\"\n"), None, "ligand.toml"),
        (None, Some("package ligand.authz\n\nallow if {"), "policy"),
    ];
    for (toml, rego, expected) in cases {
        let dir = folder(toml);
        if let Some(rego) = rego {
            std::fs::write(dir.path().join("policy/authz.rego"), rego).unwrap();
        }
        let output = service(dir.path()).arg("--validate").output().unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{expected}: {stdout}{stderr}"
        );
        assert!(
            stderr.contains("error: invalid configuration: "),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(
            !stderr.contains("Invalid {") && !stderr.contains("Config("),
            "Display, not Debug: {stderr}"
        );
    }
}

#[test]
fn unknown_arguments_exit_2_with_usage() {
    let dir = folder(None);
    let output = service(dir.path()).arg("--port=1").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("unknown argument \"--port=1\""), "{stderr}");
    assert!(stderr.contains("Usage: hello-service"), "{stderr}");
}

/// Ends the service started by the test when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_logged_curl_line_calls_the_service() {
    if !Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no `curl` on PATH to run the logged command with");
        return;
    }
    let dir = folder(Some("listen = \"127.0.0.1:0\"\n[admin]\nenabled = false\n"));
    let mut running = Running(
        service(dir.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = running.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let curl = loop {
        let line = lines
            .next()
            .expect("the service exited before logging a curl line")
            .unwrap();
        if let Some(at) = line.find("curl --cacert") {
            break line[at..].to_owned();
        }
    };
    assert!(curl.ends_with('/'), "{curl}");
    // Keep reading the log so the service never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));

    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("{curl}hello/world --silent --show-error"))
        .output()
        .unwrap();
    let (body, stderr) = text(&output);
    assert!(output.status.success(), "{curl}: {stderr}");
    let greeting: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(greeting["greeting"], "hello, world", "{body}");
    assert_eq!(
        greeting["caller"], "spiffe://ligand.local/user/dev",
        "{body}"
    );
}
