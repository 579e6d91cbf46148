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

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::client::run_with_timeout;
use support::{AuthUser, ConnParams, battery};

fn jdbc_jar() -> PathBuf {
    let jar = std::env::var_os("PGSHAPE_JDBC_JAR").map_or_else(
        || PathBuf::from("/usr/share/java/postgresql.jar"),
        PathBuf::from,
    );
    assert!(
        jar.is_file(),
        "the PostgreSQL JDBC driver is not at {}: apt-get install -y libpostgresql-jdbc-java \
         (.ci/run does), or set PGSHAPE_JDBC_JAR",
        jar.display()
    );
    jar
}

fn run_battery(conn: &ConnParams) -> Value {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java/JdbcBattery.java");
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(jdbc_jar())
        .arg(source)
        .args([&conn.host, &conn.port.to_string(), &conn.dbname, &conn.user])
        .arg(conn.password.clone().unwrap_or_default());
    let out = run_with_timeout(cmd, None, Duration::from_secs(180));
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("the JDBC battery printed no JSON ({e}):\n{}", out.stdout))
}

#[test]
fn pgjdbc_battery_is_identical_direct_and_proxied_with_one_event_per_statement() {
    battery::direct_and_proxied("JdbcBattery.java", AuthUser::Scram, run_battery);
}
