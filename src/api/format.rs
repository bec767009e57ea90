//! How times and durations are shown to people: RFC 3339 UTC, and "23 minutes 15 seconds".

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(time)
}

/// The two largest non-zero units, as the seed shows them ("23 minutes 15 seconds").
pub fn human_duration(d: Duration) -> String {
    let total = d.as_secs();
    let units = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut parts = Vec::new();
    let mut rest = total;
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 && parts.len() < 2 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() {
        return format!("{} ms", d.as_millis());
    }
    parts.join(" ")
}

pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_seed() {
        assert_eq!(
            human_duration(Duration::from_secs(23 * 60 + 15)),
            "23 minutes 15 seconds"
        );
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(3601)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(90_061)), "1 day 1 hour");
        assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
    }
}
