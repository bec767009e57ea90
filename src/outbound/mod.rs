//! Requests to the outside world, shared by every loop that makes them: Standard Webhooks
//! signing, the guard that keeps tenants' URLs off private addresses, and the client that
//! builds and sends the one signed POST.

pub mod client;
pub mod guard;
pub mod signing;

pub use client::{OutboundClient, SignedMessage};
