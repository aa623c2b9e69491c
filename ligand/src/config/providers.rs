//! Providers that reach a backend, named by `ligand.toml` and compiled in by a facade feature:
//! the Redis/Valkey rate limiter and WPT replay cache (`redis`), OpenBao secrets (`openbao`)
//! and the policy bundle fetcher (`bundle-fetch`).
//!
//! Loading the file only checks their settings; they connect when `init` starts them, so
//! `--validate` and `ligand config validate` reach no backend. A backend that cannot be
//! reached then fails `init`, and the error names the setting that points at it.

#[cfg(any(feature = "redis", feature = "openbao"))]
use ligand_runtime::{ProviderContext, ProviderError};

/// The Redis rate limiter, connected by `start`.
#[cfg(feature = "redis")]
pub(super) struct RedisRateLimit {
    config: ligand_ratelimit_redis::RedisConfig,
    /// The setting the URL came from (`rate_limit.url` or `LIGAND_REDIS_URL`).
    setting: &'static str,
    limiter: std::sync::OnceLock<ligand_ratelimit_redis::RedisLimiter>,
}

#[cfg(feature = "redis")]
impl RedisRateLimit {
    pub(super) fn new(config: ligand_ratelimit_redis::RedisConfig, setting: &'static str) -> Self {
        Self {
            config,
            setting,
            limiter: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(feature = "redis")]
#[async_trait::async_trait]
impl ligand_runtime::RateLimiter for RedisRateLimit {
    async fn check(
        &self,
        request: &ligand_runtime::RateLimitRequest<'_>,
    ) -> Result<ligand_runtime::RateLimitResponse, ProviderError> {
        // Not started (or start failed): deny, as for any limiter failure.
        match self.limiter.get() {
            Some(limiter) => limiter.check(request).await,
            None => Err(ProviderError::Closed),
        }
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        if self.limiter.get().is_none() {
            let limiter = ligand_ratelimit_redis::RedisLimiter::connect(self.config.clone())
                .await
                .map_err(|e| ProviderError::backend(self.setting, e))?;
            let _ = self.limiter.set(limiter);
        }
        match self.limiter.get() {
            Some(limiter) => limiter
                .start(context)
                .await
                .map_err(|e| ProviderError::backend(self.setting, e)),
            None => Err(ProviderError::Closed),
        }
    }

    async fn close(&self) -> Result<(), ProviderError> {
        match self.limiter.get() {
            Some(limiter) => limiter.close().await,
            None => Ok(()),
        }
    }
}

/// The Redis WPT replay cache, connected by `start`.
#[cfg(feature = "redis")]
pub(super) struct RedisReplay {
    config: ligand_replay_redis::RedisReplayConfig,
    setting: &'static str,
    cache: std::sync::OnceLock<ligand_replay_redis::RedisReplayCache>,
}

#[cfg(feature = "redis")]
impl RedisReplay {
    pub(super) fn new(
        config: ligand_replay_redis::RedisReplayConfig,
        setting: &'static str,
    ) -> Self {
        Self {
            config,
            setting,
            cache: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplay")
            .field("config", &self.config)
            .field("connected", &self.cache.get().is_some())
            .finish()
    }
}

/// A connection failure, named after the setting.
#[cfg(feature = "redis")]
#[derive(Debug, thiserror::Error)]
#[error("{setting}")]
struct Named {
    setting: &'static str,
    #[source]
    source: ligand_runtime::BoxError,
}

#[cfg(feature = "redis")]
#[async_trait::async_trait]
impl ligand_runtime::ReplayCache for RedisReplay {
    async fn record(
        &self,
        key: ligand_runtime::ReplayKey,
        expires_at: std::time::SystemTime,
        now: std::time::SystemTime,
    ) -> Result<ligand_runtime::Recorded, ligand_runtime::ReplayCacheError> {
        // Not connected: the proof's freshness cannot be shown, so it is refused.
        match self.cache.get() {
            Some(cache) => cache.record(key, expires_at, now).await,
            None => Err(ligand_runtime::ReplayCacheError::Backend(
                "the redis replay cache is not connected".into(),
            )),
        }
    }

    async fn start(&self) -> Result<(), ligand_runtime::ReplayCacheError> {
        if self.cache.get().is_none() {
            let cache = ligand_replay_redis::RedisReplayCache::connect(self.config.clone())
                .await
                .map_err(|e| {
                    ligand_runtime::ReplayCacheError::Backend(Box::new(Named {
                        setting: self.setting,
                        source: Box::new(e),
                    }))
                })?;
            let _ = self.cache.set(cache);
        }
        Ok(())
    }
}

/// A provider whose `start` errors name the setting that points at its backend.
#[cfg(feature = "openbao")]
pub(super) struct NamedSecrets<T> {
    pub(super) inner: T,
    pub(super) setting: &'static str,
}

#[cfg(feature = "openbao")]
#[async_trait::async_trait]
impl<T: ligand_runtime::Secrets> ligand_runtime::Secrets for NamedSecrets<T> {
    async fn get(&self, name: &str) -> Result<ligand_runtime::SecretValue, ProviderError> {
        self.inner.get(name).await
    }

    async fn watch_revocations(
        &self,
    ) -> Result<tokio::sync::mpsc::Receiver<ligand_runtime::SecretRevocation>, ProviderError> {
        self.inner.watch_revocations().await
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        self.inner
            .start(context)
            .await
            .map_err(|e| ProviderError::backend(self.setting, e))
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.inner.close().await
    }
}
