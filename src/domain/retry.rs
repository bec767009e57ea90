//! Retry policy: how many times an attempt may be repeated and how long to wait between.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::FieldError;

/// Upper bounds that keep a policy meaningful; larger values are refused, not clamped.
pub const MAX_RETRIES_CAP: u32 = 100;
pub const MAX_DELAY_CAP_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
pub const MAX_MULTIPLIER: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// Seconds before the first retry.
    pub retry_delay: f64,
    pub backoff_multiplier: f64,
    /// Seconds: no wait is ever longer.
    pub max_delay: f64,
}

impl RetryPolicy {
    /// Used for operations that do not give a policy: a few quick retries, so a lost
    /// worker does not lose the work, but a poison task does not loop forever.
    pub const OPERATION_DEFAULT: RetryPolicy = RetryPolicy {
        max_retries: 3,
        retry_delay: 1.0,
        backoff_multiplier: 2.0,
        max_delay: 3600.0,
    };

    /// Seed 001's webhook defaults: 5 retries, 60 s, doubling, at most an hour apart.
    pub const WEBHOOK_DEFAULT: RetryPolicy = RetryPolicy {
        max_retries: 5,
        retry_delay: 60.0,
        backoff_multiplier: 2.0,
        max_delay: 3600.0,
    };

    pub fn max_attempts(&self) -> u32 {
        self.max_retries + 1
    }

    /// Wait before attempt `failed_attempt + 1`, given that attempt `failed_attempt`
    /// (1-based) just failed: `retryDelay × backoffMultiplier^(failed_attempt-1)`,
    /// capped at `maxDelay`. Jitter is applied by the caller so this stays deterministic.
    pub fn delay_after(&self, failed_attempt: u32) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(64) as i32;
        let raw = self.retry_delay * self.backoff_multiplier.powi(exponent);
        Duration::from_secs_f64(raw.min(self.max_delay).max(0.0))
    }
}

/// A policy given in part (by a request): each number left out is taken from a base
/// policy, the original operation's or the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RetryOverrides {
    pub max_retries: Option<i64>,
    pub retry_delay: Option<f64>,
    pub backoff_multiplier: Option<f64>,
    pub max_delay: Option<f64>,
}

impl RetryOverrides {
    /// `field` is the JSON path of the policy in the request, used to name bad fields.
    pub fn apply_to(self, base: RetryPolicy, field: &str) -> Result<RetryPolicy, FieldError> {
        let max_retries = match self.max_retries {
            None => base.max_retries,
            Some(n) if (0..=MAX_RETRIES_CAP as i64).contains(&n) => n as u32,
            Some(_) => {
                return Err(FieldError::new(
                    format!("{field}.maxRetries"),
                    format!("must be between 0 and {MAX_RETRIES_CAP}"),
                ))
            }
        };
        let seconds = |value: Option<f64>, default: f64, name: &str| match value {
            None => Ok(default),
            Some(v) if v.is_finite() && (0.0..=MAX_DELAY_CAP_SECONDS).contains(&v) => Ok(v),
            Some(_) => Err(FieldError::new(
                format!("{field}.{name}"),
                format!("must be a number of seconds between 0 and {MAX_DELAY_CAP_SECONDS}"),
            )),
        };
        let retry_delay = seconds(self.retry_delay, base.retry_delay, "retryDelay")?;
        let max_delay = seconds(self.max_delay, base.max_delay.max(retry_delay), "maxDelay")?;
        let backoff_multiplier = match self.backoff_multiplier {
            None => base.backoff_multiplier,
            Some(m) if m.is_finite() && (1.0..=MAX_MULTIPLIER).contains(&m) => m,
            Some(_) => {
                return Err(FieldError::new(
                    format!("{field}.backoffMultiplier"),
                    format!("must be between 1.0 and {MAX_MULTIPLIER}"),
                ))
            }
        };
        if max_delay < retry_delay {
            return Err(FieldError::new(
                format!("{field}.maxDelay"),
                "must not be smaller than retryDelay",
            ));
        }
        Ok(RetryPolicy {
            max_retries,
            retry_delay,
            backoff_multiplier,
            max_delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay: f64, mult: f64, max: f64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            retry_delay: delay,
            backoff_multiplier: mult,
            max_delay: max,
        }
    }

    #[test]
    fn delays_grow_geometrically_and_are_capped() {
        let p = policy(60.0, 2.0, 3600.0);
        let secs: Vec<u64> = (1..=8).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(secs, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn a_huge_attempt_number_does_not_overflow() {
        assert_eq!(policy(1.0, 10.0, 30.0).delay_after(u32::MAX).as_secs(), 30);
    }

    #[test]
    fn a_policy_without_max_delay_still_grows() {
        let p = RetryOverrides {
            max_retries: Some(3),
            retry_delay: Some(300.0),
            backoff_multiplier: Some(2.0),
            max_delay: None,
        }
        .apply_to(RetryPolicy::OPERATION_DEFAULT, "retryPolicy")
        .unwrap();
        assert_eq!(p.delay_after(2).as_secs(), 600);
    }

    #[test]
    fn numbers_left_out_come_from_the_base_policy() {
        let p = RetryOverrides {
            max_retries: Some(2),
            ..Default::default()
        }
        .apply_to(RetryPolicy::OPERATION_DEFAULT, "retryPolicy")
        .unwrap();
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.retry_delay, RetryPolicy::OPERATION_DEFAULT.retry_delay);
        assert_eq!(p.max_attempts(), 3);
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let bad = |overrides: RetryOverrides| {
            overrides
                .apply_to(RetryPolicy::OPERATION_DEFAULT, "retryPolicy")
                .unwrap_err()
                .field
        };
        let negative_delay = RetryOverrides {
            retry_delay: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(bad(negative_delay), "retryPolicy.retryDelay");
        let shrinking = RetryOverrides {
            backoff_multiplier: Some(0.5),
            ..Default::default()
        };
        assert_eq!(bad(shrinking), "retryPolicy.backoffMultiplier");
        let too_many = RetryOverrides {
            max_retries: Some(1000),
            ..Default::default()
        };
        assert_eq!(bad(too_many), "retryPolicy.maxRetries");
        let inverted = RetryOverrides {
            retry_delay: Some(100.0),
            max_delay: Some(10.0),
            ..Default::default()
        };
        assert_eq!(bad(inverted), "retryPolicy.maxDelay");
    }
}
