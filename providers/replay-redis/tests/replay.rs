//! The Redis replay cache against a real `redis-server`: the shared contract, one store for
//! several instances, and fail-closed behaviour when the store is gone.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, SystemTime};

use ligand_replay_redis::{ConnectError, RedisReplayCache, RedisReplayConfig, SettingsError};
use ligand_runtime::testkit::RedisServer;
use ligand_runtime::{Recorded, ReplayCache, ReplayCacheError, ReplayKey};

async fn cache(server: &RedisServer) -> RedisReplayCache {
    RedisReplayCache::connect(RedisReplayConfig::new(server.url()))
        .await
        .unwrap()
}

#[tokio::test]
async fn it_meets_the_replay_cache_contract() {
    let server = RedisServer::start();
    ligand_runtime::testkit::conformance::replay_cache(&cache(&server).await).await;
}

#[tokio::test]
async fn a_proof_seen_by_one_instance_is_a_replay_at_another() {
    let server = RedisServer::start();
    let (first, second) = (cache(&server).await, cache(&server).await);
    let now = SystemTime::now();
    let key = ReplayKey::new("spiffe://example.org/a", "jti-1");
    let exp = now + Duration::from_secs(60);
    assert_eq!(first.record(key, exp, now).await.unwrap(), Recorded::Fresh);
    assert_eq!(
        second.record(key, exp, now).await.unwrap(),
        Recorded::Replay
    );
}

#[tokio::test]
async fn a_lost_store_refuses_proofs_and_an_absent_one_fails_startup() {
    let mut server = RedisServer::start();
    let cache = RedisReplayCache::connect(
        RedisReplayConfig::new(server.url()).with_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    server.kill();
    let now = SystemTime::now();
    let result = cache
        .record(
            ReplayKey::new("spiffe://example.org/a", "jti"),
            now + Duration::from_secs(60),
            now,
        )
        .await;
    assert!(
        matches!(result, Err(ReplayCacheError::Backend(_))),
        "{result:?}"
    );
    let error = RedisReplayCache::connect(
        RedisReplayConfig::new(server.url()).with_connect_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Unreachable { .. } | ConnectError::Timeout { .. }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn proofs_are_recorded_over_tls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("ligand-replay-redis-tls-{}", std::process::id()));
    let files = ligand_runtime::testkit::RedisTlsFiles::generate(&dir);
    let server = RedisServer::start_tls(files.clone());
    let cache =
        RedisReplayCache::connect(RedisReplayConfig::new(server.url()).with_ca_file(&files.ca))
            .await
            .unwrap();
    let now = SystemTime::now();
    let key = ReplayKey::new("spiffe://example.org/a", "jti-tls");
    let exp = now + Duration::from_secs(60);
    assert_eq!(cache.record(key, exp, now).await.unwrap(), Recorded::Fresh);
    assert_eq!(cache.record(key, exp, now).await.unwrap(), Recorded::Replay);
    // Without the CA file the store's certificate does not verify: startup fails.
    let error = RedisReplayCache::connect(RedisReplayConfig::new(server.url()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn settings_that_weaken_the_store_fail_startup() {
    let error = RedisReplayCache::connect(RedisReplayConfig::new(
        "rediss://user:hunter2@127.0.0.1:1/0#insecure",
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Config(SettingsError::InsecureTls { .. })
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("hunter2"), "{error}");
    let error = RedisReplayCache::connect(
        RedisReplayConfig::new("rediss://127.0.0.1:1").with_ca_file("/nonexistent/ca.pem"),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ConnectError::CaFile { .. }), "{error:?}");
    let error = RedisReplayCache::connect(
        RedisReplayConfig::new("redis://127.0.0.1:1").with_timeout(Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert_eq!(error.to_string(), "timeout_ms must be at least 1");
    let error = RedisReplayCache::connect(RedisReplayConfig::new("http://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Url { .. }), "{error:?}");
}
