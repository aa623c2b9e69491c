//! The bulkhead of one target service: at most [`DEFAULT_MAX_CONCURRENT`] calls at once and
//! at most [`DEFAULT_MAX_PENDING`] waiting for a slot (Envoy's `max_requests` and
//! `max_pending_requests`, same defaults). Beyond both, a call fails at once: a slow target
//! then costs its callers a bounded number of tasks and sockets, not all of them.
//!
//! The waiting itself has no deadline of its own: the call's timeout bounds it.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::config::ConfigError;

/// Calls to one target at once.
pub(crate) const DEFAULT_MAX_CONCURRENT: u32 = 1024;
/// Calls to one target waiting for a slot.
pub(crate) const DEFAULT_MAX_PENDING: u32 = 1024;

/// `[outbound.bulkhead]`: how many calls a target may have at once and waiting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// Calls at once.
    pub max_concurrent: u32,
    /// Calls waiting for a slot; 0 makes a full bulkhead refuse at once.
    pub max_pending: u32,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

impl BulkheadConfig {
    /// Checks every setting; the message names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        // Semaphore::MAX_PERMITS is far above u32::MAX on 64-bit targets; on 32-bit it is
        // u32::MAX >> 3, checked here so `Semaphore::new` cannot panic.
        for (setting, value) in [
            ("bulkhead.max_concurrent", self.max_concurrent),
            ("bulkhead.max_pending", self.max_pending),
        ] {
            if value as usize > Semaphore::MAX_PERMITS {
                return Err(ConfigError::OutOfRange {
                    setting,
                    value: value.to_string(),
                    expected: "at most Semaphore::MAX_PERMITS",
                });
            }
        }
        if self.max_concurrent == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "bulkhead.max_concurrent",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }
}

/// Why the bulkhead refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BulkheadError {
    /// Every slot is taken and the queue is full.
    #[error("bulkhead full: {max_concurrent} calls in flight and {max_pending} waiting")]
    Full {
        /// The concurrency limit.
        max_concurrent: u32,
        /// The queue limit.
        max_pending: u32,
    },
    /// The bulkhead was closed (the transport is shutting down).
    #[error("bulkhead closed")]
    Closed,
}

/// A call's slot; released when dropped.
#[derive(Debug)]
pub(crate) struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

/// The bulkhead of one target service.
pub(crate) struct Bulkhead {
    config: BulkheadConfig,
    calls: Arc<Semaphore>,
    queue: Arc<Semaphore>,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("config", &self.config)
            .field("available", &self.calls.available_permits())
            .finish_non_exhaustive()
    }
}

impl Bulkhead {
    /// A bulkhead with validated settings.
    pub(crate) fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            calls: Arc::new(Semaphore::new(config.max_concurrent as usize)),
            queue: Arc::new(Semaphore::new(config.max_pending as usize)),
            config,
        })
    }

    /// A slot for one call when one is free now: `None` when the call would have to wait
    /// (or be refused as [`BulkheadError::Full`]: [`acquire`](Self::acquire) decides).
    pub(crate) fn try_acquire(&self) -> Result<Option<BulkheadPermit>, BulkheadError> {
        match self.calls.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(BulkheadPermit { _permit: permit })),
            Err(TryAcquireError::Closed) => Err(BulkheadError::Closed),
            Err(TryAcquireError::NoPermits) => Ok(None),
        }
    }

    /// A slot for one call: at once when one is free, after waiting in the queue when the
    /// queue has room, otherwise [`BulkheadError::Full`] at once.
    pub(crate) async fn acquire(&self) -> Result<BulkheadPermit, BulkheadError> {
        match self.calls.clone().try_acquire_owned() {
            Ok(permit) => return Ok(BulkheadPermit { _permit: permit }),
            Err(TryAcquireError::Closed) => return Err(BulkheadError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        let _waiting = match self.queue.try_acquire() {
            Ok(place) => place,
            Err(TryAcquireError::Closed) => return Err(BulkheadError::Closed),
            Err(TryAcquireError::NoPermits) => {
                return Err(BulkheadError::Full {
                    max_concurrent: self.config.max_concurrent,
                    max_pending: self.config.max_pending,
                });
            }
        };
        let permit = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BulkheadError::Closed)?;
        Ok(BulkheadPermit { _permit: permit })
    }

    /// Calls in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        (self.config.max_concurrent as usize).saturating_sub(self.calls.available_permits())
    }

    /// Calls waiting for a slot.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        (self.config.max_pending as usize).saturating_sub(self.queue.available_permits())
    }

    /// Refuses every later call and wakes the waiting ones with [`BulkheadError::Closed`];
    /// calls in flight keep their slots.
    pub(crate) fn close(&self) {
        self.calls.close();
        self.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulkhead(max_concurrent: u32, max_pending: u32) -> Arc<Bulkhead> {
        Arc::new(
            Bulkhead::new(BulkheadConfig {
                max_concurrent,
                max_pending,
            })
            .unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn full_when_slots_and_queue_are_taken() {
        let bulkhead = bulkhead(2, 1);
        let a = bulkhead.acquire().await.unwrap();
        let _b = bulkhead.acquire().await.unwrap();
        assert_eq!(bulkhead.in_flight(), 2);

        let waiter = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move { bulkhead.acquire().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.pending(), 1);

        assert_eq!(
            bulkhead.acquire().await.unwrap_err(),
            BulkheadError::Full {
                max_concurrent: 2,
                max_pending: 1
            }
        );

        drop(a);
        waiter.await.unwrap().unwrap();
        assert_eq!(bulkhead.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn permits_are_released_on_drop() {
        let bulkhead = bulkhead(1, 0);
        let permit = bulkhead.acquire().await.unwrap();
        assert!(matches!(
            bulkhead.acquire().await,
            Err(BulkheadError::Full { .. })
        ));
        drop(permit);
        assert_eq!(bulkhead.in_flight(), 0);
        let _again = bulkhead.acquire().await.unwrap();
        assert_eq!(bulkhead.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_fails_waiters_and_later_calls() {
        let bulkhead = bulkhead(1, 4);
        let _held = bulkhead.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move { bulkhead.acquire().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        bulkhead.close();
        assert_eq!(waiter.await.unwrap(), Err(BulkheadError::Closed));
        assert_eq!(bulkhead.acquire().await.unwrap_err(), BulkheadError::Closed);
    }
}
