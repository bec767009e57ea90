//! The service's notion of "now": UTC, truncated to the millisecond the database keeps,
//! so a value read back equals the value that was written.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// A strictly increasing number (microseconds since the epoch, bumped on ties) that orders
/// operations first-in, first-out even when several are created in the same millisecond.
pub fn queue_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn queue_order_strictly_increases() {
        let a = super::queue_order();
        let b = super::queue_order();
        assert!(b > a);
    }
}
