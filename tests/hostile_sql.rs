//! Hostile SQL through the full pgshape (rules, statistics, metrics): 10,000-deep
//! parentheses, a 10 MB IN list, 1 MB of comments, 100,000 statements in one Query and a
//! 100 MB statement. Each is sent direct and through pgshape, and the client must get the
//! server's own answer (result or error) message for message; the statements the analyzer
//! must not parse are counted in `pgshape_analysis_skipped_total{reason}`.
//! A statement above `max_frame_size` is refused by pgshape itself with a clear FATAL.

mod support;

use std::time::Duration;

use pgshape::app::App;
use support::raw::{self, BackendMsg, RawConn};
use support::{ConnParams, PgCluster};

struct Running {
    app: Option<App>,
    db: ConnParams,
}

impl Running {
    fn start() -> Running {
        Self::start_with(|_| {})
    }

    fn start_with(adjust: impl FnOnce(&mut pgshape::config::Config)) -> Running {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        let mut config = support::app_config(cluster);
        adjust(&mut config);
        let app = App::start(config).expect("pgshape starts");
        Running { app: Some(app), db }
    }

    fn app(&self) -> &App {
        self.app.as_ref().expect("running until dropped")
    }

    fn direct(&self) -> RawConn {
        RawConn::login(self.db.addr(), &self.db.user, &self.db.dbname)
    }

    fn proxied(&self) -> RawConn {
        RawConn::login(self.app().proxy_addr(), &self.db.user, &self.db.dbname)
    }

    /// `pgshape_analysis_skipped_total{reason}` from the admin listener's /metrics.
    fn skipped(&self, reason: &str) -> u64 {
        let (status, body) = support::http(self.app().admin_addr().unwrap(), "GET", "/metrics");
        assert_eq!(status, 200, "{body}");
        let series = format!("pgshape_analysis_skipped_total{{reason=\"{reason}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .trim()
            .parse()
            .expect("a counter value")
    }

    /// Sends `bytes` direct and through pgshape; asserts both answers are the same, message for
    /// message, and returns it.
    fn same_answer(&self, bytes: &[u8]) -> Vec<BackendMsg> {
        let direct = exchange(&mut self.direct(), bytes);
        let proxied = exchange(&mut self.proxied(), bytes);
        assert_eq!(direct.len(), proxied.len(), "message count differs");
        for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
            assert!(d == p, "message {i} differs: direct {d:?}, proxied {p:?}");
        }
        proxied
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}

/// [`raw::exchange`] with room for a debug build to lex 100 MB (no timing is asserted: the
/// deadline only turns a hang into a failure).
fn exchange(conn: &mut RawConn, bytes: &[u8]) -> Vec<BackendMsg> {
    assert!(conn.send(bytes));
    let msgs = conn.read_until(Duration::from_secs(300), |m| m.tag == b'Z');
    assert_eq!(msgs.last().map(|m| m.tag), Some(b'Z'), "no ReadyForQuery");
    msgs
}

fn data_row_text(msgs: &[BackendMsg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            // One column: count (i16), length (i32), value.
            String::from_utf8_lossy(&m.body[6..]).into_owned()
        })
        .collect()
}

fn nested(depth: usize) -> String {
    format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn ten_thousand_parentheses_get_the_servers_answer_unanalysed() {
    let run = Running::start();
    let sql = nested(10_000);
    let before = run.skipped("depth");
    let simple = run.same_answer(&raw::query(&sql));
    let error = simple.iter().find(|m| m.tag == b'E');
    // PostgreSQL's parser stack gives out first (SQLSTATE 54001 or a syntax error): whatever
    // it says, it is the server's answer and not pgshape's.
    let code = error.and_then(|e| e.field(b'C')).unwrap_or_default();
    assert!(!code.is_empty() && !code.starts_with("PGS"), "{simple:?}");
    let extended = run.same_answer(&raw::extended(&sql, &[]));
    assert!(extended.iter().any(|m| m.tag == b'E'), "{extended:?}");
    // Both skipped: the gate judges each execution as it is forwarded, before the answer.
    assert_eq!(run.skipped("depth"), before + 2);

    // Deep but within what the server takes: its result comes back through pgshape.
    let answer = run.same_answer(&raw::query(&nested(1_000)));
    assert_eq!(data_row_text(&answer), ["1"]);
    let answer = run.same_answer(&raw::extended(&nested(1_000), &[]));
    assert_eq!(data_row_text(&answer), ["1"]);
    assert_eq!(run.skipped("depth"), before + 4);
}

#[test]
fn a_ten_megabyte_in_list_gets_the_servers_answer_unanalysed() {
    let run = Running::start();
    let mut sql = String::from("SELECT count(*) FROM generate_series(1, 20) g WHERE g IN (");
    let mut i = 0u64;
    while sql.len() < 10 << 20 {
        sql.push_str(&i.to_string());
        sql.push_str(", ");
        i += 1;
    }
    sql.push_str("-1)");
    let before = run.skipped("size");
    let answer = run.same_answer(&raw::query(&sql));
    assert_eq!(data_row_text(&answer), ["20"]);
    assert_eq!(run.skipped("size"), before + 1);
    // Also in the JSON API, beside the parse failures.
    let (_, rules) = support::http(run.app().admin_addr().unwrap(), "GET", "/api/rules");
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    assert_eq!(rules["analysis_skipped"]["size"], before + 1, "{rules}");
}

#[test]
fn a_megabyte_of_comments_gets_the_servers_answer() {
    let run = Running::start();
    let block = "/* a block comment /* nested */ with ( brackets ' and quotes */\n";
    let line = "-- a line comment with ( ; and 'quotes\n";
    let mut sql = String::from("SELECT 42 AS answer\n");
    while sql.len() < 1 << 20 {
        sql.push_str(block);
        sql.push_str(line);
    }
    let answer = run.same_answer(&raw::query(&sql));
    assert_eq!(data_row_text(&answer), ["42"]);
    let answer = run.same_answer(&raw::extended(&sql, &[]));
    assert_eq!(data_row_text(&answer), ["42"]);
}

#[test]
fn a_hundred_thousand_statements_in_one_query_all_get_answers() {
    let run = Running::start();
    let mut sql = String::new();
    for i in 0..100_000 {
        sql.push_str(&format!("SELECT {i};"));
    }
    let answer = run.same_answer(&raw::query(&sql));
    let completions = answer.iter().filter(|m| m.tag == b'C').count();
    assert_eq!(completions, 100_000);
    let rows = data_row_text(&answer);
    assert_eq!(rows.first().map(String::as_str), Some("0"));
    assert_eq!(rows.last().map(String::as_str), Some("99999"));
}

#[test]
fn a_hundred_megabyte_statement_gets_the_servers_answer_unanalysed() {
    let run = Running::start();
    let payload = 100 << 20;
    let sql = format!("SELECT length('{}')", "x".repeat(payload));
    let before = run.skipped("size");
    let answer = run.same_answer(&raw::query(&sql));
    assert_eq!(data_row_text(&answer), [payload.to_string()]);
    assert_eq!(run.skipped("size"), before + 1);
    // A failing one: the server's error comes back, the session goes on.
    let failing = format!(
        "SELECT length('{}') FROM no_such_table",
        "x".repeat(payload)
    );
    let answer = run.same_answer(&raw::query(&failing));
    let error = answer.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("42P01"));
    assert_eq!(run.skipped("size"), before + 2);
}

/// Above `max_frame_size` (PostgreSQL's own 1 GiB by default) a message cannot be relayed:
/// pgshape answers with a protocol-violation FATAL naming the limit and closes, as the server
/// does for a message over its limit; other sessions and new connections are unaffected.
#[test]
fn a_statement_above_the_frame_limit_gets_a_clear_fatal() {
    let run = Running::start_with(|config| config.max_frame_size = 1 << 20);
    let mut bystander = run.proxied();
    let mut conn = run.proxied();
    conn.send(&raw::query(&format!("SELECT '{}'", "x".repeat(2 << 20))));
    let (msgs, closed) = conn.read_to_close(Duration::from_secs(30));
    let fatal = msgs.iter().find(|m| m.tag == b'E').expect("a FATAL");
    assert_eq!(fatal.field(b'S').as_deref(), Some("FATAL"), "{msgs:?}");
    assert_eq!(fatal.field(b'C').as_deref(), Some("08P01"), "{msgs:?}");
    let message = fatal.field(b'M').unwrap_or_default();
    assert!(message.contains("over the limit"), "{message}");
    assert!(closed);
    let answer = raw::exchange(&mut bystander, &raw::query("SELECT 7"));
    assert_eq!(data_row_text(&answer), ["7"]);
    let answer = raw::exchange(&mut run.proxied(), &raw::query("SELECT 8"));
    assert_eq!(data_row_text(&answer), ["8"]);
}
