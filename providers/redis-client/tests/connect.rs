//! Connecting to a real `redis-server`, plain and over TLS with a private CA, and the typed
//! error of every way it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use ligand_redis_client::{ClientConfig, ConnectError, Connector, SettingsError, within};
use ligand_runtime::testkit::{RedisServer, RedisTlsFiles, unused_loopback_port};

fn tls_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ligand-redis-client-{name}-{}", std::process::id()))
}

async fn ping(connector: &Connector) -> String {
    let mut connection = connector.connect().await.unwrap();
    within(
        connector.timeout(),
        redis::cmd("PING").query_async::<String>(&mut connection),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn connects_and_pings() {
    let redis = RedisServer::start();
    let connector = Connector::new(&ClientConfig::<250>::new(redis.url())).unwrap();
    assert_eq!(ping(&connector).await, "PONG");
    let mut opened = connector.open().await.unwrap();
    let echoed: String = connector
        .setup(redis::cmd("ECHO").arg("up").query_async(&mut opened))
        .await
        .unwrap();
    assert_eq!(echoed, "up");
}

#[tokio::test]
async fn connects_over_tls_with_the_ca_file() {
    let dir = tls_dir("ok");
    let files = RedisTlsFiles::generate(&dir);
    let redis = RedisServer::start_tls(files.clone());
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let config = ClientConfig::<250>::new(redis.url()).with_ca_file(&files.ca);
    assert_eq!(ping(&Connector::new(&config).unwrap()).await, "PONG");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_tls_server_without_the_ca_file_is_unreachable() {
    let dir = tls_dir("no-ca");
    let files = RedisTlsFiles::generate(&dir);
    let redis = RedisServer::start_tls(files);
    // The system's roots do not hold the server's private CA: the handshake fails.
    let connector = Connector::new(&ClientConfig::<250>::new(redis.url())).unwrap();
    let error = connector.connect().await.unwrap_err();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("redis at {} is unreachable", redis.url())
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreadable_ca_file_is_refused_before_connecting() {
    let path = tls_dir("missing").join("ca.pem");
    let config = ClientConfig::<250>::new("rediss://127.0.0.1:1").with_ca_file(&path);
    let error = Connector::new(&config).unwrap_err();
    match &error {
        ConnectError::CaFile { path: at, source } => {
            assert_eq!(at, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!("cannot read redis CA file {}", path.display())
    );
}

#[test]
fn bad_settings_are_refused_before_connecting() {
    let error = Connector::new(&ClientConfig::<250>::new(
        "rediss://user:hunter2@127.0.0.1:1#insecure",
    ))
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Config(SettingsError::InsecureTls { .. })
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("hunter2"), "{error}");
    let error =
        Connector::new(&ClientConfig::<250>::new("http://user:hunter2@127.0.0.1:1")).unwrap_err();
    assert!(matches!(error, ConnectError::Url { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "invalid redis url http://***@127.0.0.1:1"
    );
    let zero = ClientConfig::<250>::new("redis://127.0.0.1:1").with_timeout(Duration::ZERO);
    assert!(matches!(
        Connector::new(&zero),
        Err(ConnectError::Config(SettingsError::ZeroTimeout(
            "timeout_ms"
        )))
    ));
}

#[tokio::test]
async fn nothing_listening_is_unreachable_or_a_timeout() {
    let port = unused_loopback_port();
    let config = ClientConfig::<250>::new(format!("redis://user:hunter2@127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_millis(500));
    let connector = Connector::new(&config).unwrap();
    for error in [
        connector.connect().await.unwrap_err(),
        connector.open().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                error,
                ConnectError::Unreachable { .. } | ConnectError::Timeout { .. }
            ),
            "{error:?}"
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
