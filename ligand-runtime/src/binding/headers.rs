//! HTTP/1.1's header read timeout, watched by the connection's own loop.
//!
//! hyper enforces the timeout with a timer per request head: a boxed sleep made, registered
//! in tokio's timer wheel (a lock) and removed again for every request; and to start that
//! timer as soon as a response is written, it reads the socket once more after every
//! response, a read that finds nothing (a system call and about 550 instructions). Together
//! the largest cost the binding added over a plain server.
//!
//! Here hyper's own timeout is off. The connection's service counts the requests in flight:
//! the count rises when hyper hands the service a request (its head has arrived) and falls
//! when hyper drops the response body (the response is written); when it falls to zero, the
//! next head is due one timeout later. One watchdog per connection sleeps until that deadline
//! and closes the connection if the head is still awaited then: what hyper's timeout does, at
//! one timer per connection and timeout period instead of one per request. One difference:
//! hyper started its timer only once it had read what was left of a request body its handler
//! did not read; here that reading counts towards the next head's time. A connection that
//! negotiated HTTP/2 has no header read timeout, as before (hyper's pings watch it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::PeerService;

/// No request head is awaited.
const NONE: u64 = u64::MAX;

/// The longest header read timeout counted: about 136 years.
const LONGEST: Duration = Duration::from_secs(1 << 32);

/// One HTTP/1.1 connection's header read deadline: set when the connection opens and each
/// time its last response is written, cleared when a request arrives.
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
    /// The same in nanoseconds, which [`awaiting`](HeaderDeadline::awaiting) adds: once a
    /// request, where `Instant + Duration` and a 128-bit `as_nanos` cost several times the
    /// arithmetic on a `u64`.
    timeout_nanos: u64,
    /// When the awaited head is due, in nanoseconds after `base`, or [`NONE`].
    due: AtomicU64,
    /// Requests handed to the service whose response body has not been dropped yet.
    in_flight: AtomicUsize,
}

// Relaxed orderings throughout: the deadline is set and read by the connection's own task
// (hyper drops response bodies there too); the atomics only make it `Sync`, as hyper
// requires of a service.
impl HeaderDeadline {
    /// A new connection's deadline: its first request head is due one `timeout` from now.
    /// A timeout beyond [`LONGEST`] counts as that: as good as none, and no deadline made
    /// from it overflows an `Instant`.
    pub(crate) fn new(timeout: Duration) -> Self {
        let timeout = timeout.min(LONGEST);
        let deadline = Self {
            inner: Arc::new(Inner {
                base: Instant::now(),
                timeout,
                timeout_nanos: nanos(timeout),
                due: AtomicU64::new(NONE),
                in_flight: AtomicUsize::new(0),
            }),
        };
        deadline.awaiting(deadline.inner.base);
        deadline
    }

    /// The next request head is awaited from `since`.
    fn awaiting(&self, since: Instant) {
        let since = nanos(since.saturating_duration_since(self.inner.base));
        let due = since.saturating_add(self.inner.timeout_nanos).min(NONE - 1);
        self.inner.due.store(due, Ordering::Relaxed);
    }

    /// A request head arrived: hyper handed the request to the service. The request is in
    /// flight until the returned guard drops.
    fn received(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        self.inner.due.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
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
    /// Sleeping a whole timeout while no head is awaited misses none: a head awaited from
    /// after the watchdog went to sleep is due a whole timeout after that at the earliest, so
    /// the watchdog wakes before it is due and sleeps on until then.
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

/// `duration` in nanoseconds, saturating (at 584 years).
fn nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

/// One request in flight on a connection. Dropped with the response body once hyper has
/// written it, or with the response future when the request ends without one (the
/// connection closing): with none left in flight, the next head is awaited from then.
struct InFlight(HeaderDeadline);

impl Drop for InFlight {
    fn drop(&mut self) {
        let inner = &self.0.inner;
        if inner.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.awaiting(Instant::now());
        }
    }
}

/// A connection's service: the enforced [`PeerService`], and on an HTTP/1.1 connection the
/// requests counted in and out of its [`HeaderDeadline`].
#[derive(Debug, Clone)]
pub(crate) struct ConnectionService {
    service: PeerService,
    headers: Option<HeaderDeadline>,
}

impl ConnectionService {
    /// `service`, counting its requests on `headers` when there is one.
    pub(crate) fn new(service: PeerService, headers: Option<HeaderDeadline>) -> Self {
        Self { service, headers }
    }
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<Answered>;
    type Error = std::convert::Infallible;
    type Future = Responding;

    fn call(&self, request: http::Request<Incoming>) -> Responding {
        Responding {
            in_flight: self.headers.as_ref().map(HeaderDeadline::received),
            response: self.service.call(request),
        }
    }
}

/// The enforced service's response future, which hands its request's [`InFlight`] guard to
/// the response body.
pub(crate) struct Responding {
    response: <PeerService as hyper::service::Service<http::Request<Incoming>>>::Future,
    in_flight: Option<InFlight>,
}

impl Future for Responding {
    type Output = Result<http::Response<Answered>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let response = std::task::ready!(Pin::new(&mut this.response).poll(cx));
        Poll::Ready(response.map(|response| {
            response.map(|body| Answered {
                body,
                _in_flight: this.in_flight.take(),
            })
        }))
    }
}

/// A response body that, when hyper drops it, takes its request out of flight.
pub(crate) struct Answered {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for Answered {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_due_one_timeout_after_the_connection_opens() {
        let deadline = HeaderDeadline::new(Duration::from_secs(30));
        let watchdog = deadline.overdue();
        tokio::pin!(watchdog);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn no_head_is_overdue_while_a_request_is_in_flight_and_the_next_is_timed_from_its_answer()
    {
        let deadline = HeaderDeadline::new(Duration::from_secs(30));
        let watchdog = deadline.overdue();
        tokio::pin!(watchdog);
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let request = deadline.received();
        // A handler (or a response body) may take longer than the timeout.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        // Answered at 110 s: the next head is due at 140 s.
        drop(request);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_restarts_only_when_the_last_request_in_flight_is_answered() {
        let deadline = HeaderDeadline::new(Duration::from_secs(30));
        let first = deadline.received();
        let second = deadline.received();
        drop(first);
        assert_eq!(deadline.due(), None);
        drop(second);
        assert_eq!(
            deadline.due(),
            Some(Instant::now() + Duration::from_secs(30))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_too_long_for_an_instant_never_comes_due_and_never_overflows() {
        let deadline = HeaderDeadline::new(Duration::MAX);
        let watchdog = deadline.overdue();
        tokio::pin!(watchdog);
        // With a request in flight, the watchdog sleeps a whole timeout.
        let request = deadline.received();
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
        drop(request);
        let due = deadline.due().unwrap();
        assert!(due > Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
        assert!(futures_util::poll!(watchdog.as_mut()).is_pending());
    }
}
