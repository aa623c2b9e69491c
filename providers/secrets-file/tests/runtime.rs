//! The file provider behind the framework's secrets cache.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use ligand_runtime::testkit::{AllowList, FakeIdentity, TestCa};
use ligand_runtime::{Config, ExposeSecret, SecretError, Server, init_trust_boundary};
use ligand_secrets_file::FileSecrets;

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn server(root: &Path) -> Server {
    let ca = TestCa::new("example.org");
    let identity = FakeIdentity::new(ca.context(ca.svid("spiffe://example.org/service/accounts")));
    let secrets = FileSecrets::builder(root)
        .debounce(Duration::from_millis(20))
        .build()
        .unwrap();
    init_trust_boundary(
        Config::builder()
            .identity(identity)
            .policy(AllowList::new())
            .secrets(secrets)
            .build(),
    )
    .await
    .unwrap()
}

/// Reads until `done` holds. Filesystem notification is real and asynchronous, so this polls
/// with a short pause, bounded at 10 s so a broken watch fails instead of hanging.
async fn eventually<F>(server: &Server, name: &str, done: F)
where
    F: Fn(&Result<Vec<u8>, SecretError>) -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = server
            .secret_bytes(name)
            .await
            .map(|v| v.expose_secret().to_vec());
        if done(&read) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last read: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_cache_serves_the_new_value_after_a_change() {
    let root = tempfile::tempdir().unwrap();
    write(
        &root.path().join("secret/data/accounts/db/username"),
        b"app",
    );
    write(
        &root.path().join("secret/data/accounts/db/password"),
        b"one",
    );
    let server = server(root.path()).await;
    let name = "secret/data/accounts/db";

    let first = server.secret_bytes(name).await.unwrap();
    assert_eq!(
        first.expose_secret(),
        br#"{"password":"one","username":"app"}"#
    );
    write(
        &root.path().join("secret/data/accounts/db/password"),
        b"two",
    );
    eventually(&server, name, |read| {
        read.as_deref().ok() == Some(br#"{"password":"two","username":"app"}"#.as_slice())
    })
    .await;

    // Gone from disk: revoked, evicted, and the re-read fails closed.
    std::fs::remove_dir_all(root.path().join("secret/data/accounts/db")).unwrap();
    eventually(&server, name, |read| {
        matches!(read, Err(SecretError::Unavailable { .. }))
    })
    .await;
    server.close().await;
}

#[tokio::test]
async fn typed_secrets_decode_from_the_directory_layout() {
    #[derive(serde::Deserialize)]
    struct Db {
        username: String,
        password: ligand_runtime::SecretString,
    }
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("db/username"), b"app");
    write(&root.path().join("db/password"), b"hunter2");
    let server = server(root.path()).await;
    let bytes = server.secret_bytes("db").await.unwrap();
    let db: Db = ligand_runtime::decode_secret("db", bytes.expose_secret()).unwrap();
    assert_eq!(db.username, "app");
    assert_eq!(db.password.expose_secret(), "hunter2");

    let error = server.secret_bytes("../db").await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { .. }), "{error}");
    server.close().await;
}
