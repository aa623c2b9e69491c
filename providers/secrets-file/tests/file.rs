//! The file provider against real files in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use ligand_runtime::{ExposeSecret, ProviderError, SecretRevocation, Secrets};
use ligand_secrets_file::{FileSecrets, FileSecretsError};
use tokio::sync::mpsc;

const PASSWORD: &str = "hunter2-do-not-print";

fn write(path: &Path, content: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn json(value: &ligand_runtime::SecretValue) -> serde_json::Value {
    serde_json::from_slice(value.value.expose_secret()).unwrap()
}

/// The typed error behind a provider error, and a check that no rendering of the whole error
/// chain shows the secret.
fn file_error(error: &ProviderError) -> &FileSecretsError {
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains(PASSWORD), "secret in error: {shown}");
    match error {
        ProviderError::Backend { source, .. } => source
            .downcast_ref::<FileSecretsError>()
            .expect("a FileSecretsError"),
        other => panic!("unexpected error {other:?}"),
    }
}

async fn revocation(rx: &mut mpsc::Receiver<SecretRevocation>) -> SecretRevocation {
    // inotify delivers within milliseconds; the bound only keeps a broken watcher from
    // hanging the suite.
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a revocation within 10 s")
        .expect("the channel is open")
}

#[tokio::test]
async fn directory_layout_is_a_json_object_of_keys() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("secret/data/accounts/db");
    write(&dir.join("username"), b"app\n", 0o400);
    write(&dir.join("password"), PASSWORD.as_bytes(), 0o600);
    write(&dir.join(".hidden"), b"ignored", 0o644);
    std::fs::create_dir_all(dir.join("nested")).unwrap();

    let provider = FileSecrets::new(root.path()).unwrap();
    let value = provider.get("secret/data/accounts/db").await.unwrap();
    assert_eq!(
        json(&value),
        serde_json::json!({"username": "app\n", "password": PASSWORD})
    );
    assert_eq!(value.ttl, None);
    assert!(value.lease_id.is_some());
    assert!(!format!("{value:?}").contains(PASSWORD));

    let trimming = FileSecrets::builder(root.path())
        .trim_trailing_newline(true)
        .ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let value = trimming.get("secret/data/accounts/db").await.unwrap();
    assert_eq!(json(&value)["username"], "app");
    assert_eq!(value.ttl, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn json_document_is_returned_as_is() {
    let root = tempfile::tempdir().unwrap();
    let document = format!(r#"{{ "username": "app", "password": "{PASSWORD}", "port": 5432 }}"#);
    write(&root.path().join("app/db.json"), document.as_bytes(), 0o400);
    let provider = FileSecrets::new(root.path()).unwrap();
    let value = provider.get("app/db").await.unwrap();
    assert_eq!(value.value.expose_secret(), document.as_bytes());

    write(
        &root.path().join("app/list.json"),
        format!(r#"["{PASSWORD}"]"#).as_bytes(),
        0o400,
    );
    write(
        &root.path().join("app/text.json"),
        format!(r#""{PASSWORD}""#).as_bytes(),
        0o400,
    );
    for name in ["app/list", "app/text"] {
        let error = provider.get(name).await.unwrap_err();
        assert!(
            matches!(file_error(&error), FileSecretsError::NotObject { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn kubernetes_data_symlink_layout_is_followed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    write(&dir.join("..2026_01_01_00_00_00.1/username"), b"app", 0o400);
    write(
        &dir.join("..2026_01_01_00_00_00.1/password"),
        PASSWORD.as_bytes(),
        0o400,
    );
    symlink("..2026_01_01_00_00_00.1", dir.join("..data")).unwrap();
    symlink("..data/username", dir.join("username")).unwrap();
    symlink("..data/password", dir.join("password")).unwrap();

    let provider = FileSecrets::new(root.path()).unwrap();
    let value = provider.get("db").await.unwrap();
    assert_eq!(
        json(&value),
        serde_json::json!({"username": "app", "password": PASSWORD})
    );
}

#[tokio::test]
async fn group_or_world_readable_files_are_refused() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("db/username"), b"app", 0o400);
    write(&root.path().join("db/password"), PASSWORD.as_bytes(), 0o644);
    write(&root.path().join("doc.json"), br#"{"a":"b"}"#, 0o640);

    let provider = FileSecrets::new(root.path()).unwrap();
    let error = provider.get("db").await.unwrap_err();
    match file_error(&error) {
        FileSecretsError::WidePermissions { file, mode, .. } => {
            assert_eq!(file, "password");
            assert_eq!(*mode, 0o644);
        }
        other => panic!("{other:?}"),
    }
    let error = provider.get("doc").await.unwrap_err();
    assert!(matches!(
        file_error(&error),
        FileSecretsError::WidePermissions { mode: 0o640, .. }
    ));

    let dev = FileSecrets::builder(root.path())
        .danger_allow_wide_permissions()
        .build()
        .unwrap();
    assert!(dev.get("db").await.is_ok());
    assert!(dev.get("doc").await.is_ok());
}

#[tokio::test]
async fn names_cannot_leave_the_root() {
    let outer = tempfile::tempdir().unwrap();
    write(
        &outer.path().join("outside/password"),
        PASSWORD.as_bytes(),
        0o400,
    );
    write(&outer.path().join("outside.json"), br#"{"a":"b"}"#, 0o400);
    let root = outer.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    symlink(outer.path().join("outside"), root.join("escape")).unwrap();
    symlink(outer.path().join("outside.json"), root.join("doc.json")).unwrap();
    std::fs::create_dir_all(root.join("db")).unwrap();
    symlink(
        outer.path().join("outside/password"),
        root.join("db/password"),
    )
    .unwrap();

    let provider = FileSecrets::new(&root).unwrap();
    for name in [
        "../outside",
        "/etc/passwd",
        "a/../../outside",
        "db/..data",
        "",
    ] {
        let error = provider.get(name).await.unwrap_err();
        assert!(
            matches!(file_error(&error), FileSecretsError::InvalidName { .. }),
            "{name:?}: {error:?}"
        );
    }
    for name in ["escape", "doc", "db"] {
        let error = provider.get(name).await.unwrap_err();
        assert!(
            matches!(file_error(&error), FileSecretsError::OutsideRoot { .. }),
            "{name:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn bad_content_is_a_typed_error_naming_the_key() {
    let root = tempfile::tempdir().unwrap();
    let mut binary = PASSWORD.as_bytes().to_vec();
    binary.push(0xff);
    write(&root.path().join("db/certificate"), &binary, 0o400);
    write(&root.path().join("both/key"), b"v", 0o400);
    write(&root.path().join("both.json"), b"{}", 0o400);
    write(&root.path().join("big/key"), &[b'x'; 64], 0o400);

    let provider = FileSecrets::builder(root.path())
        .max_file_bytes(32)
        .build()
        .unwrap();
    let error = provider.get("db").await.unwrap_err();
    assert!(
        matches!(file_error(&error), FileSecretsError::NotUtf8 { key, .. } if key == "certificate"),
        "{error}"
    );
    assert!(error.to_string().contains("certificate"));
    let error = provider.get("both").await.unwrap_err();
    assert!(matches!(
        file_error(&error),
        FileSecretsError::Ambiguous { .. }
    ));
    let error = provider.get("missing/secret").await.unwrap_err();
    assert!(matches!(
        file_error(&error),
        FileSecretsError::NotFound { .. }
    ));
    let error = provider.get("big").await.unwrap_err();
    assert!(matches!(
        file_error(&error),
        FileSecretsError::TooLarge { limit: 32, .. }
    ));
}

#[tokio::test]
async fn a_missing_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let error = FileSecrets::new(root.path().join("absent")).unwrap_err();
    assert!(matches!(error, FileSecretsError::Root { .. }));
    write(&root.path().join("file"), b"", 0o400);
    let error = FileSecrets::new(root.path().join("file")).unwrap_err();
    assert!(matches!(error, FileSecretsError::Root { source: None, .. }));
}

#[tokio::test]
async fn a_changed_file_revokes_its_lease() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("db/password"), b"one", 0o600);
    write(&root.path().join("other.json"), b"{}", 0o600);
    let provider = FileSecrets::builder(root.path())
        .debounce(Duration::from_millis(20))
        .build()
        .unwrap();
    let mut events = provider.watch_revocations().await.unwrap();
    let first = provider.get("db").await.unwrap().lease_id.unwrap();
    let other = provider.get("other").await.unwrap().lease_id.unwrap();
    assert_eq!(
        provider.get("db").await.unwrap().lease_id.unwrap(),
        first,
        "same content, same lease"
    );

    write(&root.path().join("db/password"), b"two", 0o600);
    assert_eq!(revocation(&mut events).await.lease_id, first);
    let second = provider.get("db").await.unwrap();
    assert_ne!(second.lease_id.as_deref(), Some(first.as_str()));
    assert_eq!(json(&second)["password"], "two");

    // Deleting a document revokes it too; unchanged secrets are left alone.
    std::fs::remove_file(root.path().join("other.json")).unwrap();
    assert_eq!(revocation(&mut events).await.lease_id, other);
    provider.close().await.unwrap();
    assert!(matches!(
        provider.get("db").await,
        Err(ProviderError::Closed)
    ));
    assert!(events.recv().await.is_none(), "close ends the stream");
}

#[tokio::test]
async fn a_kubernetes_symlink_swap_revokes_the_lease() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    write(&dir.join("..v1/password"), b"one", 0o400);
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/password", dir.join("password")).unwrap();
    let provider = FileSecrets::builder(root.path())
        .debounce(Duration::from_millis(20))
        .build()
        .unwrap();
    let mut events = provider.watch_revocations().await.unwrap();
    let lease = provider.get("db").await.unwrap().lease_id.unwrap();

    // The kubelet's atomic writer: new snapshot, new link, rename over `..data`.
    write(&dir.join("..v2/password"), b"two", 0o400);
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();

    assert_eq!(revocation(&mut events).await.lease_id, lease);
    assert_eq!(json(&provider.get("db").await.unwrap())["password"], "two");
}
