//! pgjdbc, the PostgreSQL JDBC driver, through pgshape: tests/java/JdbcBattery.java runs once
//! directly and once through the proxy (see [`support::battery`]): identical results, and one
//! event per statement with the server's tag, rows and SQLSTATE — including pgjdbc's named
//! server-side statements, pipelined batches, a failing batch, chunked portal fetches,
//! generated keys, COPY through CopyManager and a query timeout's CancelRequest.
//!
//! Needs a JDK (the battery is a single source file run by `java`) and the driver jar from
//! Debian's `libpostgresql-jdbc-java` (`/usr/share/java/postgresql.jar`, or `PGSHAPE_JDBC_JAR`);
//! `.ci/run` installs both.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::client::run_json;
use support::{AuthUser, ConnParams, battery, java_with_jdbc};

fn run_battery(conn: &ConnParams) -> Value {
    let mut cmd = java_with_jdbc("JdbcBattery.java");
    cmd.args([&conn.host, &conn.port.to_string(), &conn.dbname, &conn.user])
        .arg(conn.password.clone().unwrap_or_default());
    run_json("the JDBC battery", cmd, Duration::from_secs(180))
}

#[test]
fn pgjdbc_battery_is_identical_direct_and_proxied_with_one_event_per_statement() {
    battery::direct_and_proxied("JdbcBattery.java", AuthUser::Scram, run_battery);
}
