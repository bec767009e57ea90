//! How many deliveries one endpoint is sent at once. An endpoint starts at a quarter of
//! the configured most (`RELAIS_ENDPOINT_CONCURRENCY`) and earns one more slot each time
//! it answers quickly while deliveries wait for it, so a fast receiver takes a stream as
//! fast as it comes; an answer that shows strain (none, 429, a server error, or a slow
//! one) takes a tenth of its slots back, down to the quarter it started from. An endpoint
//! that is merely slow earns nothing: it keeps its starting share of the dispatcher.
//!
//! The limit only ever moves between the start and the most, so whatever it learned, a
//! crash sends again at most the configured most to one endpoint.
//!
//! A delivery that finds all of its endpoint's slots taken waits for one in memory, holding
//! one of the dispatcher's slots, only while the wait it can expect is short; otherwise it
//! goes back to the queue, due when the endpoint, at the pace it answers, should be free
//! for it. So a slow endpoint with a backlog holds its own slots and a few waiting, not
//! the dispatcher's, and other endpoints' deliveries (other tenants') are not held up.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::delivery::AttemptResult;

/// The longest a delivery is expected to wait in memory for one of its endpoint's slots.
pub const LONGEST_WAIT: Duration = Duration::from_millis(250);

/// An answer within this earns a slot, if deliveries were waiting for the endpoint.
pub const QUICK_ANSWER: Duration = Duration::from_millis(250);
/// An answer slower than this counts as strain.
pub const SLOW_ANSWER: Duration = Duration::from_secs(1);

/// Where one endpoint's limit may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointBounds {
    pub start: usize,
    pub most: usize,
}

impl EndpointBounds {
    /// Bounds for a configured most: the start is a quarter of it, at least one.
    pub fn up_to(most: usize) -> Self {
        let most = most.max(1);
        EndpointBounds {
            start: (most / 4).max(1),
            most,
        }
    }

    /// One at a time, whatever happens (Slack's incoming webhooks).
    pub fn one_at_a_time() -> Self {
        EndpointBounds { start: 1, most: 1 }
    }
}

/// What an answer says about the endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Answered quickly and without complaint.
    Light,
    /// Answered, slowly but within [`SLOW_ANSWER`], or quickly with a refusal that is not
    /// about load (a 4xx other than 429).
    Steady,
    /// No answer, 429, a server error, or an answer after [`SLOW_ANSWER`].
    Strained,
}

/// How `result`, answered after `latency`, reads.
pub fn load_of(result: &AttemptResult, latency: Duration) -> Load {
    match result {
        AttemptResult::NoResponse { .. } => Load::Strained,
        AttemptResult::Status { code, .. } if *code == 429 || *code >= 500 => Load::Strained,
        _ if latency > SLOW_ANSWER => Load::Strained,
        AttemptResult::Status {
            code: 200..=299, ..
        } if latency <= QUICK_ANSWER => Load::Light,
        AttemptResult::Status { .. } => Load::Steady,
    }
}

/// The endpoint's next limit after an answer. `waited`: whether the delivery answered had
/// to wait for one of the endpoint's slots, that is, whether more would have been sent
/// had the limit been higher.
pub fn next_limit(current: usize, bounds: EndpointBounds, load: Load, waited: bool) -> usize {
    let next = match load {
        Load::Light if waited => current + 1,
        Load::Light | Load::Steady => current,
        // At least one back, so that strain always shows.
        Load::Strained => current - (current / 10).max(1).min(current),
    };
    next.clamp(bounds.start, bounds.most.max(bounds.start))
}

/// An endpoint's typical answer time, moved by one more answer: an average that gives the
/// latest answer an eighth of the weight, so one odd answer moves it little.
pub fn typical_answer(before: Option<Duration>, latest: Duration) -> Duration {
    match before {
        None => latest,
        Some(before) => (before * 7 + latest) / 8,
    }
}

/// What to expect of an endpoint's next answer: its typical answer time, or, when its
/// slots have all been taken for longer without an answer coming back (`silent_for`), that
/// long: a receiver that hangs shows it before its first request times out.
pub fn expected_answer(typical: Option<Duration>, silent_for: Duration) -> Duration {
    typical.unwrap_or_default().max(silent_for)
}

/// Whether a delivery that finds its endpoint's `limit` slots all taken, with `waiting`
/// others already waiting, waits for one in memory: only while the wait to expect, at
/// `limit` answers per `answer_time`, is within [`LONGEST_WAIT`].
pub fn waits_in_memory(waiting: usize, limit: usize, answer_time: Duration) -> bool {
    let rounds = (waiting / limit.max(1)).saturating_add(1);
    answer_time.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX)) <= LONGEST_WAIT
}

/// When a delivery sent back to the queue for its busy endpoint is due again: the
/// endpoint's parked deliveries are spaced at the pace it answers (`limit` per
/// `answer_time`), each after the one parked before (`last`), so they come back as it
/// can take them rather than all at once. At most an hour away.
pub fn parked_until(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    limit: usize,
    answer_time: Duration,
) -> DateTime<Utc> {
    let spacing = answer_time / u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
    let spacing = chrono::Duration::from_std(spacing.min(Duration::from_secs(3600)))
        .unwrap_or_else(|_| chrono::Duration::hours(1));
    let after = last.filter(|last| *last > now).unwrap_or(now);
    (after + spacing).min(now + chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Status {
            code,
            retry_after: None,
        }
    }

    const QUICK: Duration = Duration::from_millis(20);

    #[test]
    fn bounds_start_at_a_quarter_of_the_most_and_never_below_one() {
        assert_eq!(
            EndpointBounds::up_to(128),
            EndpointBounds {
                start: 32,
                most: 128
            }
        );
        assert_eq!(EndpointBounds::up_to(16).start, 4);
        assert_eq!(
            EndpointBounds::up_to(3),
            EndpointBounds { start: 1, most: 3 }
        );
        assert_eq!(
            EndpointBounds::up_to(0),
            EndpointBounds { start: 1, most: 1 }
        );
    }

    #[test]
    fn answers_read_as_load() {
        assert_eq!(load_of(&status(200), QUICK), Load::Light);
        assert_eq!(load_of(&status(204), QUICK_ANSWER), Load::Light);
        assert_eq!(
            load_of(&status(200), QUICK_ANSWER + Duration::from_millis(1)),
            Load::Steady
        );
        assert_eq!(load_of(&status(200), SLOW_ANSWER), Load::Steady);
        assert_eq!(
            load_of(&status(200), SLOW_ANSWER + Duration::from_millis(1)),
            Load::Strained
        );
        assert_eq!(load_of(&status(400), QUICK), Load::Steady);
        assert_eq!(load_of(&status(410), QUICK), Load::Steady);
        assert_eq!(load_of(&status(429), QUICK), Load::Strained);
        assert_eq!(load_of(&status(500), QUICK), Load::Strained);
        assert_eq!(load_of(&status(503), QUICK), Load::Strained);
        let refused = AttemptResult::NoResponse {
            error: "connection refused".into(),
        };
        assert_eq!(load_of(&refused, QUICK), Load::Strained);
    }

    #[test]
    fn a_quick_endpoint_with_deliveries_waiting_grows_to_the_most_and_no_further() {
        let bounds = EndpointBounds::up_to(128);
        let mut limit = bounds.start;
        for _ in 0..200 {
            limit = next_limit(limit, bounds, Load::Light, true);
        }
        assert_eq!(limit, 128);
    }

    #[test]
    fn nothing_is_earned_without_deliveries_waiting_or_by_a_slow_answer() {
        let bounds = EndpointBounds::up_to(128);
        assert_eq!(next_limit(40, bounds, Load::Light, false), 40);
        assert_eq!(next_limit(40, bounds, Load::Steady, true), 40);
        assert_eq!(next_limit(32, bounds, Load::Steady, true), 32);
    }

    #[test]
    fn strain_takes_a_tenth_back_down_to_the_start() {
        let bounds = EndpointBounds::up_to(128);
        assert_eq!(next_limit(128, bounds, Load::Strained, true), 116);
        assert_eq!(next_limit(35, bounds, Load::Strained, false), 32);
        assert_eq!(next_limit(32, bounds, Load::Strained, true), 32);
        let mut limit = 128;
        for _ in 0..100 {
            limit = next_limit(limit, bounds, Load::Strained, true);
        }
        assert_eq!(limit, 32);
        // Small limits still move by one.
        let small = EndpointBounds::up_to(16);
        assert_eq!(next_limit(9, small, Load::Strained, true), 8);
        assert_eq!(next_limit(4, small, Load::Strained, true), 4);
    }

    #[test]
    fn the_typical_answer_follows_answers_slowly() {
        let ms = Duration::from_millis;
        assert_eq!(typical_answer(None, ms(80)), ms(80));
        assert_eq!(typical_answer(Some(ms(80)), ms(160)), ms(90));
        let mut typical = Some(ms(10));
        for _ in 0..100 {
            typical = Some(typical_answer(typical, ms(1000)));
        }
        assert!(typical.unwrap() > ms(990), "{typical:?}");
    }

    #[test]
    fn deliveries_wait_in_memory_only_for_a_short_wait() {
        let ms = Duration::from_millis;
        // Not heard from yet, nor silent: wait.
        assert!(waits_in_memory(500, 32, Duration::ZERO));
        // A quick endpoint: hundreds may wait, a few rounds of 10 ms each.
        assert!(waits_in_memory(383, 128, ms(10)));
        assert!(!waits_in_memory(3200, 128, ms(10)));
        // A slow one: not even one round.
        assert!(!waits_in_memory(0, 32, ms(1000)));
        assert!(waits_in_memory(0, 32, LONGEST_WAIT));
        assert!(!waits_in_memory(32, 32, LONGEST_WAIT));
        // Absurd figures do not overflow.
        assert!(!waits_in_memory(usize::MAX, 0, Duration::MAX));
    }

    #[test]
    fn a_silent_endpoint_is_expected_to_answer_no_sooner_than_its_silence() {
        let ms = Duration::from_millis;
        assert_eq!(expected_answer(None, Duration::ZERO), Duration::ZERO);
        assert_eq!(expected_answer(Some(ms(10)), ms(2)), ms(10));
        // Quick so far, but nothing back for 400 ms with every slot taken.
        assert_eq!(expected_answer(Some(ms(10)), ms(400)), ms(400));
        assert_eq!(expected_answer(None, ms(300)), ms(300));
    }

    #[test]
    fn parked_deliveries_come_back_at_the_endpoints_pace() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let second = Duration::from_secs(1);
        let first = parked_until(None, now, 4, second);
        assert_eq!(first, now + chrono::Duration::milliseconds(250));
        let second_one = parked_until(Some(first), now, 4, second);
        assert_eq!(second_one, now + chrono::Duration::milliseconds(500));
        // A schedule in the past starts again from now.
        let later = now + chrono::Duration::seconds(10);
        assert_eq!(
            parked_until(Some(second_one), later, 4, second),
            later + chrono::Duration::milliseconds(250)
        );
        // Never more than an hour away, whatever the figures.
        let far = parked_until(Some(now + chrono::Duration::days(3)), now, 1, Duration::MAX);
        assert_eq!(far, now + chrono::Duration::hours(1));
        // No limit to divide by: one at a time.
        assert_eq!(
            parked_until(None, now, 0, second),
            now + chrono::Duration::seconds(1)
        );
    }

    #[test]
    fn one_at_a_time_stays_one() {
        let bounds = EndpointBounds::one_at_a_time();
        assert_eq!(next_limit(1, bounds, Load::Light, true), 1);
        assert_eq!(next_limit(1, bounds, Load::Strained, true), 1);
    }
}
