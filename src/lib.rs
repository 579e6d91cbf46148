//! pgshape: a PostgreSQL wire-protocol proxy that times every statement, groups statements by
//! fingerprint, exports per-fingerprint metrics and applies query-shape rules.
//!
//! The house, from the bytes up:
//! - [`protocol`]: frames and the few PostgreSQL messages the proxy must understand. Pure code:
//!   no sockets, no tokio, so it is tested with byte vectors.
//! - [`proxy`]: the listener, per-core runtimes, one session per client with two pumps
//!   (client→server, server→client), TLS and upstream connection set-up, and the statement tracker
//!   that turns the message stream into [`event::StatementEvent`]s.
//! - [`sql`]: the single-pass lexer that fingerprints every statement and splits multi-statement
//!   queries; AST analysis for rules, done once per fingerprint.
//! - [`stats`] and [`admin`]: per-fingerprint statistics, Prometheus exposition, the HTTP admin API.
//! - [`rules`]: rule files, matching on analysis facts, and actions.
//! - [`openmetrics`]: the OpenMetrics text writer (exemplars), beside the crate's 0.0.4 encoder.
//! - [`config`]: the settings every part reads, merged from flags, environment and a TOML file.
//! - [`app`]: assembles all of the above from a config; what `pgshape serve` runs.
//! - [`demo`]: `pgshape demo`, the incident reproduced against a throw-away PostgreSQL.
//! - [`top`] and [`gate`]: `pgshape top`, `snapshot` and `diff`, readers of a running pgshape's
//!   admin API (through [`admin::client`]).
//!
//! `main.rs` is only the command line; everything else lives here so tests and benches use it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod demo;
pub mod event;
pub mod gate;
pub mod openmetrics;
pub mod otel;
pub mod plans;
pub mod protocol;
pub mod proxy;
pub mod rewrite;
pub mod rules;
pub mod sql;
pub mod stats;
pub mod top;
