//! Getting events out: the outbox dispatcher, and how it sends Slack messages and mails.

pub mod dispatcher;
mod endpoint;
pub mod notify;
