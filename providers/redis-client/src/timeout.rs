//! [`within`]: one command bounded by the command timeout.

use std::future::Future;
use std::time::Duration;

/// A command that took longer than its timeout. Every provider treats it as a failure:
/// the request it was made for is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("redis did not answer within {0:?}")]
pub struct TimedOut(pub Duration);

/// Runs `command`, giving up after `timeout`: a hung Redis cannot stall a request longer.
///
/// Dropping the command on time-out is safe with the connection manager: its multiplexed
/// connection matches replies to requests, so a late reply is discarded.
pub async fn within<F: Future>(timeout: Duration, command: F) -> Result<F::Output, TimedOut> {
    tokio::time::timeout(timeout, command)
        .await
        .map_err(|_| TimedOut(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_command_slower_than_its_timeout_fails() {
        let timeout = Duration::from_millis(250);
        let error = within(timeout, std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(error, TimedOut(timeout));
        assert_eq!(error.to_string(), "redis did not answer within 250ms");
        assert_eq!(within(timeout, async { 7 }).await, Ok(7));
    }
}
