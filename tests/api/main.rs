//! Black-box tests: each starts the real server on a free port against a fresh database,
//! once per backend, and talks HTTP to it.

mod common;
mod receiver;
mod smtp;
mod sync_source;

mod batches;
mod breakout;
mod breakout_csweb;
mod breakout_limits;
mod cli;
mod console;
mod contract;
mod crash;
mod engine;
mod event_stream;
mod executors;
mod fuzz;
mod health;
mod isolation;
mod lifecycle;
mod listen;
mod listing;
mod logs;
mod metrics;
mod notebook_replicas;
mod notebooks;
mod notifications;
mod oauth;
mod openapi;
mod push_workers;
mod quickstart;
mod rate_limits;
mod secrets;
mod security;
mod seed000;
mod seed001;
mod seed_clients;
mod shutdown;
mod sync_failures;
mod syncs;
mod tasks;
mod traces;
mod webhook_rate_limits;
mod webhooks;
mod workers;
