//! The queue's slots: how many are free, in one atomic counter, and the wait for one in the
//! `block` overflow mode, which costs the writer one load per record while nobody waits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The slots of a bounded queue whose records are carried by an unbounded channel: a record
/// takes one before it is sent and the receiver gives it back once done with the record.
#[derive(Debug)]
pub(super) struct Slots {
    capacity: usize,
    free: AtomicUsize,
    /// Requests that found no free slot and are about to wait, or waiting, for one.
    waiting: AtomicUsize,
    /// Wakes a waiting request when a slot is given back, and all of them on close.
    wake: Notify,
    closed: AtomicBool,
}

impl Slots {
    /// `capacity` free slots (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            free: AtomicUsize::new(capacity),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Takes a free slot; `false` when there is none.
    #[inline]
    pub(super) fn try_take(&self) -> bool {
        // The count guards no memory of its own (the channel carries the records), so no
        // ordering beyond the count's.
        self.free
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |free| {
                free.checked_sub(1)
            })
            .is_ok()
    }

    /// Gives `n` slots back, and wakes as many requests waiting for one, if there are any.
    ///
    /// The writer gives a batch's slots back at once: one update of the count per batch
    /// rather than per record, on the cache line every request's [`try_take`](Self::try_take)
    /// updates too.
    #[inline]
    pub(super) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.free.fetch_add(n, Ordering::SeqCst);
        // With `take`'s `waiting` then `free`, all four `SeqCst`: either a waiter sees these
        // slots or this sees the waiter.
        let waiting = self.waiting.load(Ordering::SeqCst);
        for _ in 0..n.min(waiting) {
            self.wake.notify_one();
        }
    }

    /// Waits for a free slot and takes it; `false` once the slots are closed.
    pub(super) async fn take(&self) -> bool {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            if self.try_take() {
                return true;
            }
            let woken = self.wake.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the checks below: a slot given back (or a close) after them
            // wakes this request, and a wake-up it does not live to use passes to another.
            woken.as_mut().enable();
            let _waiting = Waiting::new(&self.waiting);
            if self.free.load(Ordering::SeqCst) == 0 && !self.closed.load(Ordering::SeqCst) {
                woken.await;
            }
        }
    }

    /// Wakes every waiting request to give up; later waits return at once. Slots are still
    /// taken and given back as before.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Slots taken and not given back yet.
    pub(super) fn taken(&self) -> usize {
        self.capacity
            .saturating_sub(self.free.load(Ordering::Relaxed))
    }
}

/// A request counted in `waiting` while this lives, even if its wait is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::task::Poll;

    use super::*;

    /// Polls `future` once.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
    }

    #[test]
    fn slots_are_taken_until_none_is_free_and_given_back() {
        let slots = Slots::new(2);
        assert!(slots.try_take());
        assert!(slots.try_take());
        assert!(!slots.try_take(), "both taken");
        assert_eq!(slots.taken(), 2);
        slots.give_back(1);
        assert_eq!(slots.taken(), 1);
        assert!(slots.try_take());
        assert!(!slots.try_take());
    }

    #[test]
    fn a_queue_has_at_least_one_slot() {
        let slots = Slots::new(0);
        assert!(slots.try_take());
        assert!(!slots.try_take());
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_slot_given_back() {
        let slots = Arc::new(Slots::new(1));
        assert!(slots.try_take());
        let mut first = Box::pin(slots.take());
        let mut second = Box::pin(slots.take());
        assert!(poll_once(&mut first).await.is_pending());
        assert!(poll_once(&mut second).await.is_pending());
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 2);
        slots.give_back(1);
        assert_eq!(poll_once(&mut first).await, Poll::Ready(true));
        assert!(
            poll_once(&mut second).await.is_pending(),
            "one slot, one waiter"
        );
        slots.give_back(1);
        assert_eq!(poll_once(&mut second).await, Poll::Ready(true));
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(slots.taken(), 1);
    }

    #[tokio::test]
    async fn slots_given_back_together_wake_as_many_waiters() {
        let slots = Arc::new(Slots::new(3));
        for _ in 0..3 {
            assert!(slots.try_take());
        }
        let mut waits: Vec<_> = (0..3).map(|_| Box::pin(slots.take())).collect();
        for wait in &mut waits {
            assert!(poll_once(wait).await.is_pending());
        }
        slots.give_back(2);
        let mut ready = 0;
        for wait in &mut waits {
            if poll_once(wait).await == Poll::Ready(true) {
                ready += 1;
            }
        }
        assert_eq!(ready, 2, "two slots, two of the three waiters");
        assert_eq!(slots.taken(), 3);
        slots.give_back(0);
        assert_eq!(slots.taken(), 3, "giving none back changes nothing");
    }

    #[tokio::test]
    async fn a_cancelled_wait_passes_its_wake_up_on() {
        let slots = Arc::new(Slots::new(1));
        assert!(slots.try_take());
        let mut cancelled = Box::pin(slots.take());
        let mut other = Box::pin(slots.take());
        assert!(poll_once(&mut cancelled).await.is_pending());
        assert!(poll_once(&mut other).await.is_pending());
        slots.give_back(1);
        drop(cancelled);
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 1, "no longer counted");
        assert_eq!(poll_once(&mut other).await, Poll::Ready(true));
    }

    #[tokio::test]
    async fn closing_ends_every_wait() {
        let slots = Arc::new(Slots::new(1));
        assert!(slots.try_take());
        let mut waiting = Box::pin(slots.take());
        assert!(poll_once(&mut waiting).await.is_pending());
        slots.close();
        assert_eq!(poll_once(&mut waiting).await, Poll::Ready(false));
        assert!(!slots.take().await, "a wait after the close");
    }

    #[test]
    fn slots_taken_and_given_back_from_many_threads_add_up() {
        let slots = Arc::new(Slots::new(8));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let slots = slots.clone();
                std::thread::spawn(move || {
                    let mut taken = 0;
                    for _ in 0..10_000 {
                        if slots.try_take() {
                            taken += 1;
                            slots.give_back(1);
                        }
                    }
                    taken
                })
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(taken > 0);
        assert_eq!(slots.taken(), 0, "every slot came back");
    }
}
