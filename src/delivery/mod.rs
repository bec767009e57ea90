//! Getting events out: signing, target checks, and the outbox dispatcher.

pub mod dispatcher;
pub mod signing;
pub mod target;
