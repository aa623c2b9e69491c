use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ProviderError;
use crate::ratelimit::{RateLimitRequest, RateLimitResponse, RateLimiter};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    /// Allow this many requests per peer, then deny with this retry hint.
    Budget(u64, Duration),
    /// Fail every check.
    Fail,
}

/// A limiter answering as scripted: a fixed per-peer budget, or failure.
#[derive(Debug)]
pub struct ScriptedLimiter {
    script: Mutex<Script>,
    used: Mutex<HashMap<String, u64>>,
}

impl ScriptedLimiter {
    /// Allows `budget` requests per peer principal, then denies with `retry_after`.
    pub fn budget(budget: u64, retry_after: Duration) -> Self {
        Self {
            script: Mutex::new(Script::Budget(budget, retry_after)),
            used: Mutex::default(),
        }
    }

    /// Allows everything (an unbounded budget).
    pub fn allow_all() -> Self {
        Self::budget(u64::MAX, Duration::ZERO)
    }

    /// Fails every check, as a limiter whose backend is down.
    pub fn failing() -> Self {
        Self {
            script: Mutex::new(Script::Fail),
            used: Mutex::default(),
        }
    }

    /// Switches to failing (true) or back to an unbounded budget (false).
    pub fn set_failing(&self, failing: bool) {
        *self.script.lock().unwrap_or_else(|e| e.into_inner()) = if failing {
            Script::Fail
        } else {
            Script::Budget(u64::MAX, Duration::ZERO)
        };
    }
}

#[async_trait]
impl RateLimiter for ScriptedLimiter {
    async fn check(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Result<RateLimitResponse, ProviderError> {
        let script = *self.script.lock().unwrap_or_else(|e| e.into_inner());
        match script {
            Script::Fail => Err(ProviderError::backend(
                "checking rate limit",
                "scripted limiter failure",
            )),
            Script::Budget(budget, retry_after) => {
                let peer = request
                    .chain
                    .peer()
                    .and_then(|l| l.principal())
                    .unwrap_or("")
                    .to_owned();
                let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
                let count = used.entry(peer).or_insert(0);
                if *count < budget {
                    *count += 1;
                    Ok(RateLimitResponse::allow())
                } else {
                    Ok(RateLimitResponse::deny(Some(retry_after)))
                }
            }
        }
    }
}
