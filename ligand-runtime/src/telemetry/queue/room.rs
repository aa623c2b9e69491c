//! Waiting for a free slot in the `block` overflow mode: the requests that found the queue
//! full, and their wake-up when the writer gives slots back. The count of free slots itself
//! is the hand-off's, under its lock ([`Handoff`]); this costs the writer one load per batch
//! while nobody waits, and the request path nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::Record;
use super::handoff::{Handoff, Refused};

/// The requests waiting for room in a full queue.
#[derive(Debug, Default)]
pub(super) struct Room {
    /// Requests that found no free slot and are about to try again, or waiting to.
    waiting: AtomicUsize,
    /// Wakes a waiting request when a slot is given back, and all of them on close.
    wake: Notify,
}

impl Room {
    /// Queues `record` in `handoff`, waiting for a free slot while there is none; `false`
    /// (and the record dropped) once the hand-off is closed.
    pub(super) async fn queue(&self, handoff: &Handoff, mut record: Record) -> bool {
        loop {
            let woken = self.wake.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered, and counted, before the try below: slots given back (or a close)
            // after it wake this request, and a wake-up it does not live to use passes to
            // another.
            woken.as_mut().enable();
            let waiting = Waiting::new(&self.waiting);
            match handoff.push(record) {
                Ok(()) => return true,
                Err(Refused::Closed) => return false,
                Err(Refused::Full(back)) => record = back,
            }
            woken.await;
            drop(waiting);
        }
    }

    /// Wakes as many waiting requests as `n` slots just given back to the hand-off can take.
    ///
    /// A request counts itself waiting before it takes the hand-off's lock to try, and the
    /// writer gives the slots back under that lock before it reads the count here: either
    /// the request's try sees the slots, or this sees the request.
    pub(super) fn given_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let waiting = self.waiting.load(Ordering::SeqCst);
        for _ in 0..n.min(waiting) {
            self.wake.notify_one();
        }
    }

    /// Wakes every waiting request, to find the hand-off closed.
    pub(super) fn close(&self) {
        self.wake.notify_waiters();
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
    use crate::telemetry::queue::tests::{decision, input};

    /// Polls `future` once.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
    }

    /// A hand-off of `capacity` slots, all taken.
    fn full(capacity: usize) -> Handoff {
        let handoff = Handoff::new(capacity, capacity);
        for _ in 0..capacity {
            handoff.push(decision(input())).unwrap();
        }
        assert!(matches!(
            handoff.push(decision(input())),
            Err(Refused::Full(_))
        ));
        handoff
    }

    /// The writer's part: `n` records delivered, their slots given back.
    fn give_back(handoff: &Handoff, room: &Room, n: usize) {
        handoff.give_back(n);
        room.given_back(n);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_slot_given_back() {
        let (handoff, room) = (full(1), Room::default());
        let mut first = Box::pin(room.queue(&handoff, decision(input())));
        let mut second = Box::pin(room.queue(&handoff, decision(input())));
        assert!(poll_once(&mut first).await.is_pending());
        assert!(poll_once(&mut second).await.is_pending());
        assert_eq!(room.waiting.load(Ordering::SeqCst), 2);
        give_back(&handoff, &room, 1);
        assert_eq!(poll_once(&mut first).await, Poll::Ready(true));
        assert!(
            poll_once(&mut second).await.is_pending(),
            "one slot, one waiter"
        );
        give_back(&handoff, &room, 1);
        assert_eq!(poll_once(&mut second).await, Poll::Ready(true));
        assert_eq!(room.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(handoff.taken(), 1);
    }

    #[tokio::test]
    async fn slots_given_back_together_wake_as_many_waiters() {
        let (handoff, room) = (full(3), Room::default());
        let mut waits: Vec<_> = (0..3)
            .map(|_| Box::pin(room.queue(&handoff, decision(input()))))
            .collect();
        for wait in &mut waits {
            assert!(poll_once(wait).await.is_pending());
        }
        give_back(&handoff, &room, 2);
        let mut ready = 0;
        for wait in &mut waits {
            if poll_once(wait).await == Poll::Ready(true) {
                ready += 1;
            }
        }
        assert_eq!(ready, 2, "two slots, two of the three waiters");
        assert_eq!(handoff.taken(), 3);
        give_back(&handoff, &room, 0);
        assert_eq!(handoff.taken(), 3, "giving none back changes nothing");
    }

    #[tokio::test]
    async fn a_cancelled_wait_passes_its_wake_up_on() {
        let (handoff, room) = (full(1), Room::default());
        let mut cancelled = Box::pin(room.queue(&handoff, decision(input())));
        let mut other = Box::pin(room.queue(&handoff, decision(input())));
        assert!(poll_once(&mut cancelled).await.is_pending());
        assert!(poll_once(&mut other).await.is_pending());
        give_back(&handoff, &room, 1);
        drop(cancelled);
        assert_eq!(room.waiting.load(Ordering::SeqCst), 1, "no longer counted");
        assert_eq!(poll_once(&mut other).await, Poll::Ready(true));
    }

    #[tokio::test]
    async fn closing_ends_every_wait_and_drops_its_record() {
        let (handoff, room) = (full(1), Room::default());
        let tracked = input();
        let mut waiting = Box::pin(room.queue(&handoff, decision(tracked.clone())));
        assert!(poll_once(&mut waiting).await.is_pending());
        handoff.close();
        room.close();
        assert_eq!(poll_once(&mut waiting).await, Poll::Ready(false));
        assert_eq!(Arc::strong_count(&tracked), 1, "the record is dropped");
        assert!(
            !room.queue(&handoff, decision(input())).await,
            "a wait after the close"
        );
    }

    #[test]
    fn a_slot_given_back_while_a_request_finds_the_queue_full_is_never_missed() {
        // One slot. Each round the request queues one record, then a second while the writer
        // delivers the first and gives its slot back: whenever the second finds the slot
        // still taken, the give-back races its registration as a waiter. A missed wake-up
        // leaves it waiting for good (the writer has nothing else to give back).
        const ROUNDS: usize = 5_000;
        let handoff = Arc::new(Handoff::new(1, 1));
        let room = Arc::new(Room::default());
        let writer = {
            let (handoff, room) = (handoff.clone(), room.clone());
            std::thread::spawn(move || {
                let (mut batch, mut delivered) = (Vec::new(), 0);
                while delivered < 2 * ROUNDS {
                    handoff.take(&mut batch);
                    for _ in batch.drain(..) {
                        give_back(&handoff, &room, 1);
                        delivered += 1;
                    }
                }
            })
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for round in 0..ROUNDS {
            runtime.block_on(async {
                assert!(room.queue(&handoff, decision(input())).await);
                let second = room.queue(&handoff, decision(input()));
                let queued = tokio::time::timeout(std::time::Duration::from_secs(5), second)
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: the slot given back was missed"));
                assert!(queued);
            });
        }
        writer.join().unwrap();
        assert_eq!(handoff.taken(), 0);
    }

    #[test]
    fn waits_and_slots_given_back_from_many_threads_add_up() {
        let handoff = Arc::new(Handoff::new(2, 2));
        let room = Arc::new(Room::default());
        // A writer that gives back what the requests queue, a slot at a time.
        let writer = {
            let (handoff, room) = (handoff.clone(), room.clone());
            std::thread::spawn(move || {
                let (mut batch, mut delivered) = (Vec::new(), 0);
                while delivered < 4 * 500 {
                    handoff.take(&mut batch);
                    for _ in batch.drain(..) {
                        give_back(&handoff, &room, 1);
                        delivered += 1;
                    }
                    std::thread::yield_now();
                }
            })
        };
        let requests: Vec<_> = (0..4)
            .map(|_| {
                let (handoff, room) = (handoff.clone(), room.clone());
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    for _ in 0..500 {
                        assert!(runtime.block_on(room.queue(&handoff, decision(input()))));
                    }
                })
            })
            .collect();
        for request in requests {
            request.join().unwrap();
        }
        writer.join().unwrap();
        assert_eq!(handoff.taken(), 0, "every slot came back");
        assert_eq!(room.waiting.load(Ordering::SeqCst), 0);
    }
}
