//! The outbound transport's resilience stack without the network, to measure what it adds
//! to a call.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::outbound::resilience::Outcome;
use crate::outbound::resilience::stack::{Ended, Stack, Trace};
use crate::{ResilienceConfig, ResilienceConfigError};

/// One target's resilience stages (bulkhead, circuit breaker, balancer with outlier
/// detection, retry policy and budget), run by the same code as the transport's, around an
/// exchange that answers at once with a given status.
#[derive(Debug)]
pub struct ResilienceStack {
    stack: Stack,
}

impl ResilienceStack {
    /// The stages configured as `config`, over `endpoints` made-up addresses.
    pub fn new(config: &ResilienceConfig, endpoints: usize) -> Result<Self, ResilienceConfigError> {
        let addresses: Vec<String> = (0..endpoints).map(|i| format!("10.0.0.{i}:443")).collect();
        Ok(Self {
            stack: Stack::new(config, &addresses, Arc::new(|_| {}), Arc::new(|_| {}))?,
        })
    }

    /// One call of `method` whose attempts answer `status`: the attempts made, or `None`
    /// when the stack refused the call (bulkhead, circuit, no endpoints).
    pub async fn call(&self, method: &Method, status: StatusCode) -> Option<u32> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let permit = self.stack.admit(deadline).await.ok()?;
        let mut trace = Trace::default();
        let outcome = Outcome::from_status(status);
        let result: Result<(), _> = self
            .stack
            .attempts(
                &permit,
                method,
                None,
                deadline,
                None,
                &mut trace,
                |_| async move {
                    (
                        outcome,
                        if outcome.is_failure() {
                            Err(())
                        } else {
                            Ok(())
                        },
                    )
                },
            )
            .await;
        match result {
            Ok(()) | Err(Ended::Failed(())) => Some(trace.attempts),
            Err(Ended::Refused(_)) => None,
        }
    }
}
