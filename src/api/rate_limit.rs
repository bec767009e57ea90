//! Requests per second per token (an API token, or an OAuth2 client's tokens together),
//! `RELAIS_RATE_LIMIT` with a burst of `RELAIS_RATE_LIMIT_BURST`: a token over it gets a
//! 429 with `Retry-After` and the `RateLimit-*` headers, and other tokens are not slowed.
//! Each replica counts its own requests.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::domain::ids::TokenId;

pub struct TokenLimits {
    limiter: DefaultKeyedRateLimiter<TokenId>,
    burst: u32,
    clock: DefaultClock,
}

impl TokenLimits {
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        TokenLimits {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            burst: burst.get(),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `token`; refused when it is over its rate.
    pub fn check(&self, token: TokenId) -> Result<(), ApiError> {
        match self.limiter.check_key(&token) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(ApiError::RateLimited {
                limit: self.burst,
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }

    /// Forgets tokens that have been quiet long enough to be back at a full burst.
    pub fn forget_quiet(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Whole seconds to wait, at least 1 (a `Retry-After: 0` invites a retry at once).
pub fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_over_its_burst_waits_and_others_do_not() {
        let limits = TokenLimits::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap());
        let (a, b) = (TokenId::new(), TokenId::new());
        for _ in 0..3 {
            assert!(limits.check(a).is_ok());
        }
        match limits.check(a) {
            Err(ApiError::RateLimited { limit, retry_after }) => {
                assert_eq!(limit, 3);
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(limits.check(b).is_ok());
        assert_eq!(seconds(Duration::from_millis(200)), 1);
        assert_eq!(seconds(Duration::ZERO), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
    }
}
