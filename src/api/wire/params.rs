//! The path parameters below a project's path, for the OpenAPI document: each handler
//! reads them from its own path type, which flattens `ProjectPath` (an `IntoParams` of
//! its own) beside them.

use utoipa::IntoParams;

macro_rules! path_param {
    ($name:ident, $field:ident, $wire:literal, $doc:literal) => {
        #[derive(IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $name {
            #[doc = $doc]
            #[param(rename = $wire)]
            pub $field: String,
        }
    };
}

path_param!(
    OperationIdParam,
    operation_id,
    "operationId",
    "The operation's id (`op-…`, or the bare GUID)."
);
path_param!(
    BatchIdParam,
    batch_id,
    "batchId",
    "The batch's id (`batch-…`)."
);
path_param!(
    WebhookIdParam,
    webhook_id,
    "webhookId",
    "The webhook's id (`wh-…`)."
);
path_param!(
    DeliveryIdParam,
    delivery_id,
    "deliveryId",
    "The delivery's id (`dlv-…`)."
);
path_param!(
    WorkerIdParam,
    worker_id,
    "workerId",
    "The push worker's id (`wkr-…`)."
);
path_param!(
    DictionaryNameParam,
    name,
    "name",
    "The dictionary's name, as registered."
);
path_param!(
    TablesDictionaryParam,
    dictionary,
    "dictionary",
    "The dictionary whose tables these are."
);
path_param!(
    JobIdParam,
    job_id,
    "job_id",
    "The job's id, as `POST /api/breakout/start` gave it."
);
path_param!(
    CredentialNameParam,
    name,
    "name",
    "The credential's name (letters, digits, `-`, `_`, `.`)."
);
path_param!(SyncNameParam, name, "name", "The sync's `syncName`.");
