//! A retry policy as requests give it: any of its numbers, the others taken from a base.

use serde::Deserialize;
use utoipa::ToSchema;

use super::present;
use crate::domain::retry::{RetryOverrides, RetryPolicy};
use crate::domain::FieldError;

/// `retryPolicy` in operation, batch and webhook bodies; every field optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicyBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub max_retries: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_delay: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub backoff_multiplier: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub max_delay: Option<f64>,
}

impl RetryPolicyBody {
    /// `field` is the JSON path of the policy in the request, used to name bad fields.
    pub fn into_policy(self, base: RetryPolicy, field: &str) -> Result<RetryPolicy, FieldError> {
        RetryOverrides {
            max_retries: self.max_retries,
            retry_delay: self.retry_delay,
            backoff_multiplier: self.backoff_multiplier,
            max_delay: self.max_delay,
        }
        .apply_to(base, field)
    }
}
