//! Request bodies as clients send them (`…Body`, deserialized leniently so every mistake
//! can be reported by name) and the typed values they become once checked.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::EventType;
use super::operation::{
    CancelRequest, OperationError, OperationResult, OperationStatus, PhaseReport, PhaseStatus,
    Priority, ProgressReport, RetryMode, RetrySpec,
};
use super::retry::{RetryPolicy, RetryPolicyBody};
use super::FieldError;

pub const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
/// Thirty days: an operation that needs longer should checkpoint and be resumed.
pub const MAX_TIMEOUT_SECONDS: i64 = 30 * 24 * 3600;
pub const MAX_NAME_LEN: usize = 500;
pub const MAX_TYPE_LEN: usize = 200;
pub const MAX_PAGE_SIZE: u32 = 100;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_LEASE_BATCH: u32 = 100;
pub const MAX_WAIT_SECONDS: u32 = 60;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callbacks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_completion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
}

impl Callbacks {
    /// Which callback hears of which event: progress of any kind to `onProgress`, the
    /// end of the run to `onCompletion` (also on cancellation), failures to `onError`.
    pub fn url_for(&self, event: EventType) -> Option<&str> {
        match event {
            EventType::OperationStarted
            | EventType::OperationProgress
            | EventType::OperationPhaseCompleted => self.on_progress.as_deref(),
            EventType::OperationCompleted | EventType::OperationCancelled => {
                self.on_completion.as_deref()
            }
            EventType::OperationFailed | EventType::OperationTimeout => self.on_error.as_deref(),
            _ => None,
        }
    }

    pub fn count(&self) -> usize {
        [&self.on_progress, &self.on_completion, &self.on_error]
            .iter()
            .filter(|c| c.is_some())
            .count()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackNotification {
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub mention_users: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackNotification>,
}

/// `POST …/async/operation`, as seed 001 shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartOperationBody {
    pub operation_type: String,
    pub operation_name: String,
    pub operation_description: Option<String>,
    pub priority: Option<Priority>,
    pub parameters: Option<Value>,
    pub callbacks: Option<Callbacks>,
    pub notifications: Option<Notifications>,
    pub timeout: Option<i64>,
    pub retry_policy: Option<RetryPolicyBody>,
}

/// A checked request to run an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationSpec {
    pub operation_type: String,
    pub operation_name: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub parameters: Value,
    pub callbacks: Callbacks,
    pub notifications: Notifications,
    pub timeout: Duration,
    pub retry_policy: RetryPolicy,
}

impl TryFrom<StartOperationBody> for OperationSpec {
    type Error = FieldError;

    fn try_from(body: StartOperationBody) -> Result<Self, FieldError> {
        let operation_type = checked_operation_type(&body.operation_type, "operationType")?;
        let operation_name = non_blank(&body.operation_name, "operationName", MAX_NAME_LEN)?;
        let parameters = match body.parameters {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(FieldError::new("parameters", "must be a JSON object")),
        };
        let callbacks = body.callbacks.unwrap_or_default();
        for (name, url) in [
            ("onProgress", &callbacks.on_progress),
            ("onCompletion", &callbacks.on_completion),
            ("onError", &callbacks.on_error),
        ] {
            if let Some(url) = url {
                http_url(url, &format!("callbacks.{name}"))?;
            }
        }
        let notifications = body.notifications.unwrap_or_default();
        for (i, address) in notifications.email.iter().enumerate() {
            if !looks_like_email(address) {
                return Err(FieldError::new(
                    format!("notifications.email[{i}]"),
                    "must be an email address",
                ));
            }
        }
        let timeout = match body.timeout {
            None => DEFAULT_TIMEOUT_SECONDS,
            Some(t) if (1..=MAX_TIMEOUT_SECONDS).contains(&t) => t,
            Some(_) => {
                return Err(FieldError::new(
                    "timeout",
                    format!("must be a number of seconds between 1 and {MAX_TIMEOUT_SECONDS}"),
                ))
            }
        };
        let retry_policy = body
            .retry_policy
            .unwrap_or_default()
            .into_policy(RetryPolicy::OPERATION_DEFAULT, "retryPolicy")?;
        Ok(OperationSpec {
            operation_type,
            operation_name,
            description: body.operation_description,
            priority: body.priority.unwrap_or(Priority::Normal),
            parameters,
            callbacks,
            notifications,
            timeout: Duration::from_secs(timeout as u64),
            retry_policy,
        })
    }
}

fn non_blank(value: &str, field: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Operation types are routing keys: keep them to characters that are safe everywhere.
pub fn checked_operation_type(value: &str, field: &str) -> Result<String, FieldError> {
    let value = non_blank(value, field, MAX_TYPE_LEN)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(FieldError::new(
            field,
            "may contain only letters, digits and `_ - . :`",
        ));
    }
    Ok(value)
}

pub fn http_url(value: &str, field: &str) -> Result<url::Url, FieldError> {
    let url = url::Url::parse(value)
        .map_err(|e| FieldError::new(field, format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(FieldError::new(field, "must be an http or https URL"));
    }
    Ok(url)
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// `POST …/operation/{id}/retry`, as seed 001 shows it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBody {
    pub retry_mode: Option<RetryMode>,
    pub retry_reason: Option<String>,
    pub modify_parameters: Option<bool>,
    pub updated_parameters: Option<Value>,
    pub retry_policy: Option<RetryPolicyBody>,
    pub new_timeout: Option<i64>,
    /// Accepted for compatibility: the original operation and its results are never
    /// changed by a retry, so they are always preserved.
    pub preserve_original_results: Option<bool>,
}

impl RetryBody {
    /// `base` is the original operation's policy, which the body's fields override.
    pub fn into_spec(self, base: RetryPolicy) -> Result<RetrySpec, FieldError> {
        let parameter_patch = match (self.modify_parameters, self.updated_parameters) {
            (Some(false), _) | (_, None) | (_, Some(Value::Null)) => None,
            (_, Some(v @ Value::Object(_))) => Some(v),
            (_, Some(_)) => {
                return Err(FieldError::new(
                    "updatedParameters",
                    "must be a JSON object",
                ))
            }
        };
        let timeout = match self.new_timeout {
            None => None,
            Some(t) if (1..=MAX_TIMEOUT_SECONDS).contains(&t) => {
                Some(Duration::from_secs(t as u64))
            }
            Some(_) => {
                return Err(FieldError::new(
                    "newTimeout",
                    format!("must be a number of seconds between 1 and {MAX_TIMEOUT_SECONDS}"),
                ))
            }
        };
        let retry_policy = self
            .retry_policy
            .map(|p| p.into_policy(base, "retryPolicy"))
            .transpose()?;
        Ok(RetrySpec {
            mode: self.retry_mode.unwrap_or(RetryMode::Resume),
            reason: self.retry_reason,
            parameter_patch,
            retry_policy,
            timeout,
        })
    }
}

/// `DELETE …/operation/{id}`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelBody {
    pub reason: Option<String>,
    pub preserve_partial_results: Option<bool>,
    pub force_termination: Option<bool>,
    pub notify_callbacks: Option<bool>,
}

impl From<CancelBody> for CancelRequest {
    fn from(body: CancelBody) -> Self {
        CancelRequest {
            reason: body.reason,
            preserve_partial_results: body.preserve_partial_results.unwrap_or(false),
            force_termination: body.force_termination.unwrap_or(false),
            notify_callbacks: body.notify_callbacks.unwrap_or(true),
        }
    }
}

/// `POST …/async/workers/lease`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseBody {
    #[serde(default)]
    pub operation_types: Vec<String>,
    pub max: Option<i64>,
    pub wait_seconds: Option<f64>,
    pub worker_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRequest {
    /// Empty: any type.
    pub operation_types: Vec<String>,
    pub max: u32,
    pub wait: Duration,
    pub worker_id: Option<String>,
}

impl TryFrom<LeaseBody> for LeaseRequest {
    type Error = FieldError;

    fn try_from(body: LeaseBody) -> Result<Self, FieldError> {
        let mut operation_types = Vec::with_capacity(body.operation_types.len());
        for (i, t) in body.operation_types.iter().enumerate() {
            operation_types.push(checked_operation_type(t, &format!("operationTypes[{i}]"))?);
        }
        let max = match body.max {
            None => 1,
            Some(n) if (1..=MAX_LEASE_BATCH as i64).contains(&n) => n as u32,
            Some(_) => {
                return Err(FieldError::new(
                    "max",
                    format!("must be between 1 and {MAX_LEASE_BATCH}"),
                ))
            }
        };
        let wait = match body.wait_seconds {
            None => 0.0,
            Some(w) if w.is_finite() && (0.0..=MAX_WAIT_SECONDS as f64).contains(&w) => w,
            Some(_) => {
                return Err(FieldError::new(
                    "waitSeconds",
                    format!("must be between 0 and {MAX_WAIT_SECONDS}"),
                ))
            }
        };
        let worker_id = match body.worker_id {
            Some(w) => Some(non_blank(&w, "workerId", MAX_TYPE_LEN)?),
            None => None,
        };
        Ok(LeaseRequest {
            operation_types,
            max,
            wait: Duration::from_secs_f64(wait),
            worker_id,
        })
    }
}

/// `POST …/operation/{id}/progress`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressBody {
    pub lease_token: String,
    pub percentage: Option<f64>,
    pub current_phase: Option<String>,
    pub total_phases: Option<i64>,
    pub processed_records: Option<i64>,
    pub total_records: Option<i64>,
    pub phase: Option<PhaseBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseBody {
    pub phase_name: String,
    pub status: PhaseStatus,
    pub results: Option<Value>,
    pub checkpoint: Option<Value>,
}

impl ProgressBody {
    pub fn into_report(self) -> Result<(String, ProgressReport), FieldError> {
        let percentage = match self.percentage {
            Some(p) if !(p.is_finite() && (0.0..=100.0).contains(&p)) => {
                return Err(FieldError::new("percentage", "must be between 0 and 100"))
            }
            p => p,
        };
        let count = |value: Option<i64>, field: &str| match value {
            Some(n) if n < 0 => Err(FieldError::new(field, "must not be negative")),
            n => Ok(n.map(|n| n as u64)),
        };
        let total_phases =
            count(self.total_phases, "totalPhases")?.map(|n| n.min(u32::MAX as u64) as u32);
        let processed_records = count(self.processed_records, "processedRecords")?;
        let total_records = count(self.total_records, "totalRecords")?;
        let current_phase = match self.current_phase {
            Some(p) => Some(non_blank(&p, "currentPhase", MAX_NAME_LEN)?),
            None => None,
        };
        let phase = match self.phase {
            Some(p) => Some(PhaseReport {
                phase_name: non_blank(&p.phase_name, "phase.phaseName", MAX_NAME_LEN)?,
                status: p.status,
                results: p.results,
                checkpoint: p.checkpoint,
            }),
            None => None,
        };
        Ok((
            self.lease_token,
            ProgressReport {
                percentage,
                current_phase,
                total_phases,
                processed_records,
                total_records,
                phase,
            },
        ))
    }
}

/// `POST …/operation/{id}/complete`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteBody {
    pub lease_token: String,
    #[serde(default)]
    pub summary: Value,
    #[serde(default)]
    pub phase_results: Vec<Value>,
    #[serde(default)]
    pub artifacts: Vec<Value>,
}

impl CompleteBody {
    pub fn into_result(self) -> (String, OperationResult) {
        (
            self.lease_token,
            OperationResult {
                summary: self.summary,
                phase_results: self.phase_results,
                artifacts: self.artifacts,
            },
        )
    }
}

/// `POST …/operation/{id}/fail`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailBody {
    pub lease_token: String,
    pub error: OperationError,
    #[serde(default)]
    pub retryable: bool,
}

/// Query of `GET …/async/operations`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub status: Option<String>,
    pub operation_type: Option<String>,
    pub priority: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub include_details: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperationFilter {
    pub status: Option<OperationStatus>,
    pub operation_type: Option<String>,
    pub priority: Option<Priority>,
    pub date_from: Option<DateTime<Utc>>,
    pub date_to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    pub filter: OperationFilter,
    pub include_details: bool,
    pub page: u32,
    pub page_size: u32,
}

impl TryFrom<ListQuery> for ListRequest {
    type Error = FieldError;

    fn try_from(q: ListQuery) -> Result<Self, FieldError> {
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(OperationStatus::parse(s).ok_or_else(|| {
                let known: Vec<_> = OperationStatus::ALL.iter().map(|s| s.as_str()).collect();
                FieldError::new("status", format!("must be one of {}", known.join(", ")))
            })?),
        };
        let priority = match q.priority.as_deref() {
            None => None,
            Some(p) => Some(Priority::parse(p).ok_or_else(|| {
                FieldError::new("priority", "must be one of Low, Normal, High, Critical")
            })?),
        };
        let page = parse_uint(q.page.as_deref(), "page", 1, 1, u32::MAX / 2)?;
        let page_size = parse_uint(
            q.page_size.as_deref(),
            "pageSize",
            DEFAULT_PAGE_SIZE,
            1,
            MAX_PAGE_SIZE,
        )?;
        let include_details = match q.include_details.as_deref() {
            None => false,
            Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(FieldError::new("includeDetails", "must be true or false")),
        };
        let date_from = q
            .date_from
            .as_deref()
            .map(|d| parse_time(d, "dateFrom"))
            .transpose()?;
        let date_to = q
            .date_to
            .as_deref()
            .map(|d| parse_time(d, "dateTo"))
            .transpose()?;
        if let (Some(from), Some(to)) = (date_from, date_to) {
            if from > to {
                return Err(FieldError::new("dateFrom", "must not be after dateTo"));
            }
        }
        Ok(ListRequest {
            filter: OperationFilter {
                status,
                operation_type: q.operation_type,
                priority,
                date_from,
                date_to,
            },
            include_details,
            page,
            page_size,
        })
    }
}

/// A whole number from a query string, `default` when absent, refused outside `min..=max`.
pub fn parse_uint(
    value: Option<&str>,
    field: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, FieldError> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(FieldError::new(
                field,
                format!("must be a whole number between {min} and {max}"),
            )),
        },
    }
}

/// RFC 3339 times, or a plain date meaning midnight UTC.
pub fn parse_time(value: &str, field: &str) -> Result<DateTime<Utc>, FieldError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(FieldError::new(
        field,
        "must be an RFC 3339 time (2024-01-20T11:15:00Z) or a date (2024-01-20)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn start(body: Value) -> Result<OperationSpec, FieldError> {
        OperationSpec::try_from(serde_json::from_value::<StartOperationBody>(body).unwrap())
    }

    #[test]
    fn the_seed_request_is_accepted() {
        let spec = start(json!({
            "operationType": "ProcessMiningAnalysis",
            "operationName": "Comprehensive Customer Journey Analysis",
            "priority": "High",
            "parameters": {"datasetId": "880e8400"},
            "callbacks": {"onProgress": "https://your-app.com/webhooks/progress"},
            "notifications": {"email": ["analyst@company.com"], "slack": {"channel": "#pm", "mentionUsers": ["@a"]}},
            "timeout": 7200,
            "retryPolicy": {"maxRetries": 3, "retryDelay": 300, "backoffMultiplier": 2.0}
        }))
        .unwrap();
        assert_eq!(spec.priority, Priority::High);
        assert_eq!(spec.timeout, Duration::from_secs(7200));
        assert_eq!(spec.retry_policy.max_retries, 3);
        assert_eq!(spec.callbacks.count(), 1);
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = || json!({"operationType": "T", "operationName": "n"});
        let field = |patch: Value| {
            let mut body = base();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            start(body).unwrap_err().field
        };
        assert_eq!(field(json!({"timeout": -5})), "timeout");
        assert_eq!(field(json!({"timeout": 10_000_000_000i64})), "timeout");
        assert_eq!(field(json!({"operationName": "  "})), "operationName");
        assert_eq!(
            field(json!({"operationType": "has space"})),
            "operationType"
        );
        assert_eq!(field(json!({"parameters": [1]})), "parameters");
        assert_eq!(
            field(json!({"callbacks": {"onError": "ftp://x"}})),
            "callbacks.onError"
        );
        assert_eq!(
            field(json!({"notifications": {"email": ["nobody"]}})),
            "notifications.email[0]"
        );
    }

    #[test]
    fn list_queries_are_checked() {
        let q = |pairs: &[(&str, &str)]| {
            let query = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let parsed: ListQuery = serde_urlencoded_like(&query);
            ListRequest::try_from(parsed)
        };
        assert_eq!(q(&[]).unwrap().page_size, 20);
        assert_eq!(q(&[("pageSize", "101")]).unwrap_err().field, "pageSize");
        assert_eq!(q(&[("page", "0")]).unwrap_err().field, "page");
        assert_eq!(q(&[("status", "Done")]).unwrap_err().field, "status");
        assert_eq!(
            q(&[("dateFrom", "yesterday")]).unwrap_err().field,
            "dateFrom"
        );
        let ok = q(&[("status", "Running"), ("dateFrom", "2024-01-20")]).unwrap();
        assert_eq!(ok.filter.status, Some(OperationStatus::Running));
    }

    fn serde_urlencoded_like(query: &str) -> ListQuery {
        let map: serde_json::Map<String, Value> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), Value::String(v.to_owned()))
            })
            .collect();
        serde_json::from_value(Value::Object(map)).unwrap()
    }

    #[test]
    fn lease_requests_are_bounded() {
        let lease = |body: Value| {
            LeaseRequest::try_from(serde_json::from_value::<LeaseBody>(body).unwrap())
        };
        assert_eq!(lease(json!({"max": 0})).unwrap_err().field, "max");
        assert_eq!(
            lease(json!({"waitSeconds": 3600})).unwrap_err().field,
            "waitSeconds"
        );
        let ok = lease(json!({"operationTypes": ["A"], "max": 10, "waitSeconds": 20})).unwrap();
        assert_eq!(ok.max, 10);
        assert_eq!(ok.wait, Duration::from_secs(20));
    }

    #[test]
    fn progress_reports_are_range_checked() {
        let report = |body: Value| {
            serde_json::from_value::<ProgressBody>(body)
                .unwrap()
                .into_report()
        };
        assert_eq!(
            report(json!({"leaseToken": "l", "percentage": 120}))
                .unwrap_err()
                .field,
            "percentage"
        );
        assert_eq!(
            report(json!({"leaseToken": "l", "processedRecords": -1}))
                .unwrap_err()
                .field,
            "processedRecords"
        );
        let (token, ok) = report(json!({"leaseToken": "l", "percentage": 40, "phase": {"phaseName": "p", "status": "Running"}})).unwrap();
        assert_eq!(token, "l");
        assert_eq!(ok.phase.unwrap().status, PhaseStatus::Running);
    }
}
