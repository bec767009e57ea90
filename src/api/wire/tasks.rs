//! The `/v1` facade's bodies (seed 002), in the seed's own shapes: the step a client
//! submits, what a list asks for, and the status message that cancels a task.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::present;
use crate::domain::operation::{CancelRequest, PhaseStatus};
use crate::domain::task::{
    checked_action_time, checked_paging, parse_query, PredicateError, Step, TaskFilter, TaskPaging,
};
use crate::domain::FieldError;

/// The longest cancellation message kept as the cancellation's reason.
pub const MAX_MESSAGE_LEN: usize = 2_000;

/// `POST /v1/tasks`: a step and its actions, in order. Fields of the client's own beside
/// `Step` and `actions` (the seed's `otherInfo`) are the step's context: kept as sent,
/// with the whole step, which is what the worker is handed as the operation's
/// `parameters`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "Step": "name",
    "otherInfo": "other info",
    "actions": [{
        "action": "id_action",
        "arguments": {"nom_champ_1": "jxpath1", "nom_champ_2": "jxpath2"},
        "results": {"nom_champ_3": null, "nom_champ_4": null},
        "status": "Running",
        "post_assign": [{"target": "jxpath3", "result": "construction1"}],
        "start_time": "1990-12-31T23:59:60Z",
        "end_time": "1990-12-31T23:59:60Z"
    }]
}))]
pub struct SubmitTaskBody {
    /// The step's name: the operation type, so the workers of that type run it
    /// (letters, digits and `_ - . :`).
    #[serde(rename = "Step")]
    pub step: String,
    pub actions: Vec<ActionBody>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
}

/// One action of a step: a phase of the operation, named by `action`. The other fields
/// are the worker's, handed to it as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub action: String,
    /// Free-form: what the action reads.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<Object>)]
    pub arguments: Option<Map<String, Value>>,
    /// Free-form: the results the action is to fill in (`null` until it does).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<Object>)]
    pub results: Option<Map<String, Value>>,
    /// As the client last knew it; the task's own `actions[].status` is what the worker
    /// reports.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub status: Option<PhaseStatus>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub post_assign: Option<Vec<PostAssignBody>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub start_time: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub end_time: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostAssignBody {
    pub target: String,
    pub result: String,
}

impl SubmitTaskBody {
    /// The checked step; `submitted` is the body as sent, which the worker is handed.
    pub fn into_step(self, submitted: Value) -> Result<Step, FieldError> {
        for (i, action) in self.actions.iter().enumerate() {
            for (name, time) in [
                ("start_time", &action.start_time),
                ("end_time", &action.end_time),
            ] {
                if let Some(time) = time {
                    checked_action_time(time, &format!("actions[{i}].{name}"))?;
                }
            }
        }
        let actions: Vec<&str> = self.actions.iter().map(|a| a.action.as_str()).collect();
        Step::new(&self.step, &actions, submitted)
    }
}

/// `GET /v1/tasks`: which tasks, as the seed's `query`, and which page of them (`offset`
/// or `next`, and `limit`, as the answer's `hits` name them).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "name='abcdef*'&since>'2015-07-14'"}))]
pub struct ListTasksBody {
    /// Predicates joined by `&`: `name` (a step; `*` at the end for a prefix), `since`,
    /// `until`, `state`, `task_status` (README, "Worker tasks"). Without `state` or
    /// `task_status`, the tasks under way.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub query: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 0)]
    pub offset: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `hits.next` of the previous page: the page starts at that task.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub next: Option<String>,
}

/// `GET /v1/tasks?query=…`: the list's filter, in the query string rather than the body.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskQueryString {
    /// The same predicates as the body's `query` (URL-encoded: `&` is `%26`).
    pub query: Option<String>,
}

/// A list's request, checked: a field error is a 400, a predicate Relais cannot apply a
/// 412, as the seed says of predicates that are not right.
pub enum CheckedList {
    Checked(TaskFilter, TaskPaging),
    Refused(FieldError),
    Unapplicable(PredicateError),
}

impl ListTasksBody {
    pub fn check(&self) -> CheckedList {
        let paging = match checked_paging(self.offset, self.limit, self.next.as_deref()) {
            Ok(paging) => paging,
            Err(e) => return CheckedList::Refused(e),
        };
        match parse_query(self.query.as_deref().unwrap_or_default()) {
            Ok(filter) => CheckedList::Checked(filter, paging),
            Err(e) => CheckedList::Unapplicable(e),
        }
    }
}

/// `PUT /v1/tasks` and `PUT /v1/tasks/{id_async}`: the seed's status message, which
/// cancels the task that `X-RequestId` (or the path) names; `message` is kept as the
/// cancellation's reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "X-RequestId": "op-0190f1c2-7a4b-7cc1-9d2e-4f5a6b7c8d9e",
    "code": 201,
    "vitamCode": 123456,
    "timestamp": "2015-07-14T17:07:14Z",
    "message": "message informatif retour"
}))]
pub struct TaskMessageBody {
    /// The task's id (`id_async`): required on `PUT /v1/tasks`; on
    /// `PUT /v1/tasks/{id_async}`, when given, the path's.
    #[serde(rename = "X-RequestId", default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
    /// The HTTP status the message speaks of, 100 to 599.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 100, maximum = 599)]
    pub code: Option<i64>,
    #[serde(rename = "vitamCode", default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 0)]
    pub vitam_code: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub message: Option<String>,
}

impl TaskMessageBody {
    /// The cancellation it asks for, its fields checked.
    pub fn into_cancel(self) -> Result<CancelRequest, FieldError> {
        if let Some(code) = self.code {
            if !(100..=599).contains(&code) {
                return Err(FieldError::new(
                    "code",
                    "must be an HTTP status, 100 to 599",
                ));
            }
        }
        if self.vitam_code.is_some_and(|c| c < 0) {
            return Err(FieldError::new("vitamCode", "must not be negative"));
        }
        if let Some(timestamp) = &self.timestamp {
            checked_action_time(timestamp, "timestamp")?;
        }
        if let Some(message) = &self.message {
            if message.chars().count() > MAX_MESSAGE_LEN {
                return Err(FieldError::new(
                    "message",
                    format!("must be at most {MAX_MESSAGE_LEN} characters"),
                ));
            }
            if message
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(FieldError::new(
                    "message",
                    "must not contain control characters",
                ));
            }
        }
        Ok(CancelRequest {
            reason: self.message,
            preserve_partial_results: false,
            force_termination: false,
            notify_callbacks: true,
        })
    }
}
