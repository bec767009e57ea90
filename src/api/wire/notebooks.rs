//! Notebooks and their blocks (seed 003), as clients send them. The block update takes
//! `null` for "unchanged", as the seed's C# client sends every field of its payload
//! whether it was given or not; the other bodies are strict.

use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use super::batches::{BatchCallbacksBody, FailurePolicyBody};
use super::operations::NotificationsBody;
use super::present;
use crate::domain::batch::{BatchCallbacks, FailurePolicy};
use crate::domain::ids::BlockId;
use crate::domain::notebook::{
    checked_block_order, checked_block_title, checked_configuration, checked_description,
    checked_notebook_name, BlockChange, NotebookChange,
};
use crate::domain::operation::checked_operation_type;
use crate::domain::operation::Notifications;
use crate::domain::FieldError;

/// For a field whose `null` means something of its own: left out is `None`, `null` is
/// `Some(None)`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST …/notebook`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "notebookName": "Daily sales checks",
    "notebookDescription": "Filters yesterday's orders, then alerts on anomalies",
    "schedule": "0 6 * * *",
    "timezone": "Europe/Paris"
}))]
pub struct CreateNotebookBody {
    pub notebook_name: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notebook_description: Option<String>,
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6
    /// with seconds first.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, example = "0 6 * * *")]
    pub schedule: Option<String>,
    /// The IANA zone of the schedule's ticks; `UTC` by default.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// A schedule may be created paused.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub schedule_paused: Option<bool>,
    /// Who hears of each run's end (the run's batch), by mail or Slack.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notifications: Option<NotificationsBody>,
    /// The URLs that hear of each run's start, its blocks' ends and its own.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub callbacks: Option<BatchCallbacksBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub failure_policy: Option<FailurePolicyBody>,
}

/// `PUT …/notebook/{notebookId}`: what is left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"schedulePaused": true}))]
pub struct UpdateNotebookBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notebook_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notebook_description: Option<String>,
    /// A new cron expression, or `null` to remove the schedule.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub timezone: Option<String>,
    /// `true` stops the schedule without losing it; `false` resumes it from the next tick.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub schedule_paused: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub notifications: Option<NotificationsBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub callbacks: Option<BatchCallbacksBody>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub failure_policy: Option<FailurePolicyBody>,
}

fn notifications(body: Option<NotificationsBody>) -> Result<Option<Notifications>, FieldError> {
    body.map(|b| {
        let n = Notifications::from(b);
        n.check("notifications").map(|()| n)
    })
    .transpose()
}

fn callbacks(body: Option<BatchCallbacksBody>) -> Result<Option<BatchCallbacks>, FieldError> {
    body.map(|b| {
        let c = BatchCallbacks::from(b);
        c.check("callbacks").map(|()| c)
    })
    .transpose()
}

impl TryFrom<CreateNotebookBody> for NotebookChange {
    type Error = FieldError;

    fn try_from(body: CreateNotebookBody) -> Result<Self, FieldError> {
        UpdateNotebookBody {
            notebook_name: Some(body.notebook_name),
            notebook_description: body.notebook_description,
            schedule: body.schedule.map(Some),
            timezone: body.timezone,
            schedule_paused: body.schedule_paused,
            notifications: body.notifications,
            callbacks: body.callbacks,
            failure_policy: body.failure_policy,
        }
        .try_into()
    }
}

impl TryFrom<UpdateNotebookBody> for NotebookChange {
    type Error = FieldError;

    fn try_from(body: UpdateNotebookBody) -> Result<Self, FieldError> {
        Ok(NotebookChange {
            name: body
                .notebook_name
                .as_deref()
                .map(checked_notebook_name)
                .transpose()?,
            description: body
                .notebook_description
                .as_deref()
                .map(|d| checked_description(d, "notebookDescription"))
                .transpose()?,
            schedule: body.schedule,
            timezone: body.timezone,
            schedule_paused: body.schedule_paused,
            notifications: notifications(body.notifications)?,
            callbacks: callbacks(body.callbacks)?,
            failure_policy: body.failure_policy.map(FailurePolicy::from),
        })
    }
}

/// `POST …/notebook/{notebookId}/blocks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "blockType": "Filter",
    "blockTitle": "Date Range Filter",
    "blockDescription": "Filters data for the last 30 days",
    "blockOrder": 0,
    "configuration": "{\"filterType\": \"dateRange\", \"startDate\": \"2024-01-01\"}",
    "isDisabled": false
}))]
pub struct CreateBlockBody {
    /// The operation type that runs the block: a built-in executor's, a push worker's,
    /// or one that pull workers lease.
    pub block_type: String,
    pub block_title: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub block_description: Option<String>,
    /// The block's place in the notebook (0 by default); without dependencies, blocks
    /// run one after the other in this order.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub block_order: Option<i64>,
    /// The operation's parameters, as a JSON object written in a string.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub configuration: Option<String>,
    /// Ids of blocks of the same notebook this one runs after.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub dependencies: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub is_disabled: Option<bool>,
}

/// `PUT …/block/{blockId}`: a field left out or `null` stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "blockTitle": "Updated Date Filter",
    "blockDescription": "Filters data for custom date range",
    "isDisabled": false
}))]
pub struct UpdateBlockBody {
    #[serde(default)]
    pub block_title: Option<String>,
    #[serde(default)]
    pub block_description: Option<String>,
    #[serde(default)]
    pub is_disabled: Option<bool>,
    #[serde(default)]
    pub block_order: Option<i64>,
    #[serde(default)]
    pub configuration: Option<String>,
    #[serde(default)]
    pub dependencies: Option<Vec<String>>,
}

fn dependencies(ids: Option<Vec<String>>) -> Result<Option<Vec<BlockId>>, FieldError> {
    ids.map(|ids| {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                id.parse::<BlockId>()
                    .map_err(|e| FieldError::new(format!("dependencies[{i}]"), e.to_string()))
            })
            .collect()
    })
    .transpose()
}

fn block_change(
    body: UpdateBlockBody,
    block_type: Option<String>,
) -> Result<BlockChange, FieldError> {
    let configuration = body
        .configuration
        .map(|c| checked_configuration(&c, "configuration").map(|_| c))
        .transpose()?;
    Ok(BlockChange {
        block_type,
        title: body
            .block_title
            .as_deref()
            .map(checked_block_title)
            .transpose()?,
        description: body
            .block_description
            .as_deref()
            .map(|d| checked_description(d, "blockDescription"))
            .transpose()?,
        order: body.block_order.map(checked_block_order).transpose()?,
        configuration,
        dependencies: dependencies(body.dependencies)?,
        disabled: body.is_disabled,
    })
}

impl TryFrom<CreateBlockBody> for BlockChange {
    type Error = FieldError;

    fn try_from(body: CreateBlockBody) -> Result<Self, FieldError> {
        let block_type = checked_operation_type(&body.block_type, "blockType")?;
        block_change(
            UpdateBlockBody {
                block_title: Some(body.block_title),
                block_description: body.block_description,
                is_disabled: body.is_disabled,
                block_order: body.block_order,
                configuration: body.configuration,
                dependencies: body.dependencies,
            },
            Some(block_type),
        )
    }
}

impl TryFrom<UpdateBlockBody> for BlockChange {
    type Error = FieldError;

    fn try_from(body: UpdateBlockBody) -> Result<Self, FieldError> {
        block_change(body, None)
    }
}

/// `page` (from 1) and `pageSize` (1 to 100, 20 by default) of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
}
