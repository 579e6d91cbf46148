//! Real Python drivers through pgshape: each battery in tests/python runs once against the
//! server directly and once through the proxy; the two outputs must be identical, and every
//! statement the battery knows it ran must have produced exactly one event with the server's
//! command tag, row count and SQLSTATE.
//!
//! Needs the drivers of tests/python/requirements.txt in a venv: `.ci/run` makes `.venv`, or
//! point `PGSHAPE_PYTHON` at an interpreter that has them.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::client::run_json;
use support::{AuthUser, ConnParams, battery, python};

/// How the battery wants its connection string.
#[derive(Clone, Copy)]
enum Dsn {
    Libpq,
    Url,
}

fn run_battery(script: &str, conn: &ConnParams, dsn: Dsn) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let mut cmd = Command::new(python());
    cmd.arg(dir.join(script))
        .arg(match dsn {
            Dsn::Libpq => conn.dsn(),
            Dsn::Url => conn.url(),
        })
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PGCONNECT_TIMEOUT", "10");
    run_json(script, cmd, Duration::from_secs(180))
}

fn direct_and_proxied(script: &str, user: AuthUser, dsn: Dsn) {
    battery::direct_and_proxied(script, user, |conn| run_battery(script, conn, dsn));
}

#[test]
fn psycopg2_simple_protocol_battery() {
    direct_and_proxied("battery_psycopg2.py", AuthUser::Md5, Dsn::Libpq);
}

#[test]
fn psycopg3_pipeline_and_server_side_binding_battery() {
    direct_and_proxied("battery_psycopg3.py", AuthUser::Scram, Dsn::Libpq);
}

#[test]
fn asyncpg_prepared_binary_copy_and_cancel_battery() {
    direct_and_proxied("battery_asyncpg.py", AuthUser::Cleartext, Dsn::Url);
}
