//! The hand-off between the request threads and the audit writer: a vector of records under
//! a lock, which the writer swaps for its empty one each round.
//!
//! A request's part is a lock, one move of its record into the vector and an unlock; the
//! writer's is one swap per round, however many records it takes. The lock is held for
//! those moments only: a push never allocates once the two vectors have grown to a busy
//! round's size, and nothing is dropped, woken or written under it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Record;

/// Records on their way to the writer.
#[derive(Debug, Default)]
pub(super) struct Handoff {
    state: Mutex<State>,
    /// Wakes the writer when it waits with nothing queued.
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Record>,
    /// The writer waits on `wake`; the next push wakes it.
    waiting: bool,
    /// No record is taken any more: the writer has closed the queue or stopped, or every
    /// queue handle is gone.
    closed: bool,
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
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under the lock but an allocation failure; the state stays whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `record`; `false` (and the record dropped) once closed.
    #[inline(always)]
    pub(super) fn push(&self, record: Record) -> bool {
        let mut state = self.lock();
        if state.closed {
            drop(state);
            drop(record);
            return false;
        }
        state.records.push(record);
        let wake = std::mem::take(&mut state.waiting);
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Moves every queued record into the empty `batch`, without waiting; `false` when
    /// closed (records queued before the close are still taken).
    pub(super) fn take(&self, batch: &mut Vec<Record>) -> bool {
        debug_assert!(batch.is_empty());
        let mut state = self.lock();
        // The two vectors trade places, and keep their room for the next rounds.
        std::mem::swap(&mut state.records, batch);
        !state.closed
    }

    /// Waits until records are queued (moved into the empty `batch`), `timeout` passes
    /// with none, or the hand-off closes with none.
    pub(super) fn wait(&self, timeout: Option<Duration>, batch: &mut Vec<Record>) -> Waited {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.lock();
        loop {
            if !state.records.is_empty() {
                state.waiting = false;
                std::mem::swap(&mut state.records, batch);
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

    fn marker() -> (Record, tokio::sync::oneshot::Receiver<()>) {
        let (done, answer) = tokio::sync::oneshot::channel();
        (Record::Flush(done), answer)
    }

    #[test]
    fn records_are_taken_in_order_and_the_vectors_trade_places() {
        let handoff = Handoff::default();
        let (first, mut first_answer) = marker();
        let (second, _second_answer) = marker();
        assert!(handoff.push(first));
        assert!(handoff.push(second));
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
        let handoff = Handoff::default();
        let (queued, _queued_answer) = marker();
        assert!(handoff.push(queued));
        handoff.close();
        let (refused, mut refused_answer) = marker();
        assert!(!handoff.push(refused));
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
        let handoff = Arc::new(Handoff::default());
        let writer = std::thread::spawn({
            let handoff = handoff.clone();
            move || {
                let mut batch = Vec::new();
                let waited = handoff.wait(None, &mut batch);
                (waited, batch.len())
            }
        });
        // Whether the writer is already waiting or not, the record reaches it.
        let (record, _answer) = marker();
        assert!(handoff.push(record));
        assert_eq!(writer.join().unwrap(), (Waited::Records, 1));
    }

    #[test]
    fn a_waiting_writer_is_woken_by_the_close() {
        let handoff = Arc::new(Handoff::default());
        let writer = std::thread::spawn({
            let handoff = handoff.clone();
            move || handoff.wait(None, &mut Vec::new())
        });
        handoff.close();
        assert_eq!(writer.join().unwrap(), Waited::Closed);
    }

    #[test]
    fn a_wait_with_a_timeout_and_nothing_queued_times_out() {
        let handoff = Handoff::default();
        let waited = handoff.wait(Some(Duration::ZERO), &mut Vec::new());
        assert_eq!(waited, Waited::TimedOut);
    }
}
