//! `…/async/operation(s)`: the bodies that start, retry and cancel an operation, and the
//! query that lists them.

use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::query::{parse_time, parse_uint, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::retry::RetryPolicyBody;
use super::{present, present_json};
use crate::domain::fields::{checked_name, MAX_NAME_LEN};
use crate::domain::operation::{
    checked_operation_type, checked_timeout, Callbacks, CancelRequest, ListRequest, Notifications,
    OperationFilter, OperationSpec, OperationStatus, Priority, RetryMode, RetrySpec,
    SlackNotification, DEFAULT_TIMEOUT_SECONDS,
};
use crate::domain::retry::RetryPolicy;
use crate::domain::FieldError;

/// `POST …/async/operation`, as seed 001 shows it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "operationType": "ProcessMiningAnalysis",
    "operationName": "Comprehensive Customer Journey Analysis",
    "operationDescription": "Deep analysis of customer interaction patterns with advanced ML algorithms",
    "priority": "High",
    "parameters": {
        "datasetId": "880e8400-e29b-41d4-a716-446655440000",
        "analysisType": "comprehensive",
        "timeWindow": {"startDate": "2024-01-01", "endDate": "2024-01-31"}
    },
    "callbacks": {
        "onProgress": "https://your-app.com/webhooks/progress",
        "onCompletion": "https://your-app.com/webhooks/completion",
        "onError": "https://your-app.com/webhooks/error"
    },
    "timeout": 7200,
    "retryPolicy": {"maxRetries": 3, "retryDelay": 300, "backoffMultiplier": 2.0}
}))]
pub struct StartOperationBody {
    pub operation_type: String,
    pub operation_name: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub operation_description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    #[schema(example = "High")]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "present_json")]
    /// Free-form: whatever the operation's worker reads.
    #[schema(nullable = false, value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub callbacks: Option<CallbacksBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notifications: Option<NotificationsBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub timeout: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_policy: Option<RetryPolicyBody>,
}

/// `callbacks`: the URLs that hear of this operation's progress, end and failure.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallbacksBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub on_progress: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub on_completion: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub on_error: Option<String>,
}

impl From<CallbacksBody> for Callbacks {
    fn from(body: CallbacksBody) -> Self {
        Callbacks {
            on_progress: body.on_progress,
            on_completion: body.on_completion,
            on_error: body.on_error,
        }
    }
}

/// `notifications`: who hears of the operation's end by mail or Slack.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsBody {
    #[serde(default)]
    pub email: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub slack: Option<SlackBody>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub channel: Option<String>,
    #[serde(default)]
    pub mention_users: Vec<String>,
}

impl From<NotificationsBody> for Notifications {
    fn from(body: NotificationsBody) -> Self {
        Notifications {
            email: body.email,
            slack: body.slack.map(|s| SlackNotification {
                channel: s.channel,
                mention_users: s.mention_users,
            }),
        }
    }
}

impl TryFrom<StartOperationBody> for OperationSpec {
    type Error = FieldError;

    fn try_from(body: StartOperationBody) -> Result<Self, FieldError> {
        let operation_type = checked_operation_type(&body.operation_type, "operationType")?;
        let operation_name = checked_name(&body.operation_name, "operationName", MAX_NAME_LEN)?;
        let parameters = match body.parameters {
            None => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(FieldError::new("parameters", "must be a JSON object")),
        };
        let callbacks = Callbacks::from(body.callbacks.unwrap_or_default());
        callbacks.check("callbacks")?;
        let notifications = Notifications::from(body.notifications.unwrap_or_default());
        notifications.check("notifications")?;
        let timeout = checked_timeout(body.timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS), "timeout")?;
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
            timeout,
            retry_policy,
        })
    }
}

/// `POST …/operation/{id}/retry`, as seed 001 shows it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "retryMode": "resume",
    "retryReason": "Infrastructure issue resolved, retrying with increased resources",
    "modifyParameters": true,
    "updatedParameters": {"resourceAllocation": {"cpuUnits": 6, "memoryGB": 12}},
    "retryPolicy": {"maxRetries": 2, "retryDelay": 180, "backoffMultiplier": 1.5},
    "newTimeout": 10800,
    "preserveOriginalResults": true
}))]
pub struct RetryBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    #[schema(example = "resume")]
    pub retry_mode: Option<RetryMode>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_reason: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub modify_parameters: Option<bool>,
    #[serde(default, deserialize_with = "present_json")]
    #[schema(nullable = false)]
    pub updated_parameters: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_policy: Option<RetryPolicyBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub new_timeout: Option<i64>,
    /// The original operation and its results are never changed by a retry, so they are
    /// always preserved: `false` asks for what Relais does not do, and is refused.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub preserve_original_results: Option<bool>,
}

impl RetryBody {
    /// `base` is the original operation's policy, which the body's fields override.
    pub fn into_spec(self, base: RetryPolicy) -> Result<RetrySpec, FieldError> {
        if self.preserve_original_results == Some(false) {
            return Err(FieldError::new(
                "preserveOriginalResults",
                "a retry never changes the original operation or its results; leave the field out or set it to true",
            ));
        }
        let parameter_patch = match (self.modify_parameters, self.updated_parameters) {
            (Some(false), Some(_)) => {
                return Err(FieldError::new(
                    "updatedParameters",
                    "is given with modifyParameters false; drop one of them",
                ))
            }
            (_, None) => None,
            (_, Some(v @ Value::Object(_))) => Some(v),
            (_, Some(_)) => {
                return Err(FieldError::new(
                    "updatedParameters",
                    "must be a JSON object",
                ))
            }
        };
        let timeout = self
            .new_timeout
            .map(|t| checked_timeout(t, "newTimeout"))
            .transpose()?;
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub preserve_partial_results: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub force_termination: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
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

/// Query of `GET …/async/operations`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
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

/// Query of `GET …/operation/{operationId}/results`: `format` is `summary` (the
/// default), `detailed` or `download`; `includeArtifacts` `true` (the default) or `false`;
/// `phase` keeps one phase's results.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    pub format: Option<String>,
    pub include_artifacts: Option<String>,
    pub phase: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

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
}
