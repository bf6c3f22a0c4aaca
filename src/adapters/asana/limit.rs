//! The client-side limiter: Asana's documented limits, kept on our side so
//! that many apps on one token (one daemon, one client) never provoke a
//! storm of 429s (`../shared/asana/API-FACTS.md` §3): at most
//! `requests_per_minute` requests in any 60 seconds (150 on a free
//! workspace, 1500 on a paid one), at most 50 reads and 15 writes in flight
//! (separate pools), and when Asana answers 429 anyway, every caller waits
//! out its `Retry-After`, not only the one that got it.
//!
//! It only delays requests; it never refuses one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

pub use crate::config::AsanaLimits as Limits;

/// The requests sent in the last minute.
#[derive(Debug)]
pub struct Window {
    per_minute: u32,
    sent: VecDeque<Instant>,
}

impl Window {
    pub fn new(per_minute: u32) -> Window {
        Window {
            per_minute: per_minute.max(1),
            sent: VecDeque::new(),
        }
    }

    /// Takes a slot at `now` if the last minute has room (`None`), else
    /// says how long until the oldest request leaves it.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        const MINUTE: Duration = Duration::from_secs(60);
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= MINUTE)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.per_minute as usize {
            self.sent.push_back(now);
            return None;
        }
        let oldest = *self.sent.front()?;
        Some(MINUTE.saturating_sub(now.saturating_duration_since(oldest)))
    }
}

/// One token's limiter, shared by every caller of the client.
#[derive(Debug)]
pub struct Limiter {
    reads: Semaphore,
    writes: Semaphore,
    window: Mutex<Window>,
    /// Asana said 429: nobody sends before then.
    quiet_until: Mutex<Option<Instant>>,
}

/// A request may go; its pool's place is held until this is dropped.
pub struct Slot<'a> {
    _permit: Option<SemaphorePermit<'a>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Limiter {
    pub fn new(l: Limits) -> Limiter {
        Limiter {
            reads: Semaphore::new(l.reads.max(1)),
            writes: Semaphore::new(l.writes.max(1)),
            window: Mutex::new(Window::new(l.per_minute)),
            quiet_until: Mutex::new(None),
        }
    }

    /// Waits until a request (a write or not) may be sent.
    pub async fn slot(&self, write: bool) -> Slot<'_> {
        let pool = if write { &self.writes } else { &self.reads };
        let permit = pool.acquire().await.ok();
        loop {
            let quiet = *lock(&self.quiet_until);
            if let Some(until) = quiet.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let wait = lock(&self.window).take(Instant::now());
            match wait {
                None => break,
                Some(d) => {
                    tracing::debug!(
                        wait_ms = d.as_millis() as u64,
                        "asana: requests_per_minute reached; waiting"
                    );
                    tokio::time::sleep(d).await;
                }
            }
        }
        Slot { _permit: permit }
    }

    /// Asana answered 429 with this `Retry-After`: every caller waits.
    pub fn quiet_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut q = lock(&self.quiet_until);
        if q.is_none_or(|u| u < until) {
            *q = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_at_most_per_minute_requests_in_any_sixty_seconds() {
        let t0 = Instant::now();
        let mut w = Window::new(3);
        for i in 0..3 {
            assert_eq!(w.take(t0 + Duration::from_secs(i)), None);
        }
        // The 4th within the minute waits until the first leaves it.
        assert_eq!(
            w.take(t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(w.take(t0 + Duration::from_secs(60)), None);
        assert_eq!(
            w.take(t0 + Duration::from_secs(60)),
            Some(Duration::from_secs(1))
        );
    }

    #[tokio::test]
    async fn writes_and_reads_have_their_own_pools() {
        let l = Limiter::new(Limits {
            per_minute: 1000,
            reads: 2,
            writes: 1,
        });
        let w = l.slot(true).await;
        // The write pool is full; the reads' is not.
        assert_eq!(l.writes.available_permits(), 0);
        let _r1 = l.slot(false).await;
        let _r2 = l.slot(false).await;
        assert_eq!(l.reads.available_permits(), 0);
        drop(w);
        assert_eq!(l.writes.available_permits(), 1);
    }
}
