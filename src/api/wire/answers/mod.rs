//! What Relais answers, one file per resource, as typed structs: the OpenAPI document is
//! generated from them (`ToSchema`), so the document and the answers cannot drift apart.
//! Domain values keep their own serialization; `#[schema(value_type = …)]` says how they
//! look on the wire.

pub mod batches;
pub mod breakout;
pub mod errors;
pub mod events;
pub mod examples;
pub mod health;
pub mod integrations;
pub mod notebooks;
pub mod oauth;
pub mod operations;
pub mod portal;
pub mod syncs;
pub mod tasks;
pub mod webhooks;
pub mod workers;
