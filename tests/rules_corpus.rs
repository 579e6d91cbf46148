//! Every statement of `tests/corpus/*.sql` through the shipped rules with the heuristic oracle:
//! exactly the rules named in its `-- expect:` line must hit, no more, no fewer; and the same
//! statement with `$n` parameters instead of literals must have identical structural facts and
//! hit the same rules (except those that need a literal's value).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use pgshape::rules::{ConnectionRuleState, RuleEngine, RuleSet, StatementInput};
use pgshape::sql::analysis::analyze;
use pgshape::sql::{fingerprint, split_statements};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Rules whose match needs a literal's value; a `$n` form cannot trigger them.
const VALUE_RULES: &[&str] = &["leading-wildcard-like"];

struct Case {
    file: String,
    name: String,
    sql: String,
    expect: BTreeSet<String>,
    params: bool,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("corpus file");
        for range in split_statements(text.as_bytes()) {
            let sql = &text[range];
            let mut name = None;
            let mut expect = None;
            let mut params = true;
            for line in sql.lines() {
                let line = line.trim();
                if let Some(v) = line.strip_prefix("-- name:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("-- expect:") {
                    // `none (alone); n-plus-one when …` → the list before any explanation.
                    let list = v.split(['(', ';']).next().unwrap_or("");
                    expect = Some(
                        list.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty() && s != "none")
                            .collect::<BTreeSet<_>>(),
                    );
                } else if line == "-- params: no" {
                    params = false;
                }
            }
            let (Some(name), Some(expect)) = (name, expect) else {
                // A statement without annotations (a file header) is not a case.
                assert!(
                    sql.lines()
                        .all(|l| l.trim().is_empty() || l.trim().starts_with("--")),
                    "{}: statement without -- name/-- expect: {sql}",
                    path.display()
                );
                continue;
            };
            out.push(Case {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                name,
                sql: sql.to_owned(),
                expect,
                params,
            });
        }
    }
    out
}

/// Literals become `$1, $2, …` as psycopg 3 / asyncpg send them; LIMIT/OFFSET stay literal
/// (Django and SQLAlchemy render them into the text).
fn parameterize(sql: &str) -> String {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize().expect("tokenize");
    let mut out = String::new();
    let mut n = 0;
    let mut last_word = None;
    for token in tokens {
        let literal = matches!(token, Token::Number(..) | Token::SingleQuotedString(_));
        let keep = matches!(last_word, Some(Keyword::LIMIT | Keyword::OFFSET));
        if literal && !keep {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push_str(&token.to_string());
        }
        if !matches!(token, Token::Whitespace(_)) {
            last_word = match &token {
                Token::Word(w) => Some(w.keyword),
                _ => None,
            };
        }
    }
    out
}

fn hits(engine: &RuleEngine, sql: &str) -> BTreeSet<String> {
    let mut conn = ConnectionRuleState::new();
    let input = StatementInput {
        sql: sql.as_bytes(),
        fingerprint: fingerprint(sql.as_bytes()),
        database: "shop",
        user: "app",
        application_name: "corpus",
    };
    engine
        .evaluate(&input, &mut conn, Instant::now())
        .hits
        .iter()
        .map(|h| h.id().to_owned())
        .collect()
}

#[test]
fn corpus_hits_exactly_the_expected_rules() {
    let engine = RuleEngine::from_rule_set(RuleSet::embedded(Default::default()).expect("rules"));
    let cases = cases();
    assert!(
        cases.len() >= 100,
        "corpus has only {} statements",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut param_forms = 0;
    for case in &cases {
        let got = hits(&engine, &case.sql);
        if got != case.expect {
            failures.push(format!(
                "{} {}: expected {:?}, got {:?}",
                case.file, case.name, case.expect, got
            ));
        }
        if !case.params {
            continue;
        }
        let param_sql = parameterize(&case.sql);
        if param_sql == case.sql {
            continue;
        }
        param_forms += 1;
        match (analyze(case.sql.as_bytes()), analyze(param_sql.as_bytes())) {
            (Ok(a), Ok(b)) if a != b => failures.push(format!(
                "{} {}: $n form has other facts:\n{a:?}\n{b:?}",
                case.file, case.name
            )),
            (Ok(_), Err(e)) => failures.push(format!(
                "{} {}: $n form does not parse ({e}): {param_sql}",
                case.file, case.name
            )),
            _ => {}
        }
        let expect: BTreeSet<String> = case
            .expect
            .iter()
            .filter(|r| !VALUE_RULES.contains(&r.as_str()))
            .cloned()
            .collect();
        let got = hits(&engine, &param_sql);
        if got != expect {
            failures.push(format!(
                "{} {} ($n form): expected {expect:?}, got {got:?}\n{param_sql}",
                case.file, case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        param_forms >= 50,
        "only {param_forms} statements had a $n form"
    );
}

#[test]
fn every_shipped_rule_is_exercised_by_the_corpus() {
    let rules = RuleSet::embedded(Default::default()).expect("rules");
    let expected: BTreeSet<String> = cases().into_iter().flat_map(|c| c.expect).collect();
    for rule in &rules.rules {
        // n-plus-one needs repetition on a connection and unbounded-select a catalog; both
        // have their own tests.
        if matches!(&*rule.id, "n-plus-one" | "unbounded-select") {
            continue;
        }
        assert!(
            expected.contains(&*rule.id),
            "no corpus statement expects {}",
            rule.id
        );
    }
}
