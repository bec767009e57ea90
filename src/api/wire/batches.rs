//! `POST …/async/batch`: a DAG of operations, as seed 001 shows it.

use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::operations::{CallbacksBody, NotificationsBody, StartOperationBody};
use super::retry::RetryPolicyBody;
use super::{present, present_json};
use crate::domain::batch::{
    check_graph, check_member_count, checked_batch_name, BatchCallbacks, BatchSpec, FailurePolicy,
    MemberSpec,
};
use crate::domain::operation::{Notifications, OperationSpec, Priority};
use crate::domain::retry::RetryPolicy;
use crate::domain::FieldError;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "batchName": "Monthly Process Mining Pipeline",
    "operations": [
        {"operationKey": "data-prep", "operationType": "DataPreparation", "operationName": "Prepare", "dependencies": []},
        {"operationKey": "discovery", "operationType": "ProcessMiningAnalysis", "operationName": "Discover", "dependencies": ["data-prep"]}
    ],
    "failurePolicy": {"stopOnFirstFailure": false, "continueIndependentOperations": true, "retryFailedOperations": true}
}))]
pub struct SubmitBatchBody {
    pub batch_name: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub batch_description: Option<String>,
    pub operations: Vec<MemberBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub batch_callbacks: Option<BatchCallbacksBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub failure_policy: Option<FailurePolicyBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_policy: Option<RetryPolicyBody>,
    /// Who hears of the batch's end (completed, failed, cancelled), with its members' counts.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notifications: Option<NotificationsBody>,
}

/// `batchCallbacks`: the URLs that hear of the batch's start, its members' ends and its own.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchCallbacksBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub on_batch_start: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub on_operation_complete: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub on_batch_complete: Option<String>,
}

impl From<BatchCallbacksBody> for BatchCallbacks {
    fn from(body: BatchCallbacksBody) -> Self {
        BatchCallbacks {
            on_batch_start: body.on_batch_start,
            on_operation_complete: body.on_operation_complete,
            on_batch_complete: body.on_batch_complete,
        }
    }
}

/// `failurePolicy`: each switch left out keeps its default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailurePolicyBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub stop_on_first_failure: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub continue_independent_operations: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub retry_failed_operations: Option<bool>,
}

impl From<FailurePolicyBody> for FailurePolicy {
    fn from(body: FailurePolicyBody) -> Self {
        let default = FailurePolicy::default();
        FailurePolicy {
            stop_on_first_failure: body
                .stop_on_first_failure
                .unwrap_or(default.stop_on_first_failure),
            continue_independent_operations: body
                .continue_independent_operations
                .unwrap_or(default.continue_independent_operations),
            retry_failed_operations: body
                .retry_failed_operations
                .unwrap_or(default.retry_failed_operations),
        }
    }
}

/// A member: `POST …/async/operation`'s body with a key and its dependencies. (Listed
/// field by field rather than flattened, so that a bad value's error names its path.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberBody {
    pub operation_key: String,
    #[serde(default)]
    pub dependencies: Vec<String>,
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

impl MemberBody {
    fn into_parts(self) -> (String, Vec<String>, StartOperationBody) {
        let operation = StartOperationBody {
            operation_type: self.operation_type,
            operation_name: self.operation_name,
            operation_description: self.operation_description,
            priority: self.priority,
            parameters: self.parameters,
            callbacks: self.callbacks,
            notifications: self.notifications,
            timeout: self.timeout,
            retry_policy: self.retry_policy,
        };
        (self.operation_key, self.dependencies, operation)
    }
}

impl TryFrom<SubmitBatchBody> for BatchSpec {
    type Error = FieldError;

    /// The batch as a whole is checked before its members one by one: a cycle is
    /// reported even if a member also has a bad field.
    fn try_from(body: SubmitBatchBody) -> Result<Self, FieldError> {
        let name = checked_batch_name(&body.batch_name, "batchName")?;
        check_member_count(body.operations.len(), "operations")?;
        let callbacks = BatchCallbacks::from(body.batch_callbacks.unwrap_or_default());
        callbacks.check("batchCallbacks")?;
        let failure_policy = FailurePolicy::from(body.failure_policy.unwrap_or_default());
        let notifications = Notifications::from(body.notifications.unwrap_or_default());
        notifications.check("notifications")?;
        let asked = body.retry_policy;
        let retry_policy = failure_policy.retry_policy(|| {
            asked
                .unwrap_or_default()
                .into_policy(RetryPolicy::OPERATION_DEFAULT, "retryPolicy")
        })?;
        let graph: Vec<(&str, &[String])> = body
            .operations
            .iter()
            .map(|m| (m.operation_key.as_str(), m.dependencies.as_slice()))
            .collect();
        check_graph(&graph, "operations")?;

        let mut members = Vec::with_capacity(body.operations.len());
        for (i, member) in body.operations.into_iter().enumerate() {
            let (key, dependencies, mut operation) = member.into_parts();
            let own_policy = operation.retry_policy.take();
            let mut spec = OperationSpec::try_from(operation)
                .map_err(|e| FieldError::new(format!("operations[{i}].{}", e.field), e.message))?;
            spec.retry_policy = failure_policy.retry_policy(|| match own_policy {
                Some(policy) => {
                    policy.into_policy(retry_policy, &format!("operations[{i}].retryPolicy"))
                }
                None => Ok(retry_policy),
            })?;
            members.push(MemberSpec {
                key,
                dependencies,
                spec,
            });
        }
        Ok(BatchSpec {
            name,
            description: body.batch_description,
            members,
            callbacks,
            failure_policy,
            retry_policy,
            notifications,
        })
    }
}

/// Query of `GET …/async/batches`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchListQuery {
    pub status: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::batch::MAX_MEMBERS;

    fn parse(body: Value) -> Result<BatchSpec, FieldError> {
        BatchSpec::try_from(serde_json::from_value::<SubmitBatchBody>(body).expect("shape"))
    }

    fn member(key: &str, deps: &[&str]) -> Value {
        json!({"operationKey": key, "operationName": key, "operationType": "Job", "dependencies": deps})
    }

    #[test]
    fn the_seed_body_is_accepted() {
        let spec = parse(json!({
            "batchName": "Monthly Process Mining Pipeline",
            "batchDescription": "Complete monthly analysis workflow with multiple datasets",
            "operations": [
                {"operationName": "Data Preparation", "operationType": "DataEnrichment", "priority": "High", "operationKey": "data-prep", "parameters": {"datasetId": "dataset-1"}},
                {"operationName": "Process Discovery", "operationType": "ProcessMiningAnalysis", "priority": "High", "operationKey": "discovery", "dependencies": ["data-prep"], "parameters": {}},
                {"operationName": "Performance Analysis", "operationType": "ProcessMiningAnalysis", "priority": "Normal", "operationKey": "performance", "dependencies": ["discovery"], "parameters": {}}
            ],
            "batchCallbacks": {"onBatchStart": "https://your-app.com/a", "onOperationComplete": "https://your-app.com/b", "onBatchComplete": "https://your-app.com/c"},
            "failurePolicy": {"stopOnFirstFailure": false, "continueIndependentOperations": true, "retryFailedOperations": true}
        }))
        .unwrap();
        assert_eq!(spec.members.len(), 3);
        assert_eq!(spec.members[2].dependencies, ["discovery"]);
        assert_eq!(spec.members[0].spec.operation_type, "DataEnrichment");
        assert_eq!(spec.failure_policy, FailurePolicy::default());
    }

    #[test]
    fn bad_graphs_are_refused_naming_the_field() {
        let refused = |members: Vec<Value>| {
            parse(json!({"batchName": "b", "operations": members})).unwrap_err()
        };
        assert_eq!(refused(vec![]).field, "operations");
        let e = refused(vec![member("a", &[]), member("a", &[])]);
        assert_eq!(e.field, "operations[1].operationKey");
        let e = refused(vec![member("a", &["ghost"])]);
        assert_eq!(e.field, "operations[0].dependencies[0]");
        assert!(e.message.contains("ghost"));
        let e = refused(vec![member("a", &["a"])]);
        assert!(e.message.contains("itself"));
        let e = refused(vec![member("a", &[]), member("b", &["a", "a"])]);
        assert_eq!(e.field, "operations[1].dependencies[1]");
    }

    #[test]
    fn a_cycle_is_reported_with_its_keys_in_order() {
        let e = parse(json!({"batchName": "b", "operations": [
            member("root", &[]), member("a", &["root", "c"]), member("b", &["a"]), member("c", &["b"])
        ]}))
        .unwrap_err();
        assert_eq!(e.field, "operations");
        assert!(e.message.ends_with("a → c → b → a"), "{}", e.message);
    }

    #[test]
    fn too_many_members_are_refused() {
        let members: Vec<Value> = (0..=MAX_MEMBERS)
            .map(|i| member(&format!("k{i}"), &[]))
            .collect();
        let e = parse(json!({"batchName": "b", "operations": members})).unwrap_err();
        assert!(e.message.contains("at most 10000"), "{}", e.message);
    }

    #[test]
    fn member_errors_are_named_inside_the_batch() {
        let e = parse(json!({"batchName": "b", "operations": [
            {"operationKey": "a", "operationName": "a", "operationType": "Job", "timeout": 0}
        ]}))
        .unwrap_err();
        assert_eq!(e.field, "operations[0].timeout");
    }

    #[test]
    fn without_retries_each_member_gets_one_attempt() {
        let spec = parse(json!({"batchName": "b", "operations": [member("a", &[])],
            "failurePolicy": {"retryFailedOperations": false}}))
        .unwrap();
        assert_eq!(spec.members[0].spec.retry_policy.max_attempts(), 1);
    }
}
