//! Relais: long-running operations and the signed webhooks that report on them.
//! See ARCHITECTURE.md for how the modules fit together.

pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cspro;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod executors;
pub mod lease;
pub mod listen;
pub mod outbound;
pub mod secrets;
pub mod shared;
pub mod store;
pub mod telemetry;
pub mod trace;
