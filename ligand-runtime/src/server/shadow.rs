//! The shadow policy: a candidate policy evaluated beside the enforced one on live traffic,
//! never enforced.
//!
//! The request path hands the shadow worker what it needs and moves on: the shared
//! `Arc<EvalRequest>` the enforced policy decided on (a reference count, no copy), the request
//! ID and the enforced answer, through a bounded queue with `try_send`. The worker, a task of
//! its own, decides the same input on the shadow policy and compares. Evaluating inline instead
//! would add a second evaluation to every request whose shadow decision is not cached (the
//! shadow cache starts empty and fills with different keys than the enforced one), which is
//! exactly the latency a candidate policy must not cost. When the queue is full (the shadow
//! policy is slower than the traffic) the comparison is dropped and counted, never waited for.
//!
//! An engine that decides inline (regorus) decides on the blocking pool, one request at a
//! time: a shadow evaluation never occupies an async worker that serves requests, and a
//! shadow policy costs at most one core however slow it is. An engine that has to wait is
//! awaited on the worker task, bounded by the policy timeout.
//!
//! Only requests the enforced policy decided (allow or deny) are compared; an enforced error
//! or time-out has nothing to compare with. A disagreement is logged with the request ID, both
//! decisions and both reasons; the enforced decision's full record is in the audit log under
//! the same request ID.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::AuditMetrics;
use crate::policy::{EvalRequest, EvalResponse, PolicyEngine};
use crate::request_id::RequestId;

/// How many comparisons may wait for the shadow worker before new ones are dropped.
pub(crate) const SHADOW_QUEUE: usize = 1024;

/// Counts of shadow policy comparisons since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShadowDecisions {
    /// The shadow policy decided as the enforced one did.
    pub agree: u64,
    /// The shadow policy decided the other way (each is logged with the request ID).
    pub disagree: u64,
    /// The shadow evaluation failed or timed out.
    pub error: u64,
    /// Comparisons dropped because the shadow worker was behind.
    pub dropped: u64,
}

/// What the worker needs to compare one request.
struct Job {
    request_id: RequestId,
    input: Arc<EvalRequest>,
    allowed: bool,
    reason: Option<Arc<str>>,
}

pub(crate) struct Shadow {
    engine: Arc<dyn PolicyEngine>,
    queue: mpsc::Sender<Job>,
    /// Taken by the worker when it starts.
    jobs: Mutex<Option<mpsc::Receiver<Job>>>,
    timeout: Duration,
    metrics: Option<Arc<AuditMetrics>>,
    agree: AtomicU64,
    disagree: AtomicU64,
    error: AtomicU64,
    dropped: AtomicU64,
}

impl fmt::Debug for Shadow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shadow")
            .field("decisions", &self.decisions())
            .finish_non_exhaustive()
    }
}

impl Shadow {
    pub(crate) fn new(
        engine: Arc<dyn PolicyEngine>,
        timeout: Duration,
        metrics: Option<Arc<AuditMetrics>>,
    ) -> Self {
        let (queue, jobs) = mpsc::channel(SHADOW_QUEUE);
        Self {
            engine,
            queue,
            jobs: Mutex::new(Some(jobs)),
            timeout,
            metrics,
            agree: AtomicU64::new(0),
            disagree: AtomicU64::new(0),
            error: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn engine(&self) -> &Arc<dyn PolicyEngine> {
        &self.engine
    }

    /// Queues one comparison without waiting; a full queue drops it (counted).
    pub(crate) fn offer(
        &self,
        request_id: RequestId,
        input: &Arc<EvalRequest>,
        allowed: bool,
        reason: Option<&Arc<str>>,
    ) {
        let job = Job {
            request_id,
            input: input.clone(),
            allowed,
            reason: reason.cloned(),
        };
        if self.queue.try_send(job).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn decisions(&self) -> ShadowDecisions {
        ShadowDecisions {
            agree: self.agree.load(Ordering::Relaxed),
            disagree: self.disagree.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// The worker: compares queued requests until `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut jobs) = jobs else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                job = jobs.recv() => match job {
                    Some(job) => self.compare(job).await,
                    None => return,
                },
            }
        }
    }

    async fn decide(&self, input: &Arc<EvalRequest>) -> Result<EvalResponse, String> {
        let engine = self.engine.clone();
        let request = input.clone();
        let inline = tokio::task::spawn_blocking(move || engine.evaluate_inline(&request))
            .await
            .map_err(|e| format!("shadow evaluation task failed: {e}"))?;
        match inline {
            Some(decided) => decided.map_err(|e| e.to_string()),
            None => match tokio::time::timeout(self.timeout, self.engine.evaluate(input)).await {
                Ok(decided) => decided.map_err(|e| e.to_string()),
                Err(_) => Err(format!("timed out after {:?}", self.timeout)),
            },
        }
    }

    async fn compare(&self, job: Job) {
        let decided = self.decide(&job.input).await;
        let request_id = job.request_id;
        let agreement = match decided {
            Ok(EvalResponse {
                allowed,
                reason,
                policy_version,
                ..
            }) if allowed != job.allowed => {
                tracing::info!(
                    %request_id,
                    enforced = decision(job.allowed),
                    shadow = decision(allowed),
                    enforced_reason = job.reason.as_deref().unwrap_or(""),
                    shadow_reason = reason.as_deref().unwrap_or(""),
                    shadow_revision = policy_version.as_deref().unwrap_or(""),
                    "shadow policy disagrees with the enforced policy"
                );
                self.disagree.fetch_add(1, Ordering::Relaxed);
                "disagree"
            }
            Ok(_) => {
                self.agree.fetch_add(1, Ordering::Relaxed);
                "agree"
            }
            Err(error) => {
                tracing::debug!(%request_id, %error, "shadow policy evaluation failed");
                self.error.fetch_add(1, Ordering::Relaxed);
                "error"
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.shadow(agreement);
        }
    }
}

fn decision(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}
