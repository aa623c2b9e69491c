//! The production `ligand.toml` files of `config/` load with the facade's loader (SPIRE
//! socket, etcd registry, WIMSE verification, JSON audit), and a file they name that is
//! missing is refused, naming the setting; `bank-service` serves the service its identity
//! names, and refuses an identity that is none of the four.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;

use ligand::config::{ConfigError, Environment, load_from};

const SERVICES: [&str; 4] = ["gateway", "transfers", "accounts", "fraud"];

fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `config/<service>.toml` deployed in a folder as on a host: beside it the service's policy
/// (a ConfigMap), the etcd CA, OpenBao's CA, fraud's bundle-signing public key, the gateway's identity provider keys and Transaction Token
/// signing key, the minted tokens' public keys for transfers and accounts, and for accounts
/// its secrets volume and the WIT issuers' keys.
fn deployed(service: &str, with_jwks: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ligand.toml");
    std::fs::copy(package().join(format!("config/{service}.toml")), &path).unwrap();
    copy_dir(
        &package().join(format!("policy/{service}")),
        &dir.path().join("policy"),
    );
    let domain = ligand::TrustDomain::new("bank.example").unwrap();
    let ca = ligand_identity_agent::LocalCa::ephemeral(domain).unwrap();
    std::fs::write(dir.path().join("etcd-ca.pem"), ca.root_pem()).unwrap();
    let txn = ligand::testkit::TxnIssuer::new("bank-txn-1");
    match service {
        "gateway" => {
            let idp = ligand::testkit::TxnIssuer::new("bank-idp-1");
            std::fs::write(dir.path().join("idp-jwks.json"), idp.jwks_json()).unwrap();
            std::fs::write(dir.path().join("txn-signing.pem"), txn.pem()).unwrap();
            std::fs::write(dir.path().join("redis-ca.pem"), ca.root_pem()).unwrap();
        }
        "transfers" | "accounts" => {
            std::fs::write(dir.path().join("txn-jwks.json"), txn.jwks_json()).unwrap();
        }
        "fraud" => {
            let key = rcgen::KeyPair::generate().unwrap();
            std::fs::write(
                dir.path().join("bundle-signing.pub.pem"),
                key.public_key_pem(),
            )
            .unwrap();
        }
        _ => {}
    }
    if service == "accounts" {
        std::fs::write(dir.path().join("bao-ca.pem"), ca.root_pem()).unwrap();
        if with_jwks {
            let issuer = ligand::testkit::WitIssuer::new("agent-1");
            std::fs::write(dir.path().join("wit-jwks.json"), issuer.jwks_json()).unwrap();
        }
    }
    (dir, path)
}

#[test]
fn every_production_file_loads() {
    for service in SERVICES {
        let (_dir, path) = deployed(service, true);
        if let Err(error) = load_from(&path, true, &Environment::default()) {
            panic!("config/{service}.toml: {error}");
        }
    }
}

#[test]
fn a_missing_wit_key_set_is_refused_naming_the_setting() {
    let (_dir, path) = deployed("accounts", false);
    let error = load_from(&path, true, &Environment::default()).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Invalid { setting, .. } if setting.starts_with("wimse")),
        "{error}"
    );
}

#[test]
fn bank_service_validates_a_production_file() {
    let (dir, path) = deployed("transfers", true);
    let output = Command::new(env!("CARGO_BIN_EXE_bank-service"))
        .arg("--validate")
        .current_dir(dir.path())
        .env("LIGAND_CONFIG", &path)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .env_remove("LIGAND_LISTEN")
        .env_remove("LIGAND_SPIFFE_ID")
        .env_remove("LIGAND_ADMIN_LISTEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok: the configuration is valid"),
        "{stdout}"
    );
}

/// `bank-service` on embedded defaults in `dir` (development folder inside it), as `id`.
fn service_on_defaults(dir: &Path, id: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bank-service"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LIGAND_") || name == "SPIFFE_ENDPOINT_SOCKET" {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .env("LIGAND_DEV_DIR", dir.join("dev"))
        .env("LIGAND_SPIFFE_ID", id)
        .env("LIGAND_LISTEN", "127.0.0.1:0")
        .env("LIGAND_ADMIN_LISTEN", "127.0.0.1:0")
        .env("NO_COLOR", "1");
    command
}

#[test]
fn bank_service_refuses_an_identity_that_is_no_bank_service() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&package().join("policy/fraud"), &dir.path().join("policy"));
    let output = service_on_defaults(dir.path(), "spiffe://bank.example/service/vault")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spiffe://bank.example/service/vault is not a bank service"),
        "{stderr}"
    );
}

/// Ends the service started by the test when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// fraud alone, on embedded defaults: it serves fraud's routes under fraud's policy, which
/// refuses the development caller (only transfers may ask for a score).
#[test]
fn bank_service_serves_the_service_its_identity_names() {
    use std::io::{BufRead, BufReader};
    if !Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no `curl` on PATH to call the service with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&package().join("policy/fraud"), &dir.path().join("policy"));
    let mut running = Running(
        service_on_defaults(dir.path(), bank::FRAUD)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let curl = loop {
        let line = lines
            .next()
            .expect("the service exited before logging a curl line")
            .unwrap();
        if let Some(at) = line.find("curl --cacert") {
            break line[at..].to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    // curl's default protocol over TLS, HTTP/2: the denied POST is answered after its body
    // is read, so no stream reset races the answer (curl error 92).
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{curl}score --silent --show-error -H 'content-type: application/json' \
             -d '{{\"from\":\"alice\",\"to\":\"bob\",\"amount\":1}}' -w ' %{{http_code}}'"
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{curl}: {body} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(body.ends_with(" 403"), "{body}");
    assert!(body.contains("\"error_code\":\"POLICY_DENIED\""), "{body}");
}
