//! `rediss://`: the limiter over real TLS to a `redis-server` with a private CA.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use ligand_ratelimit_redis::{ConnectError, RedisConfig, RedisLimiter};
use ligand_runtime::testkit::{RedisServer, RedisTlsFiles};
use ligand_runtime::{Action, Chain, Link, RateLimitRequest, RateLimiter, Resource};

fn tls_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "ligand-ratelimit-redis-{name}-{}",
        std::process::id()
    ))
}

#[tokio::test]
async fn limits_over_tls_with_a_private_ca() {
    let dir = tls_dir("ok");
    let files = RedisTlsFiles::generate(&dir);
    let redis = RedisServer::start_tls(files.clone());
    let limiter =
        RedisLimiter::connect(RedisConfig::new(redis.url(), 0.01, 2).with_ca_file(&files.ca))
            .await
            .unwrap();
    let chain = Chain::from(vec![Link::workload("spiffe://example.org/service/alice")]);
    let (resource, action) = (Resource::http_path("/hello/{name}"), Action::new("GET"));
    let request = RateLimitRequest {
        chain: &chain,
        resource: &resource,
        action: &action,
    };
    let mut allowed = 0;
    for _ in 0..4 {
        allowed += usize::from(limiter.check(&request).await.unwrap().allowed);
    }
    assert_eq!(allowed, 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_untrusted_server_certificate_fails_construction() {
    let dir = tls_dir("untrusted");
    let served = RedisTlsFiles::generate(&dir.join("served"));
    let other = RedisTlsFiles::generate(&dir.join("other"));
    let redis = RedisServer::start_tls(served);
    let error =
        RedisLimiter::connect(RedisConfig::new(redis.url(), 1.0, 1).with_ca_file(&other.ca))
            .await
            .unwrap_err();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn insecure_tls_is_refused_before_connecting() {
    let dir = tls_dir("insecure");
    let files = RedisTlsFiles::generate(&dir);
    let redis = RedisServer::start_tls(files);
    // Without ca_file the server's private CA is untrusted; #insecure would skip the check.
    let url = format!("{}#insecure", redis.url());
    let error = RedisLimiter::connect(RedisConfig::new(url, 1.0, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Config(ligand_ratelimit_redis::ConfigError::Settings(
                ligand_ratelimit_redis::SettingsError::InsecureTls { .. }
            ))
        ),
        "{error:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
