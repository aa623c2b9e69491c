//! The audit queue: the only way records leave the request path.
//!
//! Requests move their records into the queue and return; one writer thread, `ligand-audit`,
//! hands them to the sink in order and flushes it whenever the queue runs empty. Request
//! records (decisions, rate-limit outcomes, secret accesses, outbound calls) take one of
//! `capacity` slots: with none free, the record is dropped (the default: counted, reported in
//! the metrics snapshot, and telemetry turns Degraded on the first loss) or, in the `block`
//! overflow mode, the request waits for a slot (decision and rate-limit records). Health
//! transitions and metrics snapshots are rare and never take a slot, so a burst of requests
//! cannot crowd out the record of the degradation it causes. A sink that fails to write a
//! record counts as a loss too. Nothing is lost silently.
//!
//! Under load the writer takes the queue every [`LINGER`] rather than being woken for each
//! record, and flushes the sink once per batch: a buffered sink (log or JSON lines, and the
//! log on standard output, see `stdout`) makes one write per batch, and requests do not pay
//! for waking the writer. Only what cannot wait cuts the linger short: a flush or close
//! marker, a health transition, or a quarter of the queue's capacity queued (so that a
//! burst never fills the queue while the writer lingers, nor makes `block` mode wait for
//! it).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use self::handoff::{Handoff, Lingered, Refused, Waited};
use self::room::Room;

use super::{
    DecisionEvent, HealthTransitionEvent, MetricsSnapshot, OutboundCallEvent, RateLimitEvent,
    SecretAccessEvent, Telemetry,
};
use crate::admin::AuditMetrics;
use crate::config::AuditOverflow;
use crate::error::ProviderError;
use crate::health::{Monitor, ProviderKind, State};
use crate::policy::EvalRequest;
use crate::ratelimit::RateLimitResponse;

mod handoff;
mod room;

/// How long the writer lingers after the queue runs empty before it takes it again: long
/// enough to gather a busy service's records into batches of dozens, short enough that the
/// log is current. Each round costs a timer wake-up, which on a virtual machine costs tens
/// of microseconds of CPU (the timer and the switch in and out): at 5,000 requests a
/// second, a 1 ms linger cost 2.5 to 5 µs a request more in all than a 5 ms one
/// (`ligand-bench-load`'s Ligand server, per-thread run time from `/proc`).
const LINGER: Duration = Duration::from_millis(5);

/// Empty rounds of [`LINGER`] after which the writer stops lingering and waits to be woken.
const IDLE_POLLS: u32 = 4;

/// The share of the queue's capacity whose records cut the writer's linger short.
const WAKE_AT_SHARE: usize = 4;

/// One item for the writer.
#[derive(Debug)]
pub(crate) enum Record {
    /// A request the rate limiter let through (or that no limiter checked) and its decision:
    /// one slot, one hand-off for both records. The limiter's record is the decision's
    /// request, so it travels as what is its own ([`Passed`]) and is made whole for the sink.
    Decision {
        rate_limit: Option<Passed>,
        decision: DecisionEvent,
    },
    /// A request that ended at the rate limiter.
    RateLimit(RateLimitEvent),
    Outbound(OutboundCallEvent),
    Health(HealthTransitionEvent),
    /// Boxed: the event carries a caller's chain and is the largest, and a record is as
    /// large as its largest kind, which every request's record would copy at each move.
    Secret(Box<SecretAccessEvent>),
    Metrics(MetricsSnapshot),
    /// The service's identity, for a sink that signs.
    Identity(Arc<crate::tls::IdentityState>),
    /// Answered once every record queued before it has reached the sink and the sink flushed.
    Flush(oneshot::Sender<()>),
    /// The same, answered to a thread that blocks on it.
    #[cfg(feature = "testkit")]
    FlushBlocking(std::sync::mpsc::Sender<()>),
    /// Deliver what is queued, close the sink, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// What a limiter's record of a request it let through does not share with the request's
/// decision record: the rest (time stamp, request ID, input) is the decision's. A full
/// [`RateLimitEvent`] would repeat them, and the input's reference count would be taken and
/// dropped once more, on a cache line the request's other threads write; every move of the
/// record would copy 80 bytes more.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Passed {
    /// Time spent in the limiter.
    pub(crate) latency: Duration,
    /// The limiter's answer (an allow).
    pub(crate) response: RateLimitResponse,
}

impl Passed {
    /// The limiter's whole record, for the request decided at `timestamp` as `request_id`
    /// on `input`.
    fn event(
        &self,
        timestamp: std::time::SystemTime,
        request_id: crate::RequestId,
        input: Arc<EvalRequest>,
    ) -> RateLimitEvent {
        RateLimitEvent::answered(timestamp, request_id, input, self.latency, &self.response)
    }
}

// Every request's record is moved into the queue and out of it: no rarer kind may make it
// larger than the decision record it nearly always is.
const _: () =
    assert!(size_of::<Record>() <= size_of::<DecisionEvent>() + size_of::<Option<Passed>>() + 8);

impl Record {
    /// Whether the record takes one of the queue's slots while queued: the request records
    /// do; health, metrics and the markers do not.
    fn takes_slot(&self) -> bool {
        matches!(
            self,
            Self::Decision { .. } | Self::RateLimit(_) | Self::Outbound(_) | Self::Secret(_)
        )
    }
}

/// The bounded queue between the request path and the telemetry sink.
pub(crate) struct AuditQueue {
    handoff: Arc<Handoff>,
    room: Arc<Room>,
    overflow: AuditOverflow,
    losses: Arc<Losses>,
    /// The admin listener's counters, when it runs: events that are not audit records (an
    /// ejection, a circuit transition) are counted in them directly.
    metrics: Option<Arc<AuditMetrics>>,
}

/// Records lost on either side of the queue: dropped before it, or refused by the sink after
/// it. The first loss, wherever it happens, is logged and turns telemetry Degraded.
#[derive(Debug, Default)]
struct Losses {
    count: AtomicU64,
    /// Held weakly: the monitor's own telemetry is this queue.
    monitor: OnceLock<Weak<Monitor>>,
}

impl Losses {
    fn count(&self, what: &dyn fmt::Display) {
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            // Once, on the first loss: later losses only count. The health transition this
            // causes is itself a record and may be lost too; the counter is what is exact.
            tracing::warn!(%what, "audit records are being lost (see audit_dropped in metrics)");
            if let Some(monitor) = self.monitor.get().and_then(Weak::upgrade) {
                monitor.set(
                    ProviderKind::Telemetry,
                    State::Degraded,
                    Some(format!("audit records lost: {what}")),
                );
            }
        }
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for AuditQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditQueue")
            .field("taken", &self.handoff.taken())
            .field("overflow", &self.overflow)
            .field("lost", &self.lost())
            .finish()
    }
}

impl AuditQueue {
    /// Starts the writer thread for `sink`; it also counts each record in `metrics`, when
    /// given, as it delivers it.
    pub(crate) fn start(
        sink: Arc<dyn Telemetry>,
        capacity: usize,
        overflow: AuditOverflow,
        metrics: Option<Arc<AuditMetrics>>,
    ) -> std::io::Result<Arc<Self>> {
        let handoff = Arc::new(Handoff::new(capacity, capacity / WAKE_AT_SHARE));
        let room = Arc::new(Room::default());
        let losses = Arc::new(Losses::default());
        let writer = Writer {
            handoff: handoff.clone(),
            sink,
            room: room.clone(),
            losses: losses.clone(),
            metrics: metrics.clone(),
            done: Vec::new(),
            freed: 0,
        };
        // The writer logs (the default sink is `tracing`) under the subscriber in force where
        // the server was initialized, as a task spawned there would.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("ligand-audit".into())
            .spawn(move || tracing::dispatcher::with_default(&dispatch, || writer.run()))?;
        Ok(Arc::new(Self {
            handoff,
            room,
            overflow,
            losses,
            metrics,
        }))
    }

    /// The admin listener's counters, when it runs.
    pub(crate) fn metrics(&self) -> Option<&Arc<AuditMetrics>> {
        self.metrics.as_ref()
    }

    /// The monitor told about the first loss.
    pub(crate) fn attach(&self, monitor: &Arc<Monitor>) {
        let _ = self.losses.monitor.set(Arc::downgrade(monitor));
    }

    /// Queues a record from the request path without waiting: `None` once done (queued, or
    /// dropped and counted when full), or the record back when the `block` mode has to wait
    /// for room, for [`record`](Self::record).
    //
    // This and what it calls are inlined into the request path and decide on the record by
    // reference first, so that it is moved once, into the queue: each move is a copy of a
    // few hundred bytes, several where the moves went through calls.
    #[inline(always)]
    pub(crate) fn record_now(&self, record: Record) -> Option<Record> {
        match self.handoff.push(record) {
            Ok(()) => None,
            // Once the queue is closed, `record` gives up at once and counts the loss.
            Err(Refused::Full(record)) if self.overflow == AuditOverflow::Block => Some(record),
            Err(refused) => {
                self.count_refused(refused);
                None
            }
        }
    }

    /// Queues a record from the request path: waits for room in the `block` mode, drops and
    /// counts it when full otherwise.
    pub(crate) async fn record(&self, record: Record) {
        if self.overflow == AuditOverflow::Block && record.takes_slot() {
            // The writer gives the slot back once the sink has the record.
            if !self.room.queue(&self.handoff, record).await {
                self.losses.count(&"the audit writer has stopped");
            }
        } else {
            self.try_record(record);
        }
    }

    /// Queues a request record without waiting; with no free slot it is lost and counted.
    #[inline(always)]
    pub(crate) fn try_record(&self, record: Record) {
        if let Err(refused) = self.handoff.push(record) {
            self.count_refused(refused);
        }
    }

    /// Counts the loss of a record the hand-off refused.
    #[cold]
    fn count_refused(&self, refused: Refused) {
        self.losses.count(match refused {
            Refused::Full(_) => &"the queue to the telemetry sink was full",
            Refused::Closed => &"the audit writer has stopped",
        });
    }

    /// Hands the service's live identity to the sink, in order with the records.
    pub(crate) fn attach_identity(&self, identity: Arc<crate::tls::IdentityState>) {
        self.record_unbounded(Record::Identity(identity));
    }

    /// Queues a record that takes no slot (health, metrics, markers).
    fn record_unbounded(&self, record: Record) {
        debug_assert!(!record.takes_slot());
        self.try_record(record);
    }

    /// Records lost so far: dropped on a full queue or refused by the sink.
    pub(crate) fn lost(&self) -> u64 {
        self.losses.get()
    }

    /// Records waiting for the writer.
    pub(crate) fn queued(&self) -> u64 {
        self.handoff.taken() as u64
    }

    /// Waits until every record queued before this call has reached the sink and the sink
    /// has flushed. Returns at once if the writer has stopped.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.handoff.push(Record::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// [`flush`](Self::flush) for a caller that blocks its thread: tests under paused time,
    /// where awaiting another thread would let the clock jump ahead.
    #[cfg(feature = "testkit")]
    pub(crate) fn flush_blocking(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.handoff.push(Record::FlushBlocking(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Delivers what is queued, closes the sink and stops the writer. Records queued later
    /// are counted as lost.
    pub(crate) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.handoff.push(Record::Close(done)).is_ok() {
            let _ = wait.await;
        }
        // Requests waiting for a slot in the `block` mode give up; their records count as lost.
        self.room.close();
    }
}

impl Drop for AuditQueue {
    /// The last handle is gone (the server was dropped without `close`): the writer delivers
    /// what is queued and stops.
    fn drop(&mut self) {
        self.handoff.close();
    }
}

/// The writer thread's state.
struct Writer {
    handoff: Arc<Handoff>,
    sink: Arc<dyn Telemetry>,
    room: Arc<Room>,
    losses: Arc<Losses>,
    /// The Prometheus counters, updated here so the request path pays nothing for them.
    metrics: Option<Arc<AuditMetrics>>,
    /// The evaluated inputs of this batch's delivered records, handed back to the request
    /// threads to free (see [`Handoff::hand_back`]).
    done: Vec<Arc<EvalRequest>>,
    /// Slots of this batch's delivered records, given back together when the batch is done.
    freed: usize,
}

impl Writer {
    fn run(mut self) {
        // The default sink logs through `tracing` to standard output: this thread's lines are
        // written in batches (see `stdout`), like a buffered sink's.
        super::stdout::begin_batching();
        self.drain();
        super::stdout::end_batching();
    }

    /// Delivers records until the close marker or until every queue handle is gone.
    ///
    /// Under load the writer does not wait for records: once the queue runs empty it
    /// flushes the sink and lingers for [`LINGER`] before taking what came in meanwhile, all
    /// of it at once, so requests hand their records over without waking this thread (a
    /// wake-up per record cost a system call on each side), and a buffered sink writes once
    /// per batch. After [`IDLE_POLLS`] empty rounds it waits to be woken instead, and an idle
    /// service costs nothing. Records reach the sink at most about `LINGER` after they were
    /// queued; markers and health transitions at once.
    fn drain(&mut self) {
        let mut batch = Vec::new();
        let mut unflushed = false;
        let mut idle = 0;
        let mut linger = false;
        loop {
            let open = if std::mem::take(&mut linger) {
                self.handoff.linger(LINGER, &mut batch) != Lingered::Closed
            } else {
                self.handoff.take(&mut batch)
            };
            if batch.is_empty() {
                if !open {
                    break;
                }
                if unflushed {
                    self.flush();
                    unflushed = false;
                }
                if idle < IDLE_POLLS {
                    idle += 1;
                    linger = true;
                    continue;
                }
                // A sink with work due by time (a checkpoint interval) is flushed again when
                // that much time passes with nothing queued.
                match self
                    .handoff
                    .wait(self.sink.idle_flush_interval(), &mut batch)
                {
                    Waited::Records => {}
                    Waited::TimedOut => {
                        self.flush();
                        continue;
                    }
                    Waited::Closed => break,
                }
            }
            idle = 0;
            let mut records = batch.drain(..);
            while let Some(record) = records.next() {
                if let Some(done) = self.deliver(record) {
                    // Whatever was queued behind the close marker still reaches the sink.
                    for late in records {
                        if let Some(late) = self.deliver(late) {
                            let _ = late.send(());
                        }
                    }
                    self.give_back();
                    self.finish(done);
                    return;
                }
            }
            self.give_back();
            unflushed = true;
        }
        // Every queue handle is gone (the server was dropped without `close`).
        self.flush();
    }

    /// After the close marker: closes the queue, delivers what raced in behind the marker,
    /// closes the sink and answers `done`.
    fn finish(&mut self, done: oneshot::Sender<()>) {
        let mut late = Vec::new();
        self.handoff.close();
        self.handoff.take(&mut late);
        for record in late {
            if let Some(late) = self.deliver(record) {
                let _ = late.send(());
            }
        }
        self.give_back();
        self.flush();
        if let Err(error) = self.sink.close() {
            tracing::warn!(%error, "telemetry close failed");
        }
        super::stdout::flush_batch();
        let _ = done.send(());
    }

    /// Hands one record to the sink; returns the close answer when it is the close marker.
    fn deliver(&mut self, record: Record) -> Option<oneshot::Sender<()>> {
        if let Some(metrics) = &self.metrics {
            metrics.observe(&record);
        }
        if record.takes_slot() {
            self.freed += 1;
        }
        let sink = &*self.sink;
        let result = match record {
            Record::Decision {
                rate_limit,
                mut decision,
            } => {
                if let Some(passed) = rate_limit {
                    // The decision's input, lent to the limiter's record and taken back: no
                    // reference count taken.
                    let event =
                        passed.event(decision.timestamp, decision.request_id, decision.input);
                    let limited = sink.record_rate_limit(&event);
                    decision.input = event.input;
                    if let Err(error) = limited {
                        self.count_refusal(error);
                    }
                }
                let decided = sink.record_decision(&decision);
                // The input goes back to the request threads to be freed (see
                // `Handoff::hand_back`).
                self.done.push(decision.input);
                decided
            }
            Record::RateLimit(event) => {
                let limited = sink.record_rate_limit(&event);
                self.done.push(event.input);
                limited
            }
            Record::Outbound(event) => sink.record_outbound_call(&event),
            Record::Health(event) => sink.record_health_transition(&event),
            Record::Secret(event) => sink.record_secret_access(&event),
            Record::Metrics(snapshot) => sink.record_metrics(&snapshot),
            Record::Identity(identity) => {
                sink.attach_identity(&identity);
                Ok(())
            }
            Record::Flush(done) => {
                self.flush();
                let _ = done.send(());
                Ok(())
            }
            #[cfg(feature = "testkit")]
            Record::FlushBlocking(done) => {
                self.flush();
                let _ = done.send(());
                Ok(())
            }
            Record::Close(done) => return Some(done),
        };
        if let Err(error) = result {
            self.count_refusal(error);
        }
        None
    }

    /// Gives the slots of the records delivered since the last call back, and wakes as many
    /// requests waiting for one.
    fn give_back(&mut self) {
        let freed = std::mem::take(&mut self.freed);
        self.handoff.give_back(freed);
        self.room.given_back(freed);
    }

    /// A record the sink refused is lost; one it does not support is not.
    fn count_refusal(&self, error: ProviderError) {
        if !matches!(error, ProviderError::NotSupported) {
            self.losses.count(&format_args!(
                "the telemetry sink refused a record: {error}"
            ));
        }
    }

    fn flush(&mut self) {
        if let Err(error) = self.sink.flush() {
            tracing::warn!(%error, "telemetry flush failed");
        }
        super::stdout::flush_batch();
        self.handoff.hand_back(&mut self.done);
    }
}

impl Drop for Writer {
    /// Also when the sink panics: records are refused from then on (and counted as lost),
    /// and the queued ones are dropped, so a caller waiting on a flush returns.
    fn drop(&mut self) {
        // The slots of what a panicking sink took before it panicked.
        self.give_back();
        self.handoff.close();
        // Requests waiting for a slot in the `block` mode find the queue closed.
        self.room.close();
        let mut left = Vec::new();
        self.handoff.take(&mut left);
    }
}

/// The queue as a [`Telemetry`], for the components that emit records outside the request
/// path (the health monitor, the secrets cache, the metrics loop): each record is copied in
/// without waiting.
#[derive(Debug, Clone)]
pub(crate) struct QueuedTelemetry(pub(crate) Arc<AuditQueue>);

impl Telemetry for QueuedTelemetry {
    fn record_decision(&self, event: &DecisionEvent) -> Result<(), ProviderError> {
        self.0.try_record(Record::Decision {
            rate_limit: None,
            decision: event.clone(),
        });
        Ok(())
    }

    fn record_rate_limit(&self, event: &RateLimitEvent) -> Result<(), ProviderError> {
        self.0.try_record(Record::RateLimit(event.clone()));
        Ok(())
    }

    fn record_outbound_call(&self, event: &OutboundCallEvent) -> Result<(), ProviderError> {
        self.0.try_record(Record::Outbound(event.clone()));
        Ok(())
    }

    fn record_health_transition(&self, event: &HealthTransitionEvent) -> Result<(), ProviderError> {
        self.0.record_unbounded(Record::Health(event.clone()));
        Ok(())
    }

    fn record_secret_access(&self, event: &SecretAccessEvent) -> Result<(), ProviderError> {
        self.0.try_record(Record::Secret(Box::new(event.clone())));
        Ok(())
    }

    fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
        self.0.record_unbounded(Record::Metrics(snapshot.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::AtomicUsize;
    use std::time::SystemTime;

    use super::*;
    use crate::chain::{Chain, Link};
    use crate::request::{Action, RequestLine, Resource};

    /// Counts decisions and keeps nothing of them.
    #[derive(Debug, Default)]
    struct Count(AtomicUsize);

    impl Telemetry for Count {
        fn record_decision(&self, _: &DecisionEvent) -> Result<(), ProviderError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn record_rate_limit(&self, _: &RateLimitEvent) -> Result<(), ProviderError> {
            Ok(())
        }
        fn record_outbound_call(&self, _: &OutboundCallEvent) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    pub(super) fn input() -> Arc<EvalRequest> {
        let peer = Link::workload("spiffe://example.org/service/caller");
        Arc::new(EvalRequest::new(
            Chain::from(vec![peer.clone()]),
            peer,
            Resource::http_path("/accounts/{id}"),
            Action::new("GET"),
            RequestLine::new(http::Method::GET, "/accounts/7"),
            "spiffe://example.org/service/accounts",
        ))
    }

    pub(super) fn decision(input: Arc<EvalRequest>) -> Record {
        Record::Decision {
            rate_limit: None,
            decision: DecisionEvent {
                timestamp: SystemTime::now(),
                request_id: crate::RequestId::new(),
                input,
                allowed: true,
                cached: false,
                latency: Duration::ZERO,
                policy_latency: Duration::ZERO,
                policy_version: None,
                reason: None,
                error: None,
            },
        }
    }

    #[tokio::test]
    async fn delivered_inputs_are_freed_by_the_threads_that_queue_records() {
        let sink = Arc::new(Count::default());
        let queue = AuditQueue::start(sink.clone(), 64, AuditOverflow::Drop, None).unwrap();
        let tracked = input();
        for _ in 0..10 {
            queue.try_record(decision(tracked.clone()));
        }
        queue.flush().await;
        assert_eq!(sink.0.load(Ordering::Relaxed), 10);
        // Delivered, and not freed by the writer: handed back.
        assert_eq!(Arc::strong_count(&tracked), 11);
        // Each record queued from now on frees up to two of them.
        let mut queued = 0;
        while Arc::strong_count(&tracked) > 1 {
            assert!(queued < 1000, "the handed-back inputs are never freed");
            queue.try_record(decision(input()));
            queued += 1;
        }
        assert!(queued >= 5, "freed {queued} records' worth too fast");
        queue.close().await;
        assert_eq!(sink.0.load(Ordering::Relaxed), 10 + queued);
    }
}
