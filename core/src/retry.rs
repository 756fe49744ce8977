//! The lock retry policy: how long a change waits before it tries again after
//! a lock timeout.

/// Milliseconds to wait before lock retry `attempt` (1-based): 100 ms doubling
/// to at most 5 s, scaled by `jitter` in [0, 1) to between 50% and 100%, so
/// concurrent deployers do not retry in step.
pub fn retry_backoff_ms(attempt: u32, jitter: f64) -> u64 {
    let base = 100u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(10))
        .min(5_000);
    let scale = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    (base as f64 * scale) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        assert_eq!(retry_backoff_ms(1, 0.999_999), 99);
        assert_eq!(retry_backoff_ms(1, 0.0), 50);
        assert_eq!(retry_backoff_ms(2, 0.0), 100);
        assert_eq!(retry_backoff_ms(3, 0.0), 200);
        assert_eq!(retry_backoff_ms(30, 0.0), 2_500);
        assert!(retry_backoff_ms(30, 1.0) <= 5_000);
    }
}
