//! Socket creation: permissions, stale sockets, and paths that are not ours.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{config, entry, uid};
use ligand_identity_agent::{Agent, AgentError, Selector, SocketError};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn socket_and_directory_are_owner_only_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&dir, vec![entry(vec![Selector::Uid(uid())])]))
        .await
        .unwrap();
    assert_eq!(mode(agent.socket_path()), 0o700);
    assert_eq!(mode(agent.socket_path().parent().unwrap()), 0o700);
    let path = agent.socket_path().to_owned();
    agent.shutdown().await;
    assert!(!path.exists(), "socket removed on shutdown");
}

#[tokio::test]
async fn socket_mode_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, vec![]);
    config.socket.mode = 0o770;
    let agent = Agent::start(config).await.unwrap();
    assert_eq!(mode(agent.socket_path()), 0o770);
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, vec![entry(vec![Selector::Uid(uid())])]);
    std::fs::create_dir_all(config.socket.path.parent().unwrap()).unwrap();
    // A socket file nobody listens on, as a crashed agent leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&config.socket.path).unwrap());
    assert!(config.socket.path.exists());
    let agent = Agent::start(config).await.unwrap();
    let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    assert!(client.fetch_x509_svid().await.is_ok());
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let first = Agent::start(config(&dir, vec![])).await.unwrap();
    let error = Agent::start(config(&dir, vec![])).await.unwrap_err();
    assert!(
        matches!(error, AgentError::Socket(SocketError::InUse(_))),
        "{error:?}"
    );
    assert!(first.socket_path().exists());
}

#[tokio::test]
async fn a_path_that_is_not_a_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, vec![]);
    std::fs::create_dir_all(config.socket.path.parent().unwrap()).unwrap();
    std::fs::write(&config.socket.path, b"important data").unwrap();
    let error = Agent::start(config.clone()).await.unwrap_err();
    assert!(
        matches!(error, AgentError::Socket(SocketError::NotASocket(_))),
        "{error:?}"
    );
    assert_eq!(
        std::fs::read(&config.socket.path).unwrap(),
        b"important data"
    );
}

#[tokio::test]
async fn a_socket_owned_by_someone_else_is_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        // Handing a file to another user needs root; without it there is nothing to test.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, vec![]);
    std::fs::create_dir_all(config.socket.path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&config.socket.path).unwrap());
    std::os::unix::fs::chown(&config.socket.path, Some(uid() + 1), None).unwrap();
    let error = Agent::start(config.clone()).await.unwrap_err();
    assert!(
        matches!(error, AgentError::Socket(SocketError::NotOurs { .. })),
        "{error:?}"
    );
    assert!(config.socket.path.exists(), "left in place");
}
