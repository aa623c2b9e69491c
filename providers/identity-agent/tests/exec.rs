//! A caller that executes another program after it was attested gets no SVID: the agent checks
//! the attested process again before sending one. Real processes: this test binary connects
//! as the registered executable, then replaces itself (same pid, same socket) with a copy at
//! another path, which sends the request.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::raw::RawClient;
use common::{Fixture, entry, uid};
use ligand_identity_agent::Selector;

const TEST: &str = "a_caller_that_executes_another_program_gets_no_svid";
const ROLE: &str = "LIGAND_AGENT_EXEC_TEST_ROLE";
const SOCKET: &str = "LIGAND_AGENT_EXEC_TEST_SOCKET";
const OTHER: &str = "LIGAND_AGENT_EXEC_TEST_OTHER";

fn harness_args() -> [&'static str; 4] {
    ["--exact", TEST, "--nocapture", "--test-threads=1"]
}

#[tokio::test]
async fn a_caller_that_executes_another_program_gets_no_svid() {
    match std::env::var(ROLE).as_deref() {
        Ok("connect") => connect_then_exec(),
        Ok("request") => request_over_stdin().await,
        _ => parent().await,
    }
}

async fn parent() {
    let exe = std::env::current_exe().unwrap();
    let fixture = Fixture::start(vec![
        entry(vec![Selector::Uid(uid()), Selector::Path(exe.clone())])
            .x509_ttl(Duration::from_secs(3600)),
    ])
    .await;
    // The same program at another path: a different executable to the agent.
    let other = fixture.dir.path().join("other-program");
    if std::fs::hard_link(&exe, &other).is_err() {
        std::fs::copy(&exe, &other).unwrap();
    }
    let child = tokio::process::Command::new(&exe)
        .args(harness_args())
        .env(ROLE, "connect")
        .env(SOCKET, fixture.agent.socket_path())
        .env(OTHER, &other)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("child finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcome = stdout
        .lines()
        .find_map(|l| l.split_once("OUTCOME: ").map(|(_, outcome)| outcome))
        .unwrap_or_else(|| panic!("no outcome from the child: {stdout}"));
    assert!(
        outcome.starts_with("refused") && outcome.contains("grpc-status \"7\""),
        "the program executed after attestation was served: {outcome}"
    );
}

/// Runs as the registered executable: connects, waits until the agent has attested the
/// connection (its HTTP/2 server speaks only after attestation), then executes the other
/// program with the connection as its standard input.
fn connect_then_exec() {
    let socket = std::env::var(SOCKET).unwrap();
    let other = std::env::var(OTHER).unwrap();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    // An empty SETTINGS frame.
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    // The server's SETTINGS frame: read it whole, so that the next program starts on a frame
    // boundary.
    let mut head = [0; 9];
    stream.read_exact(&mut head).unwrap();
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).unwrap();
    let fd = stream.as_fd().try_clone_to_owned().unwrap();
    let error = Command::new(other)
        .args(harness_args())
        .env(ROLE, "request")
        .stdin(Stdio::from(fd))
        .exec();
    panic!("exec failed: {error}");
}

/// Runs as the other program, on the connection the registered one opened and got attested.
async fn request_over_stdin() {
    let fd = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    let mut client = RawClient::resume(stream);
    match client.fetch_x509_svid(1, Some("localhost")).await {
        Ok(response) => println!("OUTCOME: served {}", response.svids[0].spiffe_id),
        Err(error) => println!("OUTCOME: refused {error}"),
    }
}
