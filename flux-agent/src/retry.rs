//! Waiting between tries of a step that failed: the delay before the next try
//! ([`Backoff`], over `flux_core::client::backoff`) and a sleep that the agent's stop cuts
//! short ([`stopped_during`]).
//!
//! Guarantees: a delay is jittered between zero and `base * 2^failures`, never above `cap`;
//! a stop ends the wait at once, and the caller learns that it came.

use std::time::Duration;

use flux_core::client::backoff;
use tokio_util::sync::CancellationToken;

/// The failures in a row of one retried step, and the delay they call for.
#[derive(Debug)]
pub struct Backoff {
    failures: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            failures: 0,
            base,
            cap,
        }
    }

    /// Failures counted since the start or the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and gives the delay before the next try: jittered, growing
    /// with the failures before this one, at most `cap`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = backoff(self.failures, self.base, self.cap);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// The step succeeded: the next failure waits the shortest again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Sleeps for `delay` unless `stop` comes first; true when it did (the caller should end).
pub async fn stopped_during(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_is_counted_and_a_reset_waits_the_shortest_again() {
        let (base, cap) = (Duration::from_millis(10), Duration::from_millis(40));
        let mut b = Backoff::new(base, cap);
        // The first retry waits at most `base`: the delay is taken before the failure counts.
        assert!(b.next_delay() <= base);
        assert_eq!(b.failures(), 1);
        let later: Vec<Duration> = (0..30).map(|_| b.next_delay()).collect();
        assert_eq!(b.failures(), 31);
        assert!(later.iter().all(|d| *d <= cap), "{later:?}");
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!((0..30).all(|_| {
            let d = b.next_delay();
            b.reset();
            d <= base
        }));
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_and_is_reported() {
        let stop = CancellationToken::new();
        assert!(!stopped_during(&stop, Duration::from_millis(1)).await);
        stop.cancel();
        let t0 = std::time::Instant::now();
        assert!(stopped_during(&stop, Duration::from_secs(3600)).await);
        assert!(t0.elapsed() < Duration::from_secs(60));
    }
}
