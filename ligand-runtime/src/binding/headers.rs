//! HTTP/1.1's header read timeout, watched by the connection's own loop.
//!
//! hyper enforces the timeout with a timer per request head: a boxed sleep made, registered
//! in tokio's timer wheel (a lock) and removed again for every request, about 700
//! instructions a request, the largest single cost the binding added over a plain server.
//! Here hyper's HTTP/1.1 timer only records when the head it started reading is due (an
//! atomic store; the sleep it hands back is zero-sized, so boxing it allocates nothing), the
//! connection's service marks the head received when hyper calls it, and one watchdog per
//! connection sleeps until the recorded deadline and closes the connection if the head is
//! still awaited then: what hyper's own timeout does, at one timer per connection and
//! timeout period instead of one per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioTimer;
use tokio::time::Instant;

/// No request head is awaited.
const NONE: u64 = u64::MAX;

/// One connection's header read deadline: set when hyper starts reading a request head,
/// cleared when the head arrives.
#[derive(Debug, Clone)]
pub(crate) struct HeaderDeadline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What the deadline is counted from.
    base: Instant,
    /// The header read timeout.
    timeout: Duration,
    /// When the awaited head is due, in nanoseconds after `base`, or [`NONE`].
    due: AtomicU64,
}

impl HeaderDeadline {
    /// A connection's deadline, with no head awaited yet.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                base: Instant::now(),
                timeout,
                due: AtomicU64::new(NONE),
            }),
        }
    }

    /// The timer to give hyper's HTTP/1.1 connection.
    pub(crate) fn timer(&self) -> HeaderTimer {
        HeaderTimer {
            deadline: self.clone(),
        }
    }

    /// hyper started reading a request head, due at `deadline`.
    fn awaiting(&self, deadline: Instant) {
        let nanos = deadline
            .saturating_duration_since(self.inner.base)
            .as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(NONE - 1).min(NONE - 1);
        // Relaxed: the deadline is set and read by the connection's own task; the atomic
        // only makes the timer `Sync`, as hyper requires.
        self.inner.due.store(nanos, Ordering::Relaxed);
    }

    /// The awaited request head arrived: hyper handed the request to the service.
    pub(crate) fn received(&self) {
        self.inner.due.store(NONE, Ordering::Relaxed);
    }

    /// When the awaited head is due, if one is awaited.
    fn due(&self) -> Option<Instant> {
        match self.inner.due.load(Ordering::Relaxed) {
            NONE => None,
            nanos => Some(self.inner.base + Duration::from_nanos(nanos)),
        }
    }

    /// Completes once a request head is awaited past its deadline.
    ///
    /// Sleeping a whole timeout while no head is awaited misses none: a head whose reading
    /// starts after the watchdog went to sleep is due a whole timeout after that at the
    /// earliest, so the watchdog wakes before it is due and sleeps on until then.
    pub(crate) async fn overdue(&self) {
        loop {
            let now = Instant::now();
            let wake = match self.due() {
                Some(due) if due <= now => return,
                Some(due) => due,
                None => now + self.inner.timeout,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// hyper's timer for one connection's HTTP/1.1 side, whose server uses its timer for the
/// header read timeout alone (hyper 1.x): [`sleep_until`](Timer::sleep_until) records the
/// deadline and answers a sleep that never completes by itself; the connection's watchdog
/// ([`HeaderDeadline::overdue`]) enforces it. Any other sleep hyper asks for is a real one.
#[derive(Debug, Clone)]
pub(crate) struct HeaderTimer {
    deadline: HeaderDeadline,
}

impl Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        self.deadline.awaiting(Instant::from_std(deadline));
        Box::pin(Watched)
    }

    /// tokio's clock, so that a paused test clock moves hyper's deadlines too.
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// The sleep hyper polls while it waits for a request head: zero-sized (boxing it allocates
/// nothing) and never ready, because the connection's watchdog closes an overdue connection.
struct Watched;

impl Future for Watched {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Sleep for Watched {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_awaited_head_is_overdue_at_its_deadline_and_not_before() {
        let deadline = HeaderDeadline::new(Duration::from_secs(30));
        let timer = deadline.timer();
        let _sleep = timer.sleep_until(timer.now() + Duration::from_secs(30));
        let watchdog = deadline.overdue();
        tokio::pin!(watchdog);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_received_head_is_never_overdue_and_the_next_one_is_timed_from_its_own_start() {
        let deadline = HeaderDeadline::new(Duration::from_secs(30));
        let timer = deadline.timer();
        let _sleep = timer.sleep_until(timer.now() + Duration::from_secs(30));
        let watchdog = deadline.overdue();
        tokio::pin!(watchdog);
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        deadline.received();
        // A handler (or an idle client) may take longer than the timeout once the head is in.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        // The next head, started now, is due 30 s from now.
        let _next = timer.sleep_until(timer.now() + Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sleep_handed_to_hyper_allocates_nothing_and_never_completes() {
        assert_eq!(std::mem::size_of::<Watched>(), 0);
        let timer = HeaderDeadline::new(Duration::from_millis(1)).timer();
        let mut sleep = timer.sleep_until(timer.now());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(futures_util::poll!(sleep.as_mut()).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn any_other_sleep_is_a_real_one() {
        let timer = HeaderDeadline::new(Duration::from_secs(30)).timer();
        let mut sleep = timer.sleep(Duration::from_secs(5));
        assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(futures_util::poll!(sleep.as_mut()).is_ready());
    }
}
