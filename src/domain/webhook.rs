//! Webhook endpoints: what they subscribe to, which events they accept, and the secrets
//! that sign what they are sent.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::EventType;
use super::ids::{ProjectId, TenantId, WebhookId};
use super::operation::Priority;
use super::requests::http_url;
use super::retry::{RetryPolicy, RetryPolicyBody};
use super::FieldError;

pub const MAX_HEADERS: usize = 20;
/// Headers a user may not set: they carry the signature or are the transport's own.
const RESERVED_HEADERS: [&str; 7] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "user-agent",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookStatus {
    Active,
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Disabled => "Disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Disabled]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookFilters {
    #[serde(default)]
    pub operation_types: Vec<String>,
    #[serde(default)]
    pub priorities: Vec<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_progress_increment: Option<f64>,
}

/// A secret that signs deliveries; an old one keeps signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The secrets that sign now: the current one first, then those still in their overlap.
pub fn live_secrets(secrets: &[SecretVersion], now: DateTime<Utc>) -> Vec<&str> {
    secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|t| t > now))
        .map(|s| s.secret.as_str())
        .collect()
}

/// Makes `new` the current secret; the previous current one signs for `overlap` more.
pub fn rotate(
    secrets: &[SecretVersion],
    new: String,
    now: DateTime<Utc>,
    overlap: Duration,
) -> Vec<SecretVersion> {
    let until = now + chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::zero());
    let mut rotated = vec![SecretVersion {
        secret: new,
        expires_at: None,
    }];
    for old in secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|t| t > now))
    {
        rotated.push(SecretVersion {
            secret: old.secret.clone(),
            expires_at: Some(old.expires_at.map_or(until, |t| t.min(until))),
        });
    }
    rotated
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: WebhookId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub url: String,
    pub name: String,
    /// Empty: every event type.
    pub events: Vec<EventType>,
    pub filters: WebhookFilters,
    pub retry_policy: RetryPolicy,
    pub headers: BTreeMap<String, String>,
    pub secrets: Vec<SecretVersion>,
    pub status: WebhookStatus,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    /// Whether this endpoint wants the event at all (before progress throttling).
    /// Filters apply to the fields an event carries; an event without an operation type
    /// or priority (a test event, say) is not filtered out by them.
    pub fn accepts(&self, event_type: EventType, data: &Value) -> bool {
        if self.status != WebhookStatus::Active || event_type == EventType::WebhookTest {
            return false;
        }
        if !self.events.is_empty() && !self.events.contains(&event_type) {
            return false;
        }
        let f = &self.filters;
        if let Some(t) = data.get("operationType").and_then(Value::as_str) {
            if !f.operation_types.is_empty() && !f.operation_types.iter().any(|x| x == t) {
                return false;
            }
        }
        if let Some(p) = data
            .get("priority")
            .and_then(Value::as_str)
            .and_then(Priority::parse)
        {
            if !f.priorities.is_empty() && !f.priorities.contains(&p) {
                return false;
            }
        }
        true
    }

    /// Whether `minProgressIncrement` holds progress events back.
    pub fn throttles_progress(&self) -> bool {
        self.filters.min_progress_increment.is_some_and(|s| s > 0.0)
    }

    /// `minProgressIncrement`: a progress event goes out only once the percentage moved
    /// at least that far from the last one this endpoint was sent for the operation.
    pub fn progress_due(&self, last_sent: Option<f64>, percentage: Option<f64>) -> bool {
        let Some(step) = self.filters.min_progress_increment.filter(|s| *s > 0.0) else {
            return true;
        };
        match (last_sent, percentage) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(last), Some(now)) => now - last >= step - f64::EPSILON * 100.0,
        }
    }
}

/// `POST …/async/webhooks` and `PUT …/webhooks/{id}`, as seed 001 shows them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody {
    pub webhook_url: String,
    pub webhook_name: Option<String>,
    pub events: Option<Vec<String>>,
    pub filters: Option<FiltersBody>,
    pub authentication: Option<AuthenticationBody>,
    pub retry_policy: Option<RetryPolicyBody>,
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FiltersBody {
    #[serde(default)]
    pub operation_types: Vec<String>,
    #[serde(default)]
    pub priorities: Vec<Priority>,
    pub min_progress_increment: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub secret: Option<String>,
}

/// A checked webhook registration. `secret: None` asks for a generated one.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: url::Url,
    pub name: String,
    pub events: Vec<EventType>,
    pub filters: WebhookFilters,
    pub retry_policy: RetryPolicy,
    pub headers: BTreeMap<String, String>,
    pub secret: Option<String>,
}

impl TryFrom<WebhookBody> for WebhookSpec {
    type Error = FieldError;

    fn try_from(body: WebhookBody) -> Result<Self, FieldError> {
        let url = http_url(&body.webhook_url, "webhookUrl")?;
        let name = match body.webhook_name.as_deref().map(str::trim) {
            None | Some("") => url.host_str().unwrap_or("webhook").to_owned(),
            Some(n) if n.chars().count() > 200 => {
                return Err(FieldError::new(
                    "webhookName",
                    "must be at most 200 characters",
                ))
            }
            Some(n) => n.to_owned(),
        };
        let events = match body.events {
            None => Vec::new(),
            Some(list) if list.is_empty() => {
                return Err(FieldError::new(
                    "events",
                    "must list at least one event type (leave it out to receive every event)",
                ))
            }
            Some(list) => {
                let mut events = Vec::with_capacity(list.len());
                for (i, name) in list.iter().enumerate() {
                    let t = EventType::parse(name).ok_or_else(|| {
                        let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                        FieldError::new(
                            format!("events[{i}]"),
                            format!("unknown event type `{name}`; known: {}", known.join(", ")),
                        )
                    })?;
                    if !events.contains(&t) {
                        events.push(t);
                    }
                }
                events
            }
        };
        let filters = body.filters.unwrap_or_default();
        if let Some(step) = filters.min_progress_increment {
            if !(step.is_finite() && (0.0..=100.0).contains(&step)) {
                return Err(FieldError::new(
                    "filters.minProgressIncrement",
                    "must be between 0 and 100",
                ));
            }
        }
        let filters = WebhookFilters {
            operation_types: filters.operation_types,
            priorities: filters.priorities,
            min_progress_increment: filters.min_progress_increment,
        };
        let secret = match body.authentication {
            None => None,
            Some(auth) => {
                if let Some(kind) = auth.kind.as_deref() {
                    if !kind.eq_ignore_ascii_case("hmac-sha256") {
                        return Err(FieldError::new(
                            "authentication.type",
                            "only `hmac-sha256` is supported",
                        ));
                    }
                }
                match auth.secret {
                    Some(s) if s.len() < 8 || s.len() > 256 => {
                        return Err(FieldError::new(
                            "authentication.secret",
                            "must be 8 to 256 characters",
                        ))
                    }
                    other => other,
                }
            }
        };
        let retry_policy = body
            .retry_policy
            .unwrap_or_default()
            .into_policy(RetryPolicy::WEBHOOK_DEFAULT, "retryPolicy")?;
        let headers = body.headers.unwrap_or_default();
        if headers.len() > MAX_HEADERS {
            return Err(FieldError::new(
                "headers",
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &headers {
            let field = format!("headers.{name}");
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(FieldError::new(
                    field,
                    "is set by Relais and cannot be overridden",
                ));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(FieldError::new(field, "is not a valid header name"));
            }
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(FieldError::new(
                    field,
                    "must not contain control characters",
                ));
            }
        }
        Ok(WebhookSpec {
            url,
            name,
            events,
            filters,
            retry_policy,
            headers,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn webhook(events: Vec<EventType>, filters: WebhookFilters) -> Webhook {
        Webhook {
            id: WebhookId::new(),
            tenant_id: TenantId::new(),
            project_id: ProjectId::new(),
            url: "https://example.com/hook".into(),
            name: "n".into(),
            events,
            filters,
            retry_policy: RetryPolicy::WEBHOOK_DEFAULT,
            headers: BTreeMap::new(),
            secrets: vec![],
            status: WebhookStatus::Active,
            disabled_reason: None,
            failing_since: None,
            created_at: t(0),
            updated_at: t(0),
        }
    }

    #[test]
    fn subscriptions_and_filters_select_events() {
        let filters = WebhookFilters {
            operation_types: vec!["Report".into()],
            priorities: vec![Priority::High, Priority::Critical],
            min_progress_increment: None,
        };
        let w = webhook(vec![EventType::OperationCompleted], filters);
        let data = |t: &str, p: &str| json!({"operationType": t, "priority": p});
        assert!(w.accepts(EventType::OperationCompleted, &data("Report", "High")));
        assert!(!w.accepts(EventType::OperationFailed, &data("Report", "High")));
        assert!(!w.accepts(EventType::OperationCompleted, &data("Other", "High")));
        assert!(!w.accepts(EventType::OperationCompleted, &data("Report", "Low")));
        let all = webhook(vec![], WebhookFilters::default());
        assert!(all.accepts(EventType::OperationProgress, &data("Any", "Low")));
        assert!(
            !all.accepts(EventType::WebhookTest, &json!({})),
            "test events go only where they are sent"
        );
        let mut disabled = all.clone();
        disabled.status = WebhookStatus::Disabled;
        assert!(!disabled.accepts(EventType::OperationCompleted, &data("Any", "Low")));
    }

    #[test]
    fn progress_is_throttled_by_the_minimum_increment() {
        let w = webhook(
            vec![],
            WebhookFilters {
                min_progress_increment: Some(10.0),
                ..Default::default()
            },
        );
        assert!(w.progress_due(None, Some(3.0)));
        assert!(!w.progress_due(Some(3.0), Some(12.0)));
        assert!(w.progress_due(Some(3.0), Some(13.0)));
        assert!(
            !w.progress_due(Some(3.0), None),
            "a report without a percentage is not progress"
        );
        let unthrottled = webhook(vec![], WebhookFilters::default());
        assert!(unthrottled.progress_due(Some(50.0), Some(50.5)));
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_overlap_only() {
        let first = vec![SecretVersion {
            secret: "a".into(),
            expires_at: None,
        }];
        let rotated = rotate(&first, "b".into(), t(0), Duration::from_secs(60));
        assert_eq!(live_secrets(&rotated, t(30)), vec!["b", "a"]);
        assert_eq!(live_secrets(&rotated, t(60)), vec!["b"]);
        let again = rotate(&rotated, "c".into(), t(70), Duration::from_secs(60));
        assert_eq!(
            live_secrets(&again, t(71)),
            vec!["c", "b"],
            "expired secrets are dropped"
        );
    }

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
            field(json!({"webhookUrl": "https://x.io", "authentication": {"type": "basic"}})),
            "authentication.type"
        );
        assert_eq!(
            field(json!({"webhookUrl": "https://x.io", "headers": {"webhook-signature": "x"}})),
            "headers.webhook-signature"
        );
    }
}
