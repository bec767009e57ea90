//! Webhook endpoints: what they subscribe to, which events they accept, and the secrets
//! that sign what they are sent.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::EventType;
use super::ids::{ProjectId, TenantId, WebhookId};
use super::operation::{checked_percentage, Priority};
use super::rate_limit::RateLimit;
use super::retry::RetryPolicy;
use super::FieldError;

pub const MAX_WEBHOOK_NAME_LEN: usize = 200;
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

impl WebhookFilters {
    /// `field` is where the filters are.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        if let Some(step) = self.min_progress_increment {
            checked_percentage(step, &format!("{field}.minProgressIncrement"))?;
        }
        Ok(())
    }
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

/// The events an operation started on its own can cause.
const OPERATION_EVENTS: [EventType; 7] = [
    EventType::OperationStarted,
    EventType::OperationProgress,
    EventType::OperationPhaseCompleted,
    EventType::OperationCompleted,
    EventType::OperationFailed,
    EventType::OperationCancelled,
    EventType::OperationTimeout,
];

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
    /// Deliveries a second at most, over every replica; `None`: as fast as it takes them.
    pub rate_limit: Option<RateLimit>,
    /// The owner's own tags (`owner` is the one a portal link may be limited to).
    pub labels: BTreeMap<String, String>,
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

    /// Whether this endpoint is sent any event of an operation (one started on its own,
    /// not a batch member) of this type and priority.
    pub fn hears_operation(&self, operation_type: &str, priority: Priority) -> bool {
        let data =
            serde_json::json!({"operationType": operation_type, "priority": priority.as_str()});
        OPERATION_EVENTS.iter().any(|&t| self.accepts(t, &data))
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

/// A checked webhook registration. `secret: None` asks for a generated one.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: url::Url,
    pub name: String,
    pub events: Vec<EventType>,
    pub filters: WebhookFilters,
    pub retry_policy: RetryPolicy,
    pub headers: BTreeMap<String, String>,
    pub rate_limit: Option<RateLimit>,
    pub labels: BTreeMap<String, String>,
    pub secret: Option<String>,
}

/// The event types an endpoint subscribes to: at least one (an endpoint that wants every
/// event leaves the list out), each a known type; a repeated one counts once.
pub fn checked_event_types(names: &[String], field: &str) -> Result<Vec<EventType>, FieldError> {
    if names.is_empty() {
        return Err(FieldError::new(
            field,
            "must list at least one event type (leave it out to receive every event)",
        ));
    }
    let mut events = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let t = EventType::parse(name).ok_or_else(|| {
            let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            FieldError::new(
                format!("{field}[{i}]"),
                format!("unknown event type `{name}`; known: {}", known.join(", ")),
            )
        })?;
        if !events.contains(&t) {
            events.push(t);
        }
    }
    Ok(events)
}

/// Deliveries are signed the Standard Webhooks way, and in no other.
pub fn check_signature_type(kind: &str, field: &str) -> Result<(), FieldError> {
    if !kind.eq_ignore_ascii_case("hmac-sha256") {
        return Err(FieldError::new(field, "only `hmac-sha256` is supported"));
    }
    Ok(())
}

/// Headers an endpoint wants on every delivery: at most [`MAX_HEADERS`], none that Relais
/// sets itself, valid names, no control characters in values. `field` is where they are.
pub fn check_headers(headers: &BTreeMap<String, String>, field: &str) -> Result<(), FieldError> {
    if headers.len() > MAX_HEADERS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in headers {
        let at = format!("{field}.{name}");
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(FieldError::new(
                at,
                "is set by Relais and cannot be overridden",
            ));
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(FieldError::new(at, "is not a valid header name"));
        }
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(FieldError::new(at, "must not contain control characters"));
        }
    }
    Ok(())
}

pub const MAX_LABELS: usize = 20;
pub const MAX_LABEL_KEY_LEN: usize = 63;
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// The label a portal link may be limited to: the endpoint's owner.
pub const OWNER_LABEL: &str = "owner";

/// A webhook's labels: at most [`MAX_LABELS`]; keys of lowercase letters, digits, `-`,
/// `_` and `.`, starting with a letter or digit; values of printable characters.
pub fn check_labels(labels: &BTreeMap<String, String>, field: &str) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (key, value) in labels {
        let at = format!("{field}.{key}");
        let key_ok = (1..=MAX_LABEL_KEY_LEN).contains(&key.len())
            && key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && key.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !key_ok {
            let shown: String = key.chars().take(80).collect();
            return Err(FieldError::new(
                format!("{field}.{shown}"),
                format!("is not a label name: 1 to {MAX_LABEL_KEY_LEN} of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"),
            ));
        }
        check_label_value(value, &at)?;
    }
    Ok(())
}

/// One label's value: 1 to [`MAX_LABEL_VALUE_LEN`] characters, none a control character.
pub fn check_label_value(value: &str, field: &str) -> Result<(), FieldError> {
    if value.is_empty() || value.chars().count() > MAX_LABEL_VALUE_LEN {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_LABEL_VALUE_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_names_and_printable_values() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_labels(
            &labels(&[("owner", "Acme Corp"), ("team.x-1", "a")]),
            "labels"
        )
        .is_ok());
        for (key, value, field) in [
            ("Owner", "a", "labels.Owner"),
            ("-x", "a", "labels.-x"),
            ("", "a", "labels."),
            ("owner", "", "labels.owner"),
            ("owner", "a\u{0}b", "labels.owner"),
            ("owner", "a\nb", "labels.owner"),
        ] {
            let err = check_labels(&labels(&[(key, value)]), "labels").unwrap_err();
            assert_eq!(err.field, field, "{key:?}={value:?}");
        }
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(check_labels(&many, "labels").unwrap_err().field, "labels");
        let long = "x".repeat(MAX_LABEL_VALUE_LEN + 1);
        assert!(check_labels(&labels(&[("owner", &long)]), "labels").is_err());
    }

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
            rate_limit: None,
            labels: BTreeMap::new(),
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
    fn an_operation_is_heard_by_endpoints_that_take_any_of_its_events() {
        let filtered = |types: Vec<&str>| WebhookFilters {
            operation_types: types.into_iter().map(String::from).collect(),
            ..Default::default()
        };
        let failures = webhook(vec![EventType::OperationFailed], filtered(vec!["Report"]));
        assert!(failures.hears_operation("Report", Priority::Low));
        assert!(!failures.hears_operation("Other", Priority::Low));
        let batches_only = webhook(vec![EventType::BatchCompleted], WebhookFilters::default());
        assert!(!batches_only.hears_operation("Report", Priority::Low));
        let urgent = webhook(
            vec![],
            WebhookFilters {
                priorities: vec![Priority::Critical],
                ..Default::default()
            },
        );
        assert!(urgent.hears_operation("Report", Priority::Critical));
        assert!(!urgent.hears_operation("Report", Priority::High));
        let mut disabled = webhook(vec![], WebhookFilters::default());
        disabled.status = WebhookStatus::Disabled;
        assert!(!disabled.hears_operation("Report", Priority::Low));
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
    fn subscriptions_name_known_event_types_once() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let events = checked_event_types(
            &names(&["operation.completed", "operation.completed"]),
            "events",
        )
        .unwrap();
        assert_eq!(events, [EventType::OperationCompleted]);
        assert_eq!(
            checked_event_types(&[], "events").unwrap_err().field,
            "events"
        );
        assert_eq!(
            checked_event_types(&names(&["operation.completed", "nope"]), "events")
                .unwrap_err()
                .field,
            "events[1]"
        );
    }

    #[test]
    fn headers_that_relais_sets_or_that_are_malformed_are_refused() {
        let field = |name: &str, value: &str| {
            let headers = BTreeMap::from([(name.to_owned(), value.to_owned())]);
            check_headers(&headers, "headers").err().map(|e| e.field)
        };
        assert_eq!(field("X-Source", "api"), None);
        assert_eq!(
            field("Webhook-Id", "x").as_deref(),
            Some("headers.Webhook-Id")
        );
        assert_eq!(field("bad name", "x").as_deref(), Some("headers.bad name"));
        assert_eq!(
            field("X-Source", "a\nb").as_deref(),
            Some("headers.X-Source")
        );
        let many: BTreeMap<_, _> = (0..=MAX_HEADERS)
            .map(|i| (format!("X-{i}"), String::new()))
            .collect();
        assert_eq!(
            check_headers(&many, "headers").unwrap_err().field,
            "headers"
        );
        assert!(check_signature_type("HMAC-SHA256", "t").is_ok());
        assert!(check_signature_type("basic", "t").is_err());
    }
}
