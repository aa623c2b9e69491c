//! The Redis replay cache against a real `redis-server`: the shared contract, one store for
//! several instances, and fail-closed behaviour when the store is gone.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, SystemTime};

use ligand_replay_redis::{ConnectError, RedisReplayCache, RedisReplayConfig};
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
