//! The hand-off between the request threads and the audit writer: a vector of records under
//! a lock, which the writer swaps for its empty one each round, and the count of the queue's
//! free slots under the same lock.
//!
//! A request's part is a lock, taking a slot, one move of its record into the vector and an
//! unlock; the writer's is one swap per round, however many records it takes, and one
//! update of the count per batch delivered. The lock is held for those moments only: a push
//! never allocates once the two vectors have grown to a busy round's size, and nothing is
//! dropped, woken or written under it. The slot count lives under the lock rather than in an
//! atomic of its own: the request takes the lock anyway, and an atomic count was one more
//! read-modify-write a request on a cache line the other request threads and the writer
//! write too.
//!
//! The same lock carries the spent inputs back (see [`Handoff::hand_back`]): a request that
//! queues its record takes two of them in the same moment, and drops them after the unlock.
//!
//! Between rounds the writer lingers ([`Handoff::linger`]): the records that come in
//! meanwhile do not wake it, unless one cannot wait (a marker, a health transition) or so
//! many are queued that the queue would fill before the linger ends. A request wakes the
//! writer at most once per round.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Record;
use crate::policy::EvalRequest;

/// How many spent inputs a request takes back when it queues its record: more than one, so
/// that they drain faster than they come.
const SPENT_PER_RECORD: usize = 2;

/// Records on their way to the writer.
#[derive(Debug)]
pub(super) struct Handoff {
    state: Mutex<State>,
    /// Wakes the writer when it waits with nothing queued, or cuts its linger short.
    wake: Condvar,
    /// How many queued records cut the writer's linger short.
    wake_at: usize,
    /// The queue's slots: how many request records may be queued or in the writer's hands.
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Record>,
    /// Slots free: a request record takes one while it is queued and until the writer has
    /// delivered it.
    free: usize,
    /// The evaluated inputs of delivered records, for the request threads to free.
    spent: Vec<Arc<EvalRequest>>,
    /// The writer waits on `wake`; the next push wakes it.
    waiting: bool,
    /// The writer lingers on `wake` until `due` (or a timeout).
    lingering: bool,
    /// A record that cannot wait is queued, or `wake_at` records are: the writer's linger is
    /// over.
    due: bool,
    /// No record is taken any more: the writer has closed the queue or stopped, or every
    /// queue handle is gone.
    closed: bool,
}

impl State {
    /// Whether the record just queued wakes the writer: it waits for any record, or it
    /// lingers and the queue just became due, because this record cannot wait (`urgent`) or
    /// is the `wake_at`th. A lingering writer is woken once per round.
    fn wake_for(&mut self, urgent: bool, wake_at: usize) -> bool {
        if std::mem::take(&mut self.waiting) {
            return true;
        }
        if !self.due && (urgent || self.records.len() >= wake_at) {
            self.due = true;
            return self.lingering;
        }
        false
    }

    /// Moves every queued record into the empty `batch`: the two vectors trade places, and
    /// keep their room for the next rounds.
    fn take_into(&mut self, batch: &mut Vec<Record>) {
        std::mem::swap(&mut self.records, batch);
        self.due = false;
    }
}

/// Why a record was not queued.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the record comes back as it went in: boxing it would allocate for a full queue"
)]
pub(super) enum Refused {
    /// No slot was free: the request record, back.
    Full(Record),
    /// No record is taken any more; the record was dropped.
    Closed,
}

/// How a linger ended; the records queued meanwhile are in the batch in every case.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lingered {
    /// A record that cannot wait was queued, or enough records were.
    Due,
    /// The time passed.
    TimedOut,
    /// No record is taken any more (those queued before the close are in the batch).
    Closed,
}

/// How a wait for records ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waited {
    /// Records were queued; they are in the batch.
    Records,
    /// The timeout passed with nothing queued.
    TimedOut,
    /// Nothing is queued and nothing will be.
    Closed,
}

impl Handoff {
    /// A hand-off of `capacity` slots (at least one) whose writer's linger ends early once
    /// `wake_at` records are queued (at least one).
    pub(super) fn new(capacity: usize, wake_at: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State {
                free: capacity,
                ..State::default()
            }),
            wake: Condvar::new(),
            wake_at: wake_at.max(1),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under the lock but an allocation failure; the state stays whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `record`, a request record in one of the free slots: refused when none is free
    /// (the record back) or once closed (the record dropped). A request's record takes up to
    /// [`SPENT_PER_RECORD`] spent inputs back, dropped after the unlock.
    #[inline(always)]
    #[allow(
        clippy::result_large_err,
        reason = "a full queue hands the record back, to wait in the `block` mode"
    )]
    pub(super) fn push(&self, record: Record) -> Result<(), Refused> {
        let mut spent: [Option<Arc<EvalRequest>>; SPENT_PER_RECORD] = Default::default();
        let mut state = self.lock();
        if state.closed {
            drop(state);
            drop(record);
            return Err(Refused::Closed);
        }
        let urgent = !record.takes_slot();
        if !urgent {
            let Some(free) = state.free.checked_sub(1) else {
                drop(state);
                return Err(Refused::Full(record));
            };
            state.free = free;
        }
        state.records.push(record);
        if !urgent {
            for slot in &mut spent {
                *slot = state.spent.pop();
            }
        }
        let wake = state.wake_for(urgent, self.wake_at);
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        drop(spent);
        Ok(())
    }

    /// Gives back the slots of `n` delivered records.
    pub(super) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut state = self.lock();
        debug_assert!(
            state.free + n <= self.capacity,
            "more slots back than taken"
        );
        state.free = (state.free + n).min(self.capacity);
    }

    /// Slots taken and not given back yet: request records queued or being delivered.
    pub(super) fn taken(&self) -> usize {
        self.capacity - self.lock().free
    }

    /// Hands the writer's `batch` of spent inputs over when the previous one has been taken,
    /// trading the vectors (no allocation); otherwise the request threads are behind, and
    /// the writer drops the batch itself, after the unlock.
    ///
    /// A record's memory, its evaluated input above all (the input, its chain, its path), is
    /// allocated by a request thread. Freed by the writer, which never allocates, it would
    /// leave the allocator's per-thread caches lopsided: the writer's overflow into the
    /// request threads' heaps while theirs run empty, and glibc then pays on both sides (a
    /// heap lock per free, consolidation before the next large allocation). So each
    /// request's [`push`](Self::push) frees two, on a thread that allocates: what it frees,
    /// it reuses (about 800 instructions a request less, in `scripts/bench-instructions`).
    /// They come back under the lock the request takes anyway; a lock of their own cost
    /// every request two more atomic operations on a cache line the other threads write. At
    /// most one batch waits here; a service that goes quiet keeps it until its next request.
    pub(super) fn hand_back(&self, batch: &mut Vec<Arc<EvalRequest>>) {
        if batch.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            if state.spent.is_empty() {
                std::mem::swap(&mut state.spent, batch);
            }
        }
        batch.clear();
    }

    /// Moves every queued record into the empty `batch`, without waiting; `false` when
    /// closed (records queued before the close are still taken).
    pub(super) fn take(&self, batch: &mut Vec<Record>) -> bool {
        debug_assert!(batch.is_empty());
        let mut state = self.lock();
        state.take_into(batch);
        !state.closed
    }

    /// Waits up to `timeout` for records to gather, then moves every queued record into the
    /// empty `batch`. The wait ends early once the queue is due (a record that cannot wait,
    /// or `wake_at` records) or closed.
    pub(super) fn linger(&self, timeout: Duration, batch: &mut Vec<Record>) -> Lingered {
        debug_assert!(batch.is_empty());
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        state.lingering = true;
        let ended = loop {
            if state.closed {
                break Lingered::Closed;
            }
            if state.due {
                break Lingered::Due;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Lingered::TimedOut;
            }
            state = self
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        state.lingering = false;
        state.take_into(batch);
        ended
    }

    /// Waits until records are queued (moved into the empty `batch`), `timeout` passes
    /// with none, or the hand-off closes with none.
    pub(super) fn wait(&self, timeout: Option<Duration>, batch: &mut Vec<Record>) -> Waited {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.lock();
        loop {
            if !state.records.is_empty() {
                state.waiting = false;
                state.take_into(batch);
                return Waited::Records;
            }
            if state.closed {
                state.waiting = false;
                return Waited::Closed;
            }
            state.waiting = true;
            state = match deadline {
                None => self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.waiting = false;
                        return Waited::TimedOut;
                    }
                    self.wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Refuses records from now on and wakes a waiting writer; what is queued stays for
    /// [`take`](Self::take).
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use super::*;
    use crate::telemetry::queue::tests::{decision, input};

    fn marker() -> (Record, tokio::sync::oneshot::Receiver<()>) {
        let (done, answer) = tokio::sync::oneshot::channel();
        (Record::Flush(done), answer)
    }

    /// A writer thread that takes a batch from `handoff` with `take` (a wait or a linger):
    /// joined, it gives how the take ended and how many records it took.
    fn writer<R: Send + 'static>(
        handoff: &Arc<Handoff>,
        take: impl FnOnce(&Handoff, &mut Vec<Record>) -> R + Send + 'static,
    ) -> std::thread::JoinHandle<(R, usize)> {
        let handoff = handoff.clone();
        std::thread::spawn(move || {
            let mut batch = Vec::new();
            let ended = take(&handoff, &mut batch);
            (ended, batch.len())
        })
    }

    #[test]
    fn slots_are_taken_until_none_is_free_and_given_back() {
        let handoff = Handoff::new(2, 64);
        handoff.push(decision(input())).unwrap();
        handoff.push(decision(input())).unwrap();
        let tracked = input();
        let Err(Refused::Full(Record::Decision { decision: back, .. })) =
            handoff.push(decision(tracked.clone()))
        else {
            panic!("both slots are taken: the record comes back");
        };
        assert!(Arc::ptr_eq(&back.input, &tracked));
        assert_eq!(handoff.taken(), 2);
        let (flush, _answer) = marker();
        handoff.push(flush).unwrap();
        assert_eq!(handoff.taken(), 2, "a marker takes no slot");
        handoff.give_back(1);
        assert_eq!(handoff.taken(), 1);
        handoff.push(decision(input())).unwrap();
        assert!(matches!(
            handoff.push(decision(input())),
            Err(Refused::Full(_))
        ));
    }

    #[test]
    fn a_hand_off_has_at_least_one_slot() {
        let handoff = Handoff::new(0, 1);
        handoff.push(decision(input())).unwrap();
        assert!(matches!(
            handoff.push(decision(input())),
            Err(Refused::Full(_))
        ));
    }

    #[test]
    fn request_records_take_spent_inputs_back_two_at_a_time_and_markers_none() {
        let handoff = Handoff::new(64, 64);
        let spent = input();
        let mut batch = vec![spent.clone(); 3];
        handoff.hand_back(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(Arc::strong_count(&spent), 4, "held for the request threads");
        let (flush, _answer) = marker();
        handoff.push(flush).unwrap();
        assert_eq!(Arc::strong_count(&spent), 4, "a marker frees none");
        handoff.push(decision(input())).unwrap();
        assert_eq!(Arc::strong_count(&spent), 2);
        handoff.push(decision(input())).unwrap();
        assert_eq!(Arc::strong_count(&spent), 1);
    }

    #[test]
    fn a_batch_handed_back_before_the_last_was_freed_is_dropped_by_the_writer() {
        let handoff = Handoff::new(64, 64);
        let (first, second) = (input(), input());
        handoff.hand_back(&mut vec![first.clone(); 3]);
        let mut batch = vec![second.clone(); 2];
        handoff.hand_back(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(Arc::strong_count(&second), 1, "dropped at once");
        assert_eq!(Arc::strong_count(&first), 4, "the first batch still waits");
    }

    #[test]
    fn records_are_taken_in_order_and_the_vectors_trade_places() {
        let handoff = Handoff::new(64, 4);
        let (first, mut first_answer) = marker();
        let (second, _second_answer) = marker();
        handoff.push(first).unwrap();
        handoff.push(second).unwrap();
        let mut batch = Vec::new();
        assert!(handoff.take(&mut batch));
        assert_eq!(batch.len(), 2);
        let Some(Record::Flush(done)) = batch.drain(..).next() else {
            panic!("the first record first");
        };
        done.send(()).unwrap();
        assert!(first_answer.try_recv().is_ok());
        assert!(handoff.take(&mut batch));
        assert!(batch.is_empty(), "nothing left");
    }

    #[test]
    fn after_the_close_records_are_refused_and_what_was_queued_is_still_taken() {
        let handoff = Handoff::new(64, 4);
        let (queued, _queued_answer) = marker();
        handoff.push(queued).unwrap();
        handoff.close();
        let (refused, mut refused_answer) = marker();
        assert!(matches!(handoff.push(refused), Err(Refused::Closed)));
        assert!(
            refused_answer.try_recv().is_err(),
            "a refused marker is dropped, so its waiter returns"
        );
        let mut batch = Vec::new();
        assert!(!handoff.take(&mut batch));
        assert_eq!(batch.len(), 1, "queued before the close");
        batch.clear();
        assert_eq!(handoff.wait(None, &mut batch), Waited::Closed);
    }

    #[test]
    fn a_waiting_writer_is_woken_by_the_next_record() {
        let handoff = Arc::new(Handoff::new(64, 4));
        let writer = writer(&handoff, |handoff, batch| handoff.wait(None, batch));
        // Whether the writer is already waiting or not, the record reaches it.
        let (record, _answer) = marker();
        handoff.push(record).unwrap();
        assert_eq!(writer.join().unwrap(), (Waited::Records, 1));
    }

    #[test]
    fn a_waiting_writer_is_woken_by_the_close() {
        let handoff = Arc::new(Handoff::new(64, 4));
        let writer = writer(&handoff, |handoff, batch| handoff.wait(None, batch));
        handoff.close();
        assert_eq!(writer.join().unwrap(), (Waited::Closed, 0));
    }

    #[test]
    fn a_lingering_writer_is_woken_by_a_record_that_cannot_wait() {
        let handoff = Arc::new(Handoff::new(64, 4));
        let writer = writer(&handoff, |handoff, batch| {
            handoff.linger(Duration::from_secs(30), batch)
        });
        // Whether the writer lingers already or not: a flush marker ends the linger.
        let (record, _answer) = marker();
        handoff.push(record).unwrap();
        assert_eq!(writer.join().unwrap(), (Lingered::Due, 1));
    }

    #[test]
    fn request_records_end_a_linger_only_once_wake_at_are_queued() {
        let handoff = Arc::new(Handoff::new(64, 4));
        for _ in 0..3 {
            handoff.push(decision(input())).unwrap();
        }
        let mut batch = Vec::new();
        assert_eq!(
            handoff.linger(Duration::ZERO, &mut batch),
            Lingered::TimedOut,
            "three of four do not make the queue due"
        );
        assert_eq!(batch.len(), 3, "and are taken when the linger ends");
        batch.clear();

        let writer = writer(&handoff, |handoff, batch| {
            handoff.linger(Duration::from_secs(30), batch)
        });
        for _ in 0..4 {
            handoff.push(decision(input())).unwrap();
        }
        assert_eq!(writer.join().unwrap(), (Lingered::Due, 4));

        // Taking the batch starts a new round: it is not due until four more come.
        handoff.push(decision(input())).unwrap();
        assert_eq!(
            handoff.linger(Duration::ZERO, &mut batch),
            Lingered::TimedOut
        );
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn a_close_ends_a_linger() {
        let handoff = Arc::new(Handoff::new(64, 4));
        let writer = writer(&handoff, |handoff, batch| {
            handoff.linger(Duration::from_secs(30), batch)
        });
        handoff.close();
        assert_eq!(writer.join().unwrap(), (Lingered::Closed, 0));
    }

    #[test]
    fn a_wait_with_a_timeout_and_nothing_queued_times_out() {
        let handoff = Handoff::new(64, 4);
        let waited = handoff.wait(Some(Duration::ZERO), &mut Vec::new());
        assert_eq!(waited, Waited::TimedOut);
    }
}
