//! Request bodies and queries as clients send them (`…Body`, `…Query`), and their
//! conversion into the checked values of `domain`, whose rules the conversions apply.
//!
//! Bodies are strict, so that a client's mistake is answered rather than guessed at: every
//! body struct refuses fields it does not know (`deny_unknown_fields`; free-form values
//! such as `parameters` or `headers` are `Value`s or maps and keep whatever they hold), and
//! an optional field given as `null` is refused too (see [`present`]), since `null` would
//! otherwise quietly mean "left out" and get the default.

use serde::de::{Deserialize, Deserializer, Error, Unexpected};
use serde_json::Value;

pub mod answers;
pub mod batches;
pub mod breakout;
pub mod enums;
pub mod events;
pub mod integrations;
pub mod notebooks;
pub mod oauth;
pub mod operations;
pub mod params;
pub mod portal;
pub mod push_workers;
pub mod query;
pub mod retry;
pub mod syncs;
pub mod tasks;
pub mod webhooks;
pub mod workers;

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<T>`: serde calls it
/// only for a field that is there, so `None` means left out, and a `null` must be a `T`,
/// which it is not.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// [`present`] for a free-form value, which would take `null` as one more value.
pub fn present_json<'de, D>(deserializer: D) -> Result<Option<Value>, D::Error>
where
    D: Deserializer<'de>,
{
    match Value::deserialize(deserializer)? {
        Value::Null => Err(D::Error::invalid_type(
            Unexpected::Unit,
            &"a JSON value other than null",
        )),
        value => Ok(Some(value)),
    }
}
