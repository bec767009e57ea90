//! How the domain's enums look on the wire, for the OpenAPI document: a string, one of
//! the values each variant serializes to. The values are taken from serde, and each list
//! is checked to be exhaustive by a `match`, so a new variant cannot go undocumented.

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::batch::BatchStatus;
use crate::domain::operation::{OperationStatus, PhaseStatus, Priority, RetryMode};
use crate::domain::task::{InstanceStatus, TaskState, TaskStatus};
use crate::domain::webhook::WebhookStatus;

fn string_enum<T: Serialize>(variants: &[T]) -> RefOr<Schema> {
    let values: Vec<String> = variants
        .iter()
        .filter_map(|v| match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        })
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

macro_rules! wire_enum {
    ($ty:ident: $($variant:ident),+) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string_enum(&[$($ty::$variant),+])
            }
        }

        impl ToSchema for $ty {}

        const _: fn($ty) = |v| match v {
            $($ty::$variant)|+ => {}
        };
    };
}

wire_enum!(OperationStatus: Pending, Initiated, Running, Completed, Failed, Cancelled, Timeout, Skipped);
wire_enum!(Priority: Low, Normal, High, Critical);
wire_enum!(PhaseStatus: Pending, Running, Completed, Failed, Skipped);
wire_enum!(RetryMode: Resume, Restart);
wire_enum!(BatchStatus: Initiated, Running, Completed, Failed, Cancelled);
wire_enum!(WebhookStatus: Active, Disabled);
wire_enum!(TaskState: Pending, Running, Done, Cancelled);
wire_enum!(TaskStatus: Waiting, Started, Running, Commit, Ko, Cancelled, Timeout, Skipped);
wire_enum!(InstanceStatus: Active, Inactive, ShutdownInProgress, Unreachable);
