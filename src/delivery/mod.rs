//! Getting events out: the outbox dispatcher.

pub mod dispatcher;
