//! Where a multi-statement query string is cut.

use crate::sql::split_statements;

#[track_caller]
fn split(sql: &str) -> Vec<&str> {
    split_statements(sql.as_bytes()).map(|r| &sql[r]).collect()
}

#[test]
fn plain_statements() {
    assert_eq!(split("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
    assert_eq!(split("SELECT 1;"), ["SELECT 1"]);
    assert_eq!(split("  SELECT 1  "), ["SELECT 1"]);
}

#[test]
fn empty_and_comment_only_statements_are_skipped() {
    assert!(split("").is_empty());
    assert!(split(" ; ;; -- nothing\n ; /* c */").is_empty());
    assert_eq!(split(";;SELECT 1;; ;"), ["SELECT 1"]);
}

#[test]
fn semicolons_inside_quotes_and_comments_do_not_split() {
    assert_eq!(split("SELECT ';'; SELECT 2"), ["SELECT ';'", "SELECT 2"]);
    assert_eq!(
        split("SELECT 'it''s;'; SELECT 2"),
        ["SELECT 'it''s;'", "SELECT 2"]
    );
    assert_eq!(
        split(r"SELECT E'\';'; SELECT 2"),
        [r"SELECT E'\';'", "SELECT 2"]
    );
    assert_eq!(
        split(r#"SELECT "a;b"; SELECT 2"#),
        [r#"SELECT "a;b""#, "SELECT 2"]
    );
    assert_eq!(
        split("SELECT 1 -- ;\n; SELECT 2"),
        ["SELECT 1 -- ;", "SELECT 2"]
    );
    assert_eq!(
        split("SELECT /* ; /* ; */ ; */ 1; SELECT 2"),
        ["SELECT /* ; /* ; */ ; */ 1", "SELECT 2"]
    );
    assert_eq!(split("SELECT 'abc; SELECT 2"), ["SELECT 'abc; SELECT 2"]);
}

#[test]
fn dollar_quotes_do_not_split() {
    assert_eq!(
        split("DO $$ BEGIN PERFORM 1; END $$; SELECT 1"),
        ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 1"]
    );
    assert_eq!(
        split("CREATE FUNCTION f() RETURNS int AS $fn$ SELECT $$;$$; $fn$ LANGUAGE sql; SELECT 1"),
        [
            "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT $$;$$; $fn$ LANGUAGE sql",
            "SELECT 1"
        ]
    );
}

#[test]
fn parentheses_do_not_split() {
    let rule = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))";
    assert_eq!(split(&format!("{rule}; SELECT 1")), [rule, "SELECT 1"]);
}

#[test]
fn begin_atomic_bodies_do_not_split() {
    let f = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END";
    assert_eq!(split(&format!("{f}; SELECT 2")), [f, "SELECT 2"]);
    let p = "create or replace procedure p() begin atomic insert into t values (1); end";
    assert_eq!(split(&format!("{p};call p()")), [p, "call p()"]);
    // A transaction BEGIN is not a block.
    assert_eq!(
        split("BEGIN; SELECT 1; COMMIT"),
        ["BEGIN", "SELECT 1", "COMMIT"]
    );
    assert_eq!(
        split("SELECT CASE WHEN a THEN 1 END FROM t; BEGIN; END"),
        ["SELECT CASE WHEN a THEN 1 END FROM t", "BEGIN", "END"]
    );
}

#[test]
fn trailing_comments_stay_with_their_statement() {
    assert_eq!(
        split("SELECT 1 /*route='a'*/; SELECT 2 /*route='b'*/"),
        ["SELECT 1 /*route='a'*/", "SELECT 2 /*route='b'*/"]
    );
}

#[test]
fn single_statement_fast_path_agrees_with_lexing() {
    assert_eq!(split("  SELECT 1  "), ["SELECT 1"]);
    assert_eq!(split("SELECT 1 ;\n"), ["SELECT 1"]);
    assert_eq!(split("SELECT ';'"), ["SELECT ';'"]);
    assert_eq!(split("SELECT 1 /* c */"), ["SELECT 1 /* c */"]);
    assert_eq!(split(";"), Vec::<&str>::new());
    assert_eq!(split(" -- only a comment"), Vec::<&str>::new());
    assert_eq!(split("/* c */ SELECT 1"), ["/* c */ SELECT 1"]);
    assert_eq!(split("- -1"), ["- -1"]);
    assert_eq!(split("x"), ["x"]);
}

/// One statement ending in `;` is cut without lexing only where nothing can hide the `;`; each
/// of these must come out exactly as the lexer cuts it, on whichever path it takes.
#[test]
fn trailing_semicolon_fast_path_agrees_with_lexing() {
    let cases = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
        "SELECT 'a;b', \"x\"\"y\" FROM t WHERE s = 'it''s' ;  \n",
        "SELECT (1);",
        "SELECT (1;",
        "SELECT 1);",
        "SELECT 'unterminated;",
        "SELECT \"a'b\" 'c;",
        "SELECT E'\\';",
        "SELECT $$;",
        "SELECT $1;",
        "SELECT 1 -- trailing comment;",
        "SELECT 1 -- comment\n;",
        "SELECT 1 /* c */;",
        "SELECT 1 /* open;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;",
        "create table t (a int);",
        ";",
        "   ;  ",
        "SELECT 1;;",
        "SELECT 1; SELECT 2;",
    ];
    for sql in cases {
        let fast: Vec<_> = split_statements(sql.as_bytes()).collect();
        let slow: Vec<_> = crate::sql::split::split_statements_by_lexing(sql.as_bytes()).collect();
        assert_eq!(fast, slow, "for {sql:?}");
    }
    assert_eq!(
        split("SELECT abalance FROM pgbench_accounts WHERE aid = 42;"),
        ["SELECT abalance FROM pgbench_accounts WHERE aid = 42"]
    );
}
