//! Request bodies and queries as clients send them (`…Body`, `…Query`: deserialized
//! leniently, so that each mistake can be reported by the name of its field), and their
//! conversion into the checked values of `domain`, whose rules the conversions apply.

pub mod batches;
pub mod operations;
pub mod push_workers;
pub mod query;
pub mod retry;
pub mod webhooks;
pub mod workers;
