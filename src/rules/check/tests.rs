use std::path::PathBuf;

use super::*;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn check(opts: &CheckOptions, stdin: &str) -> (CheckOutcome, String) {
    let mut out = Vec::new();
    let outcome =
        run_with_stdin(opts, &mut stdin.as_bytes(), &mut out).unwrap_or_else(|e| panic!("{e}"));
    (outcome, String::from_utf8(out).expect("utf-8 report"))
}

fn line_of(path: &PathBuf, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("corpus");
    text.lines()
        .position(|l| l.starts_with(needle))
        .expect("needle")
        + 1
}

#[test]
fn human_report_on_the_django_corpus_fails_on_warning() {
    let path = corpus("django-orders.sql");
    let opts = CheckOptions {
        inputs: vec![path.clone()],
        fail_on: Severity::Warning,
        ..CheckOptions::default()
    };
    let (outcome, text) = check(&opts, "");
    assert_eq!((outcome.statements, outcome.hits), (11, 3));
    assert!(outcome.failed);
    let line = line_of(
        &path,
        "SELECT DISTINCT \"shop_order\".\"id\", \"shop_order\".\"customer_id\"",
    );
    let expected = format!(
        "{}:{line}: warning [distinct-over-fanout-join] DISTINCT removes duplicates",
        path.display()
    );
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("hint: use EXISTS / a semi-join"), "{text}");
    assert!(
        text.contains("11 statements checked, 3 rule hits"),
        "{text}"
    );

    // Only warnings in there: --fail-on error passes.
    let opts = CheckOptions {
        fail_on: Severity::Error,
        ..opts
    };
    assert!(!check(&opts, "").0.failed);
}

#[test]
fn whole_corpus_fails_with_fail_on_warning() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    inputs.sort();
    let opts = CheckOptions {
        inputs,
        fail_on: Severity::Warning,
        ..CheckOptions::default()
    };
    let (outcome, _) = check(&opts, "");
    assert!(outcome.statements >= 100 && outcome.failed);
    assert_eq!(
        outcome.parse_failures, 1,
        "only hand-unparsable does not parse"
    );
}

#[test]
fn json_github_and_junit_formats() {
    let sql = "SELECT 1;\nDELETE FROM sessions;\nSELECT * FROM t WHERE name LIKE '%x';\n";
    let base = CheckOptions {
        inputs: vec!["-".into()],
        ..CheckOptions::default()
    };
    let (outcome, json) = check(
        &CheckOptions {
            format: Format::Json,
            ..base.clone()
        },
        sql,
    );
    assert!(outcome.failed, "the DELETE is an error");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(doc["totals"]["statements"], 3);
    assert_eq!(doc["hits"][0]["rule"], "update-or-delete-without-where");
    assert_eq!(doc["hits"][0]["line"], 2);
    assert_eq!(doc["hits"][0]["severity"], "error");
    assert_eq!(doc["hits"][0]["action"], "observe");
    assert_eq!(doc["hits"][1]["rule"], "leading-wildcard-like");
    assert_eq!(doc["hits"][1]["line"], 3);

    let (_, gh) = check(
        &CheckOptions {
            format: Format::Github,
            ..base.clone()
        },
        sql,
    );
    let lines: Vec<&str> = gh.lines().collect();
    assert!(
        lines[0].starts_with("::error file=<stdin>,line=2,title=update-or-delete-without-where::UPDATE/DELETE without WHERE"),
        "{gh}"
    );
    assert!(
        lines[1].starts_with("::warning file=<stdin>,line=3,title=leading-wildcard-like::"),
        "{gh}"
    );

    let (_, xml) = check(
        &CheckOptions {
            format: Format::Junit,
            ..base
        },
        sql,
    );
    assert!(
        xml.contains(r#"<testsuite name="pgshape check" tests="3" failures="2">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase classname="&lt;stdin&gt;" name="&lt;stdin&gt;:1"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<failure type="update-or-delete-without-where""#),
        "{xml}"
    );
    assert!(xml.contains("LIKE &apos;%x&apos;"), "{xml}");
}

#[test]
fn postgres_log_with_durations_and_continuations() {
    let log = "2025-09-04 11:42:01.123 UTC [4242] app@shop LOG:  duration: 8512.331 ms  statement: SELECT DISTINCT o.id\n\tFROM orders o JOIN order_items i ON i.order_id = o.id\n\tLIMIT 25\n\
2025-09-04 11:42:02.000 UTC [4243] app@shop LOG:  statement: UPDATE t SET a = 1\n\
2025-09-04 11:42:03.000 UTC [4244] app@shop LOG:  duration: 0.5 ms  execute <unnamed>: SELECT * FROM t WHERE id NOT IN (SELECT t_id FROM u)\n\
2025-09-04 11:42:03.000 UTC [4244] app@shop DETAIL:  parameters: $1 = '5'\n\
2025-09-04 11:42:04.000 UTC [4245] app@shop LOG:  checkpoint starting: time\n";
    assert_eq!(input::detect(log), InputKind::PostgresLog);
    let stmts = input::statements(log, InputKind::PostgresLog);
    assert_eq!(stmts.len(), 3);
    assert_eq!(stmts[0].line, 1);
    assert!(stmts[0].sql.contains("JOIN order_items i"));
    assert_eq!(stmts[1].line, 4);
    let opts = CheckOptions {
        inputs: vec!["-".into()],
        format: Format::Json,
        ..CheckOptions::default()
    };
    let (_, json) = check(&opts, log);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    let rules: Vec<(&str, u64)> = doc["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| {
            (
                h["rule"].as_str().unwrap_or(""),
                h["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("distinct-over-fanout-join", 1),
            ("update-or-delete-without-where", 4),
            ("not-in-subquery", 5)
        ]
    );
}

#[test]
fn pgshape_json_statement_log() {
    let log = r#"{"timestamp":"2025-09-04T11:42:01Z","level":"INFO","fields":{"message":"slow statement","fingerprint":"00000000000000ab","query":"SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id","database":"shop","user":"app","application_name":"django"},"target":"pgshape::slow"}
{"query":"SELECT 1"}
not json
"#;
    assert_eq!(input::detect(log), InputKind::JsonLines);
    let stmts = input::statements(log, InputKind::JsonLines);
    assert_eq!(stmts.len(), 2);
    assert_eq!(stmts[0].database, "shop");
    assert_eq!(stmts[0].application_name, "django");
    let opts = CheckOptions {
        inputs: vec!["-".into()],
        ..CheckOptions::default()
    };
    let (outcome, text) = check(&opts, log);
    assert_eq!((outcome.statements, outcome.hits), (2, 1));
    assert!(
        text.contains("<stdin>:1: warning [distinct-over-fanout-join]"),
        "{text}"
    );
}

#[test]
fn unreadable_input_and_broken_rules_are_errors() {
    let opts = CheckOptions {
        inputs: vec!["/nonexistent/file.sql".into()],
        ..CheckOptions::default()
    };
    let err = run_with_stdin(&opts, &mut &b""[..], &mut Vec::new()).expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/file.sql"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.toml"), "id = \"x\"\nbogus = 1\n").expect("write");
    let opts = CheckOptions {
        inputs: vec!["-".into()],
        rules_dir: Some(dir.path().to_owned()),
        ..CheckOptions::default()
    };
    let err = run_with_stdin(&opts, &mut &b"SELECT 1"[..], &mut Vec::new()).expect_err("bad rules");
    assert!(err.to_string().contains("bad.toml:2:"), "{err}");
}

#[test]
fn rewriting_rules_say_what_they_would_send() {
    let sql = "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id;\n\
               DELETE FROM sessions;\n";
    let base = CheckOptions {
        inputs: vec!["-".into()],
        ..CheckOptions::default()
    };
    // No catalog: the built-in rewrite is not proposed, and the report says what is missing.
    let (_, text) = check(&base, sql);
    let needs = format!("    rewrite not proposed: {}\n", rewrite::NEEDS_SCHEMA_DSN);
    assert_eq!(text.matches(&needs).count(), 1, "{text}");
    // A rule without a rewrite prints as it always did.
    assert!(
        text.contains(
            "    DELETE FROM sessions\n    hint: add a WHERE clause; to really empty a table use \
             TRUNCATE, or WHERE true to say you mean it\n2 statements checked"
        ),
        "{text}"
    );
    let (_, json) = check(
        &CheckOptions {
            format: Format::Json,
            ..base.clone()
        },
        sql,
    );
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(doc["hits"][0]["rule"], "distinct-over-fanout-join");
    assert_eq!(
        doc["hits"][0]["rewrite"]["not_proposed"],
        rewrite::NEEDS_SCHEMA_DSN
    );
    assert_eq!(doc["hits"][1]["rule"], "update-or-delete-without-where");
    assert!(doc["hits"][1].get("rewrite").is_none(), "{json}");

    let (_, xml) = check(
        &CheckOptions {
            format: Format::Junit,
            ..base
        },
        sql,
    );
    assert!(
        xml.contains("\nrewrite not proposed: needs --schema-dsn"),
        "{xml}"
    );
}
