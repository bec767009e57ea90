//! The service's notion of "now": UTC, truncated to the millisecond the database keeps,
//! so a value read back equals the value that was written.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}
