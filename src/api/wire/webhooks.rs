//! `POST …/async/webhooks` and `PUT …/webhooks/{id}`: a webhook registration.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::present;
use super::retry::RetryPolicyBody;
use crate::domain::fields::{check_signing_secret, checked_name, http_url};
use crate::domain::operation::{checked_operation_types, Priority};
use crate::domain::rate_limit::RateLimit;
use crate::domain::retry::RetryPolicy;
use crate::domain::webhook::{
    check_headers, check_labels, check_signature_type, checked_event_types, WebhookFilters,
    WebhookSpec, MAX_WEBHOOK_NAME_LEN,
};
use crate::domain::FieldError;

/// As seed 001 shows it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "webhookUrl": "https://your-app.com/webhooks/async-operations",
    "webhookName": "Main Operations Webhook",
    "events": ["operation.started", "operation.progress", "operation.completed", "operation.failed"],
    "filters": {"operationTypes": ["ProcessMiningAnalysis"], "priorities": ["High", "Critical"], "minProgressIncrement": 10},
    "authentication": {"type": "hmac-sha256", "secret": "your-webhook-secret-key"},
    "retryPolicy": {"maxRetries": 5, "retryDelay": 60, "backoffMultiplier": 2.0, "maxDelay": 3600}
}))]
pub struct WebhookBody {
    pub webhook_url: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub webhook_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub filters: Option<FiltersBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub authentication: Option<AuthenticationBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_policy: Option<RetryPolicyBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Deliveries per second at most (1 to 10,000), however many replicas send them;
    /// deliveries held back wait in the queue, pending. Left out: no limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 1, maximum = 10000)]
    pub rate_limit: Option<u64>,
    /// Tags of your own, `name: value` (at most 20; names of a-z, 0-9, `-`, `_`, `.`).
    /// A portal link made for an `owner` shows only the endpoints labelled with it.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, example = json!({"owner": "acme"}))]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FiltersBody {
    #[serde(default)]
    pub operation_types: Vec<String>,
    #[serde(default)]
    pub priorities: Vec<Priority>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub min_progress_increment: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationBody {
    #[serde(rename = "type", default, deserialize_with = "present")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub secret: Option<String>,
}

/// A list with each value once, in the order first given.
fn distinct<T: PartialEq>(values: Vec<T>) -> Vec<T> {
    let mut kept = Vec::new();
    for v in values {
        if !kept.contains(&v) {
            kept.push(v);
        }
    }
    kept
}

impl TryFrom<WebhookBody> for WebhookSpec {
    type Error = FieldError;

    fn try_from(body: WebhookBody) -> Result<Self, FieldError> {
        let url = http_url(&body.webhook_url, "webhookUrl")?;
        let name = match body.webhook_name.as_deref().map(str::trim) {
            None | Some("") => url.host_str().unwrap_or("webhook").to_owned(),
            Some(name) => checked_name(name, "webhookName", MAX_WEBHOOK_NAME_LEN)?,
        };
        // Left out, the endpoint hears of every event type.
        let events = match body.events {
            None => Vec::new(),
            Some(list) => checked_event_types(&list, "events")?,
        };
        let filters = body.filters.unwrap_or_default();
        let filters = WebhookFilters {
            operation_types: checked_operation_types(
                &filters.operation_types,
                "filters.operationTypes",
            )?,
            priorities: distinct(filters.priorities),
            min_progress_increment: filters.min_progress_increment,
        };
        filters.check("filters")?;
        let secret = match body.authentication {
            None => None,
            Some(auth) => {
                if let Some(kind) = auth.kind.as_deref() {
                    check_signature_type(kind, "authentication.type")?;
                }
                if let Some(secret) = &auth.secret {
                    check_signing_secret(secret, "authentication.secret")?;
                }
                auth.secret
            }
        };
        let retry_policy = body
            .retry_policy
            .unwrap_or_default()
            .into_policy(RetryPolicy::WEBHOOK_DEFAULT, "retryPolicy")?;
        let headers = body.headers.unwrap_or_default();
        check_headers(&headers, "headers")?;
        let rate_limit = body
            .rate_limit
            .map(|n| RateLimit::new(n, "rateLimit"))
            .transpose()?;
        let labels = body.labels.unwrap_or_default();
        check_labels(&labels, "labels")?;
        Ok(WebhookSpec {
            labels,
            url,
            name,
            events,
            filters,
            retry_policy,
            headers,
            rate_limit,
            secret,
        })
    }
}

/// `POST …/webhooks/{webhookId}/rotate-secret` and `…/callbacks/secret/rotate`: the new
/// secret (else one is made) and how long the previous ones keep signing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub overlap_seconds: Option<u64>,
}

/// `POST …/webhooks/{webhookId}/recover`: send again what failed since then.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    pub since: String,
}

/// Query of `…/deliveries` and `…/messages` (`status` filters the messages).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub status: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::operation::MAX_LISTED_TYPES;

    #[test]
    fn registrations_are_checked_field_by_field() {
        let spec = |body: Value| {
            WebhookSpec::try_from(serde_json::from_value::<WebhookBody>(body).unwrap())
        };
        let ok = spec(json!({
            "webhookUrl": "https://your-app.com/webhooks/async-operations",
            "webhookName": "Main Operations Webhook",
            "events": ["operation.started", "operation.completed"],
            "filters": {"operationTypes": ["A"], "priorities": ["High"], "minProgressIncrement": 10},
            "authentication": {"type": "hmac-sha256", "secret": "your-webhook-secret-key"},
            "retryPolicy": {"maxRetries": 5, "retryDelay": 60, "backoffMultiplier": 2.0, "maxDelay": 3600},
            "headers": {"X-Source": "mindzie-api"}
        }))
        .unwrap();
        assert_eq!(ok.events.len(), 2);
        assert_eq!(ok.secret.as_deref(), Some("your-webhook-secret-key"));
        let field = |body: Value| spec(body).unwrap_err().field;
        assert_eq!(field(json!({"webhookUrl": "ftp://x"})), "webhookUrl");
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "rateLimit": 0})),
            "rateLimit"
        );
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "rateLimit": 10_001})),
            "rateLimit"
        );
        let limited = spec(json!({"webhookUrl": "https://x.io", "rateLimit": 20})).unwrap();
        assert_eq!(limited.rate_limit.map(|l| l.per_second()), Some(20));
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "events": ["nope"]})),
            "events[0]"
        );
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "events": []})),
            "events"
        );
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "filters": {"minProgressIncrement": 200}})),
            "filters.minProgressIncrement"
        );
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "filters": {"operationTypes": ["A\u{0}"]}})),
            "filters.operationTypes[0]"
        );
        let many: Vec<String> = (0..=MAX_LISTED_TYPES).map(|i| format!("T{i}")).collect();
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "filters": {"operationTypes": many}})),
            "filters.operationTypes"
        );
        let filtered = spec(json!({"webhookUrl": "https://x.io",
            "filters": {"operationTypes": ["A", "A"], "priorities": ["High", "High", "Low"]}}))
        .unwrap();
        assert_eq!(filtered.filters.operation_types, ["A"]);
        assert_eq!(filtered.filters.priorities, [Priority::High, Priority::Low]);
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "authentication": {"type": "basic"}})),
            "authentication.type"
        );
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "headers": {"webhook-signature": "x"}})),
            "headers.webhook-signature"
        );
    }
}
