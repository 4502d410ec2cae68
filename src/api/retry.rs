//! When to try an API call again and how long to wait first: exponential backoff with
//! jitter (so two CI jobs that failed together do not retry together), at least what the
//! server's `Retry-After` asks, never more than a cap. Which failures are worth another
//! try, and which may have been applied by the server anyway, is [`super::Error`]'s call
//! (`is_transient`, `may_have_applied`).

use std::sync::Mutex;
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Extra attempts after the first.
    pub retries: u32,
    /// The first pause; it doubles with every attempt.
    pub backoff: Duration,
    /// No pause is longer, whatever `Retry-After` says.
    pub max_pause: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retries: 3,
            backoff: Duration::from_millis(250),
            max_pause: Duration::from_secs(30),
        }
    }
}

/// `Retry-After` in seconds. The HTTP-date form is not worth a date parser here: it is
/// read as "no advice" and the backoff applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A small xorshift generator for jitter: no cryptography, just spread.
#[derive(Debug)]
pub struct Jitter(Mutex<u64>);

impl Jitter {
    pub fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter::seeded(t ^ (u64::from(std::process::id()) << 32))
    }

    pub fn seeded(seed: u64) -> Self {
        Jitter(Mutex::new(seed | 1))
    }

    /// A number in `[0, 1)`.
    fn next(&self) -> f64 {
        let mut x = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

impl Policy {
    /// The pause after failed attempt `attempt` (1 for the first): half to all of
    /// `backoff * 2^(attempt-1)`, at least `retry_after`, both capped at `max_pause`.
    pub fn pause(&self, attempt: u32, retry_after: Option<Duration>, jitter: &Jitter) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_pause);
        let jittered = exp.mul_f64(0.5 + 0.5 * jitter.next());
        match retry_after {
            Some(ra) => ra.min(self.max_pause).max(jittered),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_jitter_and_honour_retry_after_within_the_cap() {
        let p = Policy {
            retries: 5,
            backoff: Duration::from_millis(100),
            max_pause: Duration::from_secs(2),
        };
        let j = Jitter::seeded(42);
        let mut seen = Vec::new();
        for attempt in 1..=6 {
            let d = p.pause(attempt, None, &j);
            let full = Duration::from_millis(100 * (1 << (attempt - 1))).min(p.max_pause);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?} vs {full:?}");
            seen.push(d);
        }
        // Jitter: not the same fraction every time.
        let fracs: Vec<u128> = seen
            .iter()
            .take(4)
            .enumerate()
            .map(|(i, d)| d.as_micros() * 1000 / (100_000u128 << i))
            .collect();
        assert!(fracs.windows(2).any(|w| w[0] != w[1]), "{fracs:?}");
        // Retry-After wins when longer, and is capped.
        assert_eq!(
            p.pause(1, Some(Duration::from_secs(1)), &j),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.pause(1, Some(Duration::from_secs(3600)), &j),
            Duration::from_secs(2)
        );
        assert!(p.pause(1, Some(Duration::ZERO), &j) >= Duration::from_millis(50));
    }

    #[test]
    fn retry_after_is_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
