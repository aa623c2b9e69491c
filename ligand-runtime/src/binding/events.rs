//! A connection's rare events (shutdown, drain deadline, peer expiry, header timeout, maximum
//! age), watched beside the connection at the cost of one flag test per wake-up.
//!
//! Every request wakes a connection's task at least once. Polling the events' set on each
//! wake-up (`tokio::select!` over the connection and a `FuturesUnordered`) registered the
//! task's waker with the set and checked its ready queue every time, about 150 instructions
//! and a few cache misses a request for events that happen once in a connection's life, if
//! ever. Here the events are polled with a waker of their own, which raises a flag and wakes
//! the task: a wake-up that did not raise it leaves them alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::Stream as _;
use futures_util::stream::FuturesUnordered;

/// What woke the connection's task: the connection ended, or an event fired.
pub(super) enum Woke<T, E> {
    Ended(T),
    Event(E),
}

/// The events' futures, each ending in the event it reports.
type EventFuture<'a, E> = Pin<Box<dyn Future<Output = E> + Send + 'a>>;

/// A connection and its events: polled together, the connection first.
pub(super) struct Watched<'a, C, E> {
    connection: Pin<&'a mut C>,
    events: FuturesUnordered<EventFuture<'a, E>>,
    signal: Arc<Signal>,
    /// `signal` as a waker: what the events are polled with.
    events_waker: Waker,
    /// The task's waker that `signal` holds, to tell when the task's waker changes.
    registered: Option<Waker>,
}

/// Raised by an event's wake-up, which also wakes the connection's task.
#[derive(Debug)]
struct Signal {
    raised: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<'a, C: Future, E> Watched<'a, C, E> {
    pub(super) fn new(connection: Pin<&'a mut C>) -> Self {
        // Raised from the start: the first poll polls every event, which registers its waker.
        let signal = Arc::new(Signal {
            raised: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            connection,
            events: FuturesUnordered::new(),
            events_waker: Waker::from(signal.clone()),
            signal,
            registered: None,
        }
    }

    /// Adds an event, before the first [`next`](Self::next).
    pub(super) fn push(&mut self, event: impl Future<Output = E> + Send + 'a) {
        self.events.push(Box::pin(event));
        self.signal.raised.store(true, Ordering::Release);
    }

    /// The connection, to close it gracefully.
    pub(super) fn connection(&mut self) -> Pin<&mut C> {
        self.connection.as_mut()
    }

    /// Waits until the connection ends or an event fires.
    pub(super) async fn next(&mut self) -> Woke<C::Output, E> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Woke<C::Output, E>> {
        // A task's waker is the same on every poll; it is handed to the signal again only when
        // it changes.
        if !self
            .registered
            .as_ref()
            .is_some_and(|registered| registered.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *self
                .signal
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
            self.registered = Some(waker);
        }
        if let Poll::Ready(ended) = self.connection.as_mut().poll(cx) {
            return Poll::Ready(Woke::Ended(ended));
        }
        // Lowered before the events are polled: a wake-up during the poll raises it again. Read
        // first, as it is almost always down: a swap would be a locked write on every poll.
        // A raise this load misses wakes the task again, and the next poll sees it.
        if self.signal.raised.load(Ordering::Relaxed)
            && self.signal.raised.swap(false, Ordering::Acquire)
        {
            let mut events_cx = Context::from_waker(&self.events_waker);
            // `None` once every event has fired: nothing is left to wake the signal.
            if let Poll::Ready(Some(event)) = Pin::new(&mut self.events).poll_next(&mut events_cx) {
                // Another event may be ready too: poll the set again on the next call.
                self.signal.raised.store(true, Ordering::Release);
                return Poll::Ready(Woke::Event(event));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// A connection that ends when told.
    fn connection() -> (oneshot::Sender<u8>, impl Future<Output = u8>) {
        let (end, ended) = oneshot::channel();
        (end, async move { ended.await.unwrap() })
    }

    #[tokio::test]
    async fn an_event_that_fires_later_wakes_the_task() {
        let (_end, connection) = connection();
        let connection = std::pin::pin!(connection);
        let mut watched = Watched::new(connection);
        let (fire, fired) = oneshot::channel::<&str>();
        watched.push(async move { fired.await.unwrap() });
        // Fired from another task once this one waits: only the event's waker can wake it.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fire.send("stop").unwrap();
        });
        match tokio::time::timeout(Duration::from_secs(5), watched.next()).await {
            Ok(Woke::Event(event)) => assert_eq!(event, "stop"),
            Ok(Woke::Ended(_)) => panic!("the connection did not end"),
            Err(_) => panic!("the event's wake-up was lost"),
        }
    }

    #[tokio::test]
    async fn the_connection_ending_wins_and_events_ready_together_all_arrive() {
        let (end, connection) = connection();
        let connection = std::pin::pin!(connection);
        let mut watched = Watched::new(connection);
        watched.push(std::future::ready("first"));
        watched.push(std::future::ready("second"));
        let mut events = vec![];
        for _ in 0..2 {
            match watched.next().await {
                Woke::Event(event) => events.push(event),
                Woke::Ended(_) => panic!("the connection did not end"),
            }
        }
        events.sort_unstable();
        assert_eq!(events, ["first", "second"]);
        end.send(7).unwrap();
        match watched.next().await {
            Woke::Ended(ended) => assert_eq!(ended, 7),
            Woke::Event(_) => panic!("no event was left"),
        }
    }

    #[tokio::test]
    async fn a_pending_event_is_not_polled_again_until_its_waker_fires() {
        let (end, connection) = connection();
        let connection = std::pin::pin!(connection);
        let mut watched = Watched::new(connection);
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = polls.clone();
        watched.push(std::future::poll_fn(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            Poll::<&str>::Pending
        }));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..3 {
            assert!(watched.poll_next(&mut cx).is_pending());
        }
        // Polled once, on the first poll, which registered the event's waker.
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        end.send(1).unwrap();
        assert!(matches!(
            watched.poll_next(&mut cx),
            Poll::Ready(Woke::Ended(1))
        ));
    }
}
