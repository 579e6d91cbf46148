//! The integration-test harness, included by each test binary with `mod support;`.
//!
//! - [`cluster`]: a throw-away PostgreSQL (`initdb`/`pg_ctl` in a temp dir, free port, one role
//!   per authentication method), shared per test binary, with a fresh database per test, and
//!   always stopped (see the cleanup notes there).
//! - [`app`]: a whole pgshape (`App`) with its admin API in front of a fresh database.
//! - [`battery`]: running a client battery direct and through pgshape, checking its events.
//! - [`client`]: connection parameters for those roles and runners for `psql` and `pgbench`.
//! - [`proxy`]: pgshape started in-process in front of a cluster, recording every statement
//!   event ([`EventLog`]) so tests assert exactly what the proxy reported.
//! - [`prometheus`]: a real Prometheus scraping pgshape (exemplars, rule files).
//! - [`raw`]: a byte-level client for malformed-input tests (frames, startup packets, replies).
//! - [`serve`]: the `pgshape serve` binary as a child process.
//! - [`shop`]: the incident's orders and items behind pgshape with a rules directory and the
//!   catalog connection, for the rewrite tests.
//! - [`tls`]: a test CA and server certificate for `ssl = on` clusters and TLS proxies.
//! - [`workload`]: statement templates with random constants, over the simple or extended wire.
//! - [`webdriver`]: headless Chromium through chromedriver, for the admin page.
//! - [`docker`]: the files of docker/ (paths, YAML, the image's settings).
//! - [`otlp`]: a real OTLP/HTTP receiver decoding the spans pgshape exports.
//! - [`pgbin`]: where the server binaries are, and running them as `postgres` when we are root.
//!
//! Real servers only: when PostgreSQL is missing the harness panics with the install command
//! rather than skipping, because a skipped proxy test proves nothing.
// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod battery;
pub mod client;
pub mod cluster;
pub mod docker;
pub mod otlp;
pub mod pgbin;
pub mod prometheus;
pub mod proxy;
pub mod raw;
pub mod serve;
pub mod shop;
pub mod tls;
pub mod util;
pub mod webdriver;
pub mod workload;

pub use client::{AuthUser, CmdOutput, ConnParams, pgbench, psql, psql_c, psql_query};
pub use cluster::PgCluster;
pub use proxy::{EventLog, ProxyUnderTest, RecordedEvent, app_config};
pub use util::{HttpResponse, Rng, feed, http, http_request, java_with_jdbc, jdbc_jar, python};
