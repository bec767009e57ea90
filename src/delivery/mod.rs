//! Getting events out: signing, sending, and the outbox dispatcher.

pub mod signing;
