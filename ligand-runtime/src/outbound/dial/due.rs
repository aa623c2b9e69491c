//! When a pool's connections become due for retirement, so that a request takes a handle on
//! its connection (hyper-util's `capture_connection`: a watch channel per request) only when
//! the connection it gets could be due by the time the response comes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The latest time a request's response can come, on the monotonic clock and on the wall
/// clock (a certificate's `notAfter` is a wall clock time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct By {
    pub(crate) instant: Instant,
    pub(crate) wall: SystemTime,
}

impl By {
    /// `within` from now.
    pub(crate) fn within(within: Duration) -> Self {
        Self {
            instant: Instant::now() + within,
            wall: SystemTime::now() + within,
        }
    }
}

/// The due times of a pool's live connections: the earliest of them, read on every request
/// without a lock, and the list they are the minimum of.
#[derive(Debug)]
pub(crate) struct DueTimes {
    /// The origin of the `*_nanos` values.
    base: Instant,
    /// The earliest time (nanoseconds after `base`) at which a live connection reaches the
    /// maximum age; `u64::MAX` when none is registered.
    earliest_age: AtomicU64,
    /// The earliest `notAfter` (seconds after the Unix epoch) of a live connection's peer
    /// certificate; `u64::MAX` when none is registered.
    earliest_expiry: AtomicU64,
    live: Mutex<Vec<Live>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Live {
    id: u64,
    age_nanos: u64,
    expiry_secs: u64,
    /// Dead once the connection is dropped.
    alive: Weak<()>,
}

impl DueTimes {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            earliest_age: AtomicU64::new(u64::MAX),
            earliest_expiry: AtomicU64::new(u64::MAX),
            live: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Registers a connection that reaches the maximum age at `age_due` and whose peer
    /// certificate expires at `expiry`. Returns its ID and the token it keeps while alive.
    pub(crate) fn register(&self, age_due: Instant, expiry: SystemTime) -> (u64, Arc<()>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let alive = Arc::new(());
        let age_nanos = self.nanos(age_due);
        // Rounded down: "due" must never be judged later than it is.
        let expiry_secs = expiry.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Ok(mut live) = self.live.lock() {
            live.push(Live {
                id,
                age_nanos,
                expiry_secs,
                alive: Arc::downgrade(&alive),
            });
        }
        // Lowered after the push, so a concurrent recomputation cannot raise it past this one.
        self.earliest_age.fetch_min(age_nanos, Ordering::AcqRel);
        self.earliest_expiry
            .fetch_min(expiry_secs, Ordering::AcqRel);
        (id, alive)
    }

    /// Whether some live connection could be due by `by` (no clock read: the caller's
    /// deadline says when).
    pub(crate) fn may_be_due(&self, by: By) -> bool {
        let age = self.earliest_age.load(Ordering::Acquire);
        let expiry = self.earliest_expiry.load(Ordering::Acquire);
        if age == u64::MAX && expiry == u64::MAX {
            return false;
        }
        let soon = self.nanos(by.instant);
        let wall = by
            .wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        age <= soon || expiry <= wall.saturating_add(1)
    }

    /// Forgets the connection `id` (retired) and every dropped one, and recomputes the
    /// earliest times.
    pub(crate) fn refresh(&self, retired: Option<u64>) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        live.retain(|c| Some(c.id) != retired && c.alive.strong_count() > 0);
        let age = live.iter().map(|c| c.age_nanos).min().unwrap_or(u64::MAX);
        let expiry = live.iter().map(|c| c.expiry_secs).min().unwrap_or(u64::MAX);
        // Under the lock: a registration pushes under it too, then lowers the minimum.
        self.earliest_age.store(age, Ordering::Release);
        self.earliest_expiry.store(expiry, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_watched_from_a_horizon_before_it_is_due_until_it_is_gone() {
        let due = DueTimes::new();
        assert!(
            !due.may_be_due(By::within(HOUR)),
            "no connection, nothing to retire"
        );
        let far = SystemTime::now() + 10 * HOUR;
        let (first, alive) = due.register(Instant::now() + Duration::from_secs(300), far);
        assert!(!due.may_be_due(By::within(Duration::from_secs(10))));
        assert!(due.may_be_due(By::within(Duration::from_secs(300))));
        tokio::time::advance(Duration::from_secs(295)).await;
        assert!(due.may_be_due(By::within(Duration::from_secs(10))));
        // A younger connection does not hide the older one; retiring the older one does.
        let (_, young) = due.register(Instant::now() + Duration::from_secs(300), far);
        assert!(due.may_be_due(By::within(Duration::from_secs(10))));
        due.refresh(Some(first));
        assert!(!due.may_be_due(By::within(Duration::from_secs(10))));
        // A dropped connection is forgotten at the next refresh.
        drop(young);
        due.refresh(None);
        assert!(!due.may_be_due(By::within(HOUR)));
        drop(alive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_certificate_expiring_soon_makes_a_connection_due_early() {
        let due = DueTimes::new();
        let (_, _alive) = due.register(
            Instant::now() + HOUR,
            SystemTime::now() + Duration::from_secs(20),
        );
        assert!(due.may_be_due(By::within(Duration::from_secs(30))));
        // Far from it (rounding to the second errs towards watching, by a second at most).
        let other = DueTimes::new();
        let (_, _other) = other.register(Instant::now() + HOUR, SystemTime::now() + HOUR);
        assert!(!other.may_be_due(By::within(Duration::from_secs(30))));
    }
}
