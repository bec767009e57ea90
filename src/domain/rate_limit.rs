//! A webhook's `rateLimit`: at most so many deliveries a second, however many processes
//! send them.
//!
//! The endpoint's schedule is one number kept with it, the theoretical arrival time of the
//! next delivery (GCRA, the generic cell rate algorithm): a send takes the slot at that
//! time (or now, if it is past) and moves it one interval on. Sends are spaced evenly, so
//! no second ever holds more than the limit, and the schedule is a single value that
//! replicas move with a compare-and-set. A send reserves a slot only a little ahead; a
//! delivery whose slot is further off goes back to the queue, pending, until then.

use chrono::{DateTime, Utc};

use super::FieldError;

/// The highest `rateLimit` accepted: beyond it, the dispatcher's own limits bind first.
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// How far ahead a send may reserve its slot and wait for it, in microseconds. Longer
/// would hold more sends (and their endpoint's concurrency slots) waiting; shorter sends
/// more deliveries back to the queue, and the time a claim takes between two rounds of
/// slots then shows as gaps below the rate.
const HORIZON_MICROS: i64 = 1_000_000;

/// Deliveries per second to one endpoint, 1 to [`MAX_RATE_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(u32);

impl RateLimit {
    pub fn new(per_second: u64, field: &str) -> Result<Self, FieldError> {
        match u32::try_from(per_second) {
            Ok(n @ 1..=MAX_RATE_LIMIT) => Ok(Self(n)),
            _ => Err(FieldError::new(
                field,
                format!(
                    "must be between 1 and {MAX_RATE_LIMIT} deliveries per second (leave it out for no limit)"
                ),
            )),
        }
    }

    pub fn per_second(self) -> u32 {
        self.0
    }

    fn interval_micros(self) -> i64 {
        1_000_000 / i64::from(self.0)
    }
}

/// What a send may do, given the endpoint's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Send at `send_at` (now or a little later); the schedule moves to `next`.
    Granted { send_at: DateTime<Utc>, next: i64 },
    /// No slot near enough: the delivery waits in the queue until `until`.
    Held { until: DateTime<Utc> },
}

/// The slot of one send at `now` on a schedule whose next free slot is `scheduled`
/// (microseconds since the epoch; 0 for an endpoint never sent to).
pub fn reserve(limit: RateLimit, scheduled: i64, now: DateTime<Utc>) -> Reservation {
    let now_us = now.timestamp_micros();
    let slot = scheduled.max(now_us);
    if slot - now_us <= HORIZON_MICROS {
        Reservation::Granted {
            send_at: at(slot),
            next: slot + limit.interval_micros(),
        }
    } else {
        Reservation::Held {
            until: at(slot - HORIZON_MICROS),
        }
    }
}

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(n: u64) -> RateLimit {
        RateLimit::new(n, "rateLimit").unwrap()
    }

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_limit_is_checked_with_its_field() {
        for bad in [0, 10_001, u64::MAX] {
            let e = RateLimit::new(bad, "rateLimit").unwrap_err();
            assert_eq!(e.field, "rateLimit");
        }
        assert_eq!(limit(1).per_second(), 1);
        assert_eq!(limit(10_000).per_second(), 10_000);
    }

    #[test]
    fn an_idle_endpoint_is_sent_to_at_once() {
        match reserve(limit(20), 0, t(0)) {
            Reservation::Granted { send_at, next } => {
                assert_eq!(send_at, t(0));
                assert_eq!(next, t(50).timestamp_micros());
            }
            held => panic!("{held:?}"),
        }
    }

    /// However many sends ask at the same instant, one second holds at most the limit.
    #[test]
    fn sends_asking_together_are_spaced_by_the_interval() {
        let mut scheduled = 0;
        let mut sent = Vec::new();
        let mut held = 0;
        for _ in 0..100 {
            match reserve(limit(20), scheduled, t(0)) {
                Reservation::Granted { send_at, next } => {
                    sent.push(send_at);
                    scheduled = next;
                }
                Reservation::Held { until } => {
                    assert!(until > t(0));
                    held += 1;
                }
            }
        }
        // Slots at 0, 50, …, 1,000 ms: 21 within the horizon, the rest go back.
        assert_eq!(sent.len(), 21);
        assert_eq!(held, 79);
        for pair in sent.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::milliseconds(50));
        }
    }

    #[test]
    fn a_held_delivery_comes_back_when_its_slot_is_within_reach() {
        let scheduled = t(3_000).timestamp_micros();
        let Reservation::Held { until } = reserve(limit(1), scheduled, t(0)) else {
            panic!("held");
        };
        assert_eq!(until, t(2_000));
        assert!(matches!(
            reserve(limit(1), scheduled, until),
            Reservation::Granted { send_at, .. } if send_at == t(3_000)
        ));
    }

    #[test]
    fn a_schedule_in_the_past_does_not_allow_a_burst() {
        let long_ago = t(-60_000).timestamp_micros();
        let Reservation::Granted { send_at, next } = reserve(limit(10), long_ago, t(0)) else {
            panic!("granted");
        };
        assert_eq!(send_at, t(0));
        assert_eq!(next, t(100).timestamp_micros());
    }
}
