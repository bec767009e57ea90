//! A notebook's cron schedule: the expression (5 fields, or 6 with seconds) in an IANA
//! time zone, its ticks, and which due ticks a scheduler pass runs.
//!
//! Ticks are computed by croner (the parser tokio-cron-scheduler itself is built on),
//! which walks wall-clock time in the zone: a tick that falls in a spring-forward gap
//! runs at the first instant after the gap, and one in a repeated autumn hour runs once.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::domain::FieldError;

pub const DEFAULT_TIMEZONE: &str = "UTC";
const MAX_EXPRESSION_LEN: usize = 200;
/// Ticks a pass runs for one notebook when it is behind while the cluster was up; the
/// rest follow in the next passes, so one notebook cannot hold a pass for long.
pub const MAX_TICKS_PER_PASS: usize = 16;
/// A cluster whose schedulers have not looked at the clock for this long was down: the
/// ticks that came due meanwhile are missed ticks.
pub const DOWN_AFTER_MS: i64 = 5_000;

#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    timezone: Tz,
    cron: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

/// A time zone by its IANA name (`Europe/Paris`); `field` is where it was given.
pub fn checked_timezone(name: &str, field: &str) -> Result<Tz, FieldError> {
    Tz::from_str(name.trim()).map_err(|e| {
        FieldError::new(
            field,
            format!("must be an IANA time zone name such as `Europe/Paris` or `UTC`: {e}"),
        )
    })
}

impl Schedule {
    /// `expression` under the `schedule` field, `timezone` under `timezone`, each refused
    /// with the parser's reason.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, FieldError> {
        let timezone = checked_timezone(timezone, "timezone")?;
        let expression = expression.trim();
        if expression.chars().count() > MAX_EXPRESSION_LEN {
            return Err(FieldError::new(
                "schedule",
                format!("must be at most {MAX_EXPRESSION_LEN} characters"),
            ));
        }
        let fields = expression.split_whitespace().count();
        if !expression.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(FieldError::new(
                "schedule",
                format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; `{expression}` has {fields}"
                ),
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| {
            FieldError::new("schedule", format!("is not a valid cron expression: {e}"))
        })?;
        let schedule = Schedule {
            expression: expression.to_owned(),
            timezone,
            cron,
        };
        // An expression that never matches (`0 0 30 2 *`) would leave the notebook
        // waiting for ever: refused now rather than silently never run.
        if schedule.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(FieldError::new("schedule", "never matches any time"));
        }
        Ok(schedule)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> &str {
        self.timezone.name()
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|previous| previous.with_timezone(&Utc))
    }

    /// Which due ticks to run now. `next` is the first tick not yet claimed; `up_since`
    /// is since when some replica's scheduler has been looking at the clock without a
    /// gap of [`DOWN_AFTER_MS`].
    ///
    /// A tick that came due since then runs, even late (a busy scheduler catches up,
    /// [`MAX_TICKS_PER_PASS`] at a time). A tick that came due before, while every
    /// replica was down, is a missed tick: it runs only if it is less than one period old,
    /// the period being the time from that tick to the one after it. Only the latest
    /// missed tick can be (the one after it has not come yet), so it runs once and the
    /// older ones are skipped.
    pub fn due(&self, next: DateTime<Utc>, now: DateTime<Utc>, up_since: DateTime<Utc>) -> Due {
        let mut due = Due {
            run: Vec::new(),
            skipped: 0,
            next: Some(next),
        };
        while let Some(tick) = due.next.filter(|t| *t <= now) {
            if due.run.len() == MAX_TICKS_PER_PASS {
                break;
            }
            let after = self.next_after(tick);
            let recent = after.is_none_or(|a| a > now);
            if tick >= up_since || recent {
                due.run.push(tick);
            } else {
                due.skipped += 1;
            }
            due.next = after;
            // A long outage of a per-second schedule is skipped in one step, not tick by
            // tick: on to the last tick before the cluster came back.
            if tick < up_since && due.skipped >= 1_000 {
                let last_missed =
                    self.last_at_or_before(up_since - chrono::Duration::milliseconds(1));
                if let Some(last) = last_missed.filter(|l| after.is_some_and(|a| *l > a)) {
                    due.next = Some(last);
                }
            }
        }
        due
    }
}

/// What a scheduler pass does with one notebook's due ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The ticks to run, oldest first: one run each.
    pub run: Vec<DateTime<Utc>>,
    /// Missed ticks not run, being a period old or more.
    pub skipped: u64,
    /// The first tick still to claim.
    pub next: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn five_and_six_field_expressions_are_accepted_others_named() {
        assert!(Schedule::parse("*/5 * * * *", "UTC").is_ok());
        assert!(Schedule::parse("* * * * * *", "UTC").is_ok());
        assert!(Schedule::parse("@daily", "UTC").is_ok());
        let wrong = Schedule::parse("* * * *", "UTC").unwrap_err();
        assert_eq!(wrong.field, "schedule");
        assert!(wrong.message.contains("has 4"), "{}", wrong.message);
        let wrong = Schedule::parse("61 * * * *", "UTC").unwrap_err();
        assert_eq!(wrong.field, "schedule");
        assert!(
            wrong.message.contains("not a valid cron"),
            "{}",
            wrong.message
        );
        let wrong = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(wrong.field, "timezone");
        assert_eq!(
            Schedule::parse("0 0 30 2 *", "UTC").unwrap_err().field,
            "schedule"
        );
    }

    #[test]
    fn odd_expressions_are_answered_not_panicked_on() {
        for odd in [
            "*/0 * * * *",
            "0-99999999999 * * * *",
            "L * * * *",
            "# # # # #",
            "W W W W W",
            "5/ * * * *",
            "* * * * 8",
            "* * 0 * *",
            "1-0 * * * *",
            "59-0/7 * * * * *",
            "* * L * *",
            "* * * * 5#9",
            "@reboot",
            "@ @ @ @ @",
            "0 0 29 2 *",
            "\u{7f} * * * *",
            "é * * * *",
        ] {
            let parsed = std::panic::catch_unwind(|| Schedule::parse(odd, "UTC"));
            let parsed = parsed.unwrap_or_else(|_| panic!("{odd:?} panicked"));
            if let Ok(schedule) = parsed {
                assert!(
                    schedule.next_after(at("2024-01-01T00:00:00Z")).is_some(),
                    "{odd}"
                );
            }
        }
    }

    #[test]
    fn ticks_follow_the_zone_across_daylight_saving_changes() {
        // 02:30 every day in Paris: on 2024-03-31 the clocks jump from 02:00 to 03:00.
        let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let before = at("2024-03-30T12:00:00Z");
        let first = s.next_after(before).unwrap();
        assert_eq!(
            first,
            at("2024-03-31T01:00:00Z"),
            "03:00 CEST, after the gap"
        );
        let second = s.next_after(first).unwrap();
        assert_eq!(second, at("2024-04-01T00:30:00Z"), "02:30 CEST");
        // 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
        let ny = Schedule::parse("0 9 * * *", "America/New_York").unwrap();
        assert_eq!(
            ny.next_after(at("2024-01-10T00:00:00Z")).unwrap(),
            at("2024-01-10T14:00:00Z")
        );
        assert_eq!(
            ny.next_after(at("2024-07-10T00:00:00Z")).unwrap(),
            at("2024-07-10T13:00:00Z")
        );
        // 01:30 in Paris on the night of 2024-10-27 (02:00–03:00 is repeated) runs once.
        let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let a = s.next_after(at("2024-10-26T12:00:00Z")).unwrap();
        let b = s.next_after(a).unwrap();
        assert!(b - a > chrono::Duration::hours(23), "{a} then {b}");
    }

    #[test]
    fn a_six_field_expression_ticks_every_second() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(s.next_after(t).unwrap(), t + chrono::Duration::seconds(1));
        let half = t + chrono::Duration::milliseconds(500);
        assert_eq!(
            s.next_after(half).unwrap(),
            t + chrono::Duration::seconds(1)
        );
    }

    #[test]
    fn while_the_cluster_was_up_every_tick_runs_even_late() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let next = at("2024-01-01T00:00:00Z");
        let up = at("2023-12-31T00:00:00Z");
        let due = s.due(next, at("2024-01-01T00:00:02.300Z"), up);
        assert_eq!(
            due.run,
            vec![next, at("2024-01-01T00:00:01Z"), at("2024-01-01T00:00:02Z")]
        );
        assert_eq!(due.next, Some(at("2024-01-01T00:00:03Z")));
        let far = s.due(next, at("2024-01-01T01:00:00Z"), up);
        assert_eq!(far.run.len(), MAX_TICKS_PER_PASS);
        assert_eq!(far.next, Some(at("2024-01-01T00:00:16Z")));
        let early = s.due(next, at("2023-12-31T23:59:59Z"), up);
        assert!(early.run.is_empty());
        assert_eq!(early.next, Some(next));
    }

    #[test]
    fn after_an_outage_only_a_tick_less_than_one_period_old_runs() {
        // Hourly; every replica down from 10:30 to 12:15: 11:00 is 75 minutes old and
        // skipped, 12:00 is 15 minutes old and runs once.
        let s = Schedule::parse("0 * * * *", "UTC").unwrap();
        let back = at("2024-01-01T12:14:59Z");
        let due = s.due(at("2024-01-01T11:00:00Z"), at("2024-01-01T12:15:00Z"), back);
        assert_eq!(due.run, vec![at("2024-01-01T12:00:00Z")]);
        assert_eq!(due.skipped, 1);
        assert_eq!(due.next, Some(at("2024-01-01T13:00:00Z")));
        // Weekdays at 09:00: Friday's tick, missed, is still less than a period old on
        // Sunday (the next is Monday's).
        let s = Schedule::parse("0 9 * * MON-FRI", "UTC").unwrap();
        let friday = at("2024-01-05T09:00:00Z");
        let sunday = at("2024-01-07T10:00:00Z");
        let due = s.due(friday, sunday, sunday);
        assert_eq!(due.run, vec![friday]);
        assert_eq!(due.next, Some(at("2024-01-08T09:00:00Z")));
    }

    #[test]
    fn a_long_outage_of_a_per_second_schedule_is_skipped_in_one_pass() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let back = at("2024-01-02T00:00:00.200Z");
        let due = s.due(
            at("2024-01-01T00:00:00Z"),
            at("2024-01-02T00:00:00.500Z"),
            back,
        );
        assert_eq!(due.run, vec![at("2024-01-02T00:00:00Z")]);
        assert_eq!(due.next, Some(at("2024-01-02T00:00:01Z")));
        assert!(due.skipped >= 1_000);
        // Ticks that came due since the cluster came back all run, the missed ones not.
        let due = s.due(
            at("2024-01-01T00:00:00Z"),
            at("2024-01-02T00:00:02.500Z"),
            back,
        );
        assert_eq!(
            due.run,
            vec![at("2024-01-02T00:00:01Z"), at("2024-01-02T00:00:02Z")]
        );
    }
}
