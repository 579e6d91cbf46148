use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::sql::analysis::TableRef;
use crate::sql::{Fingerprint, fingerprint};

const INCIDENT: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B') ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;

fn shipped() -> RuleEngine {
    RuleEngine::from_rule_set(RuleSet::embedded(Mode::Enforce).expect("shipped rules load"))
}

fn input(sql: &str) -> StatementInput<'_> {
    StatementInput {
        sql: sql.as_bytes(),
        fingerprint: fingerprint(sql.as_bytes()),
        database: "shop",
        user: "app",
        application_name: "django",
    }
}

fn eval(engine: &RuleEngine, sql: &str) -> Verdict {
    engine.evaluate(&input(sql), &mut ConnectionRuleState::new(), Instant::now())
}

fn ids(v: &Verdict) -> Vec<&str> {
    v.hits.iter().map(|h| h.id()).collect()
}

fn one_rule(toml: &str, mode: Mode) -> RuleEngine {
    let set = RuleSet::from_sources("test", &[("t.toml".into(), toml.into())], mode)
        .unwrap_or_else(|e| panic!("{e}"));
    RuleEngine::from_rule_set(set)
}

#[test]
fn incident_shape_is_flagged_by_the_heuristic() {
    let v = eval(&shipped(), INCIDENT);
    assert_eq!(ids(&v), ["distinct-over-fanout-join"]);
    assert_eq!(v.hits[0].decided_by, Some(OracleKind::Heuristic));
    assert!(v.hits[0].message().contains("judged by heuristic"));
    assert_eq!(v.action, VerdictAction::Allow, "shipped action is observe");
}

#[test]
fn fanout_negatives_and_positives() {
    let e = shipped();
    let flagged = |sql: &str| ids(&eval(&e, sql)).contains(&"distinct-over-fanout-join");
    assert!(!flagged("SELECT DISTINCT status FROM shop_order"));
    assert!(!flagged(
        "SELECT DISTINCT i.id, o.status FROM shop_orderitem i JOIN shop_order o ON i.order_id = o.id"
    ));
    assert!(flagged(
        "SELECT DISTINCT p.id FROM posts p JOIN post_tags pt ON pt.post_id = p.id JOIN tags t ON t.id = pt.tag_id WHERE t.name = 'x'"
    ));
    assert!(flagged(
        "SELECT COUNT(*) FROM (SELECT DISTINCT o.id FROM orders o JOIN items i ON o.id = i.order_id) subquery"
    ));
    assert!(!flagged(
        "SELECT o.id FROM orders o JOIN items i ON o.id = i.order_id"
    ));
}

/// A fixed uniqueness table standing in for a catalog snapshot, to test the judgement logic
/// (multi-column keys, constants in ON) without a server; the real catalog has its own test.
#[derive(Debug)]
struct Keys(HashMap<&'static str, Vec<Vec<&'static str>>>);

impl UniquenessOracle for Keys {
    fn uniqueness(&self, _db: &str, table: Option<&TableRef>, columns: &[&str]) -> Uniqueness {
        let unique = table
            .and_then(|t| self.0.get(t.name.as_str()))
            .map(|keys| keys.iter().any(|k| k.iter().all(|c| columns.contains(c))));
        Uniqueness {
            unique,
            decided_by: OracleKind::Catalog,
        }
    }
}

#[test]
fn multi_column_keys_must_be_covered() {
    let keys = Keys(HashMap::from([
        ("products", vec![vec!["id"]]),
        (
            "product_prices",
            vec![vec!["id"], vec!["product_id", "currency"]],
        ),
    ]));
    let engine = shipped().with_oracle(Arc::new(keys));
    let covered = "SELECT DISTINCT p.id FROM products p JOIN product_prices pp ON pp.product_id = p.id AND pp.currency = 'EUR'";
    assert!(eval(&engine, covered).hits.is_empty());
    let partial =
        "SELECT DISTINCT p.id FROM products p JOIN product_prices pp ON pp.product_id = p.id";
    let v = eval(&engine, partial);
    assert_eq!(ids(&v), ["distinct-over-fanout-join"]);
    assert_eq!(v.hits[0].decided_by, Some(OracleKind::Catalog));
}

#[test]
fn block_in_enforce_and_observe_in_shadow() {
    let sql = "DELETE FROM sessions";
    // Shipped as it is, the rule only observes: transparent by default.
    let v = eval(&shipped(), sql);
    assert_eq!(ids(&v), ["update-or-delete-without-where"]);
    assert_eq!(v.hits[0].action, Action::Observe);
    assert_eq!(v.action, VerdictAction::Allow);

    let guard = |mode| {
        let set = RuleSet::embedded(mode)
            .and_then(|set| set.with_policy(Some(Severity::Error), &Default::default()))
            .expect("rules");
        RuleEngine::from_rule_set(set)
    };
    let v = eval(&guard(Mode::Enforce), sql);
    assert_eq!(ids(&v), ["update-or-delete-without-where"]);
    let VerdictAction::Block {
        rule,
        message,
        hint,
    } = &v.action
    else {
        panic!("not blocked: {:?}", v.action);
    };
    assert_eq!(rule, "update-or-delete-without-where");
    assert!(message.contains("every row"));
    assert!(hint.as_deref().is_some_and(|h| h.contains("WHERE")));

    let v = eval(&guard(Mode::Shadow), sql);
    assert_eq!(ids(&v), ["update-or-delete-without-where"]);
    assert_eq!(v.hits[0].action, Action::Observe);
    assert_eq!(v.action, VerdictAction::Allow);
}

const WARN_DISTINCT: &str = r#"
id = "warn-distinct"
description = "d"
severity = "warning"
action = "warn"
message = "m"
hint = "h"
[match]
distinct_over_fanout_join = true
"#;

#[test]
fn warn_produces_notices_and_shadow_silences_them() {
    let v = eval(&one_rule(WARN_DISTINCT, Mode::Enforce), INCIDENT);
    assert_eq!(
        v.action,
        VerdictAction::Warn {
            notices: vec![Notice {
                rule: "warn-distinct".into(),
                message: "m [fan-out judged by heuristic]".into(),
                hint: Some("h".into()),
            }]
        }
    );
    let v = eval(&one_rule(WARN_DISTINCT, Mode::Shadow), INCIDENT);
    assert_eq!(v.action, VerdictAction::Allow);
    assert_eq!(v.hits.len(), 1);
}

#[test]
fn scope_limits_where_a_rule_applies() {
    let rule = WARN_DISTINCT.replace("[match]", "[scope]\napplication_name = \"rails*\"\n[match]");
    assert!(
        eval(&one_rule(&rule, Mode::Enforce), INCIDENT)
            .hits
            .is_empty()
    );
    let rule = WARN_DISTINCT.replace(
        "[match]",
        "[scope]\napplication_name = \"djan*\"\ndatabases = [\"shop\"]\n[match]",
    );
    assert_eq!(
        eval(&one_rule(&rule, Mode::Enforce), INCIDENT).hits.len(),
        1
    );
}

#[test]
fn fingerprint_and_comment_matches() {
    let fp = fingerprint(INCIDENT.as_bytes());
    let rule = format!(
        "id = \"hotfix\"\ndescription = \"d\"\nseverity = \"error\"\naction = \"block\"\nmessage = \"m\"\n[match]\nfingerprint = \"{fp}\"\n"
    );
    let engine = one_rule(&rule, Mode::Enforce);
    assert!(matches!(
        eval(&engine, INCIDENT).action,
        VerdictAction::Block { .. }
    ));
    assert!(eval(&engine, "SELECT 1").hits.is_empty());

    let rule = "id = \"route\"\ndescription = \"d\"\nseverity = \"info\"\nmessage = \"m\"\n[match]\nstatement = \"select\"\ncomment = { route = \"api/orders*\" }\n";
    let engine = one_rule(rule, Mode::Enforce);
    assert_eq!(
        eval(&engine, "SELECT 1 /*route='api/orders/'*/").hits.len(),
        1
    );
    assert!(
        eval(&engine, "SELECT 1 /*route='api/users/'*/")
            .hits
            .is_empty()
    );
    assert!(eval(&engine, "SELECT 1").hits.is_empty());
}

const LOOKUP: &str =
    r#"SELECT "shop_order"."id" FROM "shop_order" WHERE "shop_order"."id" = 123 LIMIT 21"#;

#[test]
fn n_plus_one_in_a_transaction() {
    let engine = shipped();
    let mut conn = ConnectionRuleState::new();
    let start = Instant::now();
    conn.on_ready_for_query(b'T');
    let mut flagged = Vec::new();
    for i in 0..50u64 {
        // One lookup every 100 ms: far outside the burst window, inside one transaction.
        let now = start + Duration::from_millis(100 * i);
        let sql = LOOKUP.replace("123", &(100 + i).to_string());
        let v = engine.evaluate(&input(&sql), &mut conn, now);
        flagged.push(ids(&v).contains(&"n-plus-one"));
    }
    assert!(flagged[..10].iter().all(|f| !f), "first 10 are fine");
    assert!(flagged[10..].iter().all(|f| *f), "11th onwards is n+1");
    // COMMIT: the next transaction starts counting again.
    conn.on_ready_for_query(b'I');
    conn.on_ready_for_query(b'T');
    let later = start + Duration::from_secs(60);
    assert!(
        engine
            .evaluate(&input(LOOKUP), &mut conn, later)
            .hits
            .is_empty()
    );
}

#[test]
fn n_plus_one_burst_outside_a_transaction_but_not_one_big_query() {
    let engine = shipped();
    let mut conn = ConnectionRuleState::new();
    let start = Instant::now();
    let mut hits = 0;
    for i in 0..50u64 {
        conn.on_ready_for_query(b'I');
        let v = engine.evaluate(&input(LOOKUP), &mut conn, start + Duration::from_millis(i));
        hits += usize::from(ids(&v).contains(&"n-plus-one"));
    }
    assert_eq!(hits, 40);
    // The same 50 rows fetched by one query: one execution, nothing repeated.
    let mut conn = ConnectionRuleState::new();
    let ids_list: Vec<String> = (100..150).map(|i| i.to_string()).collect();
    let one = format!(
        r#"SELECT "shop_order"."id" FROM "shop_order" WHERE "shop_order"."id" IN ({})"#,
        ids_list.join(", ")
    );
    assert!(
        engine
            .evaluate(&input(&one), &mut conn, start)
            .hits
            .is_empty()
    );
    // Slow repetition (2 s apart, autocommit) is not a burst.
    let mut conn = ConnectionRuleState::new();
    for i in 0..50u64 {
        let v = engine.evaluate(
            &input(LOOKUP),
            &mut conn,
            start + Duration::from_secs(2 * i),
        );
        assert!(v.hits.is_empty());
    }
}

fn load_err(toml: &str) -> RuleLoadError {
    RuleSet::from_sources(
        "test",
        &[("rules/bad.toml".into(), toml.into())],
        Mode::Enforce,
    )
    .expect_err("must not load")
}

#[test]
fn loader_errors_name_file_line_and_field() {
    let err = load_err(&WARN_DISTINCT.replace("hint = \"h\"", "hint = \"h\"\nhnit = \"typo\""));
    let RuleLoadError::Invalid {
        file, line, field, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (file.as_str(), *line, field.as_deref()),
        ("rules/bad.toml", 8, Some("hnit"))
    );
    assert!(err.to_string().starts_with("rules/bad.toml:8:"), "{err}");

    // The built-in semi-join rewrite is for fan-out shapes only; anything else needs a template.
    let rewrite_random = WARN_DISTINCT
        .replace("action = \"warn\"", "action = \"rewrite\"")
        .replace("distinct_over_fanout_join", "order_by_random");
    let text = load_err(&rewrite_random).to_string();
    assert!(text.contains("rules/bad.toml:"), "{text}");
    assert!(text.contains("field `action`"), "{text}");
    assert!(text.contains("needs a [rewrite] sql template"), "{text}");
    let builtin = WARN_DISTINCT.replace("action = \"warn\"", "action = \"rewrite\"");
    let set = RuleSet::from_sources("test", &[("rules/ok.toml".into(), builtin)], Mode::Enforce)
        .expect("a fan-out rule may rewrite without a template");
    assert!(set.rewrites);
    assert!(
        set.rules[0]
            .rewrite
            .as_ref()
            .is_some_and(|r| r.template.is_none())
    );
    // A template is for one fingerprint, parses, and samples a sane share.
    let template = |extra_match: &str, rewrite: &str| {
        WARN_DISTINCT
            .replace("action = \"warn\"", "action = \"rewrite\"")
            .replace("distinct_over_fanout_join = true", extra_match)
            + "[rewrite]\n"
            + rewrite
    };
    let text = load_err(&template("order_by_random = true", "sql = \"SELECT 1\"\n")).to_string();
    assert!(
        text.contains("field `rewrite.sql`") && text.contains("fingerprint"),
        "{text}"
    );
    let text = load_err(&template(
        "fingerprint = \"39ee56b0104e4b4d\"",
        "sql = \"SELECT FROM WHERE\"\n",
    ))
    .to_string();
    assert!(
        text.contains("rules/bad.toml:11:") && text.contains("does not parse"),
        "{text}"
    );
    let text = load_err(&template(
        "fingerprint = \"39ee56b0104e4b4d\"",
        "sql = \"SELECT $1\"\nsample_rate = 2.0\n",
    ))
    .to_string();
    assert!(text.contains("field `rewrite.sample_rate`"), "{text}");
    let text = load_err(&template(
        "fingerprint = \"39ee56b0104e4b4d\"",
        "sql = \"SELECT $1\"\nverify = \"sometimes\"\n",
    ))
    .to_string();
    assert!(
        text.contains("verify") && text.contains("sometimes"),
        "{text}"
    );

    let err = load_err(&WARN_DISTINCT.replace("distinct_over_fanout_join", "distinct_over_fanout"));
    assert!(
        err.to_string().contains("field `distinct_over_fanout`"),
        "{err}"
    );
    assert!(err.to_string().contains(":9:"), "{err}");

    let err = load_err(
        &WARN_DISTINCT.replace("distinct_over_fanout_join = true", "offset_gt = \"lots\""),
    );
    assert!(err.to_string().contains("field `offset_gt`"), "{err}");

    let err = load_err(
        &WARN_DISTINCT.replace("distinct_over_fanout_join = true", "fingerprint = \"xyz\""),
    );
    assert!(err.to_string().contains("16 hex digits"), "{err}");

    let err = load_err(&WARN_DISTINCT.replace("distinct_over_fanout_join = true", ""));
    assert!(err.to_string().contains("[match] table is empty"), "{err}");

    let err = load_err(&WARN_DISTINCT.replace("severity = \"warning\"\n", ""));
    assert!(err.to_string().contains("severity"), "{err}");

    let dup = RuleSet::from_sources(
        "test",
        &[
            ("a.toml".into(), WARN_DISTINCT.into()),
            ("b.toml".into(), WARN_DISTINCT.into()),
        ],
        Mode::Enforce,
    )
    .expect_err("duplicate ids");
    assert!(
        dup.to_string()
            .contains("duplicate rule id `warn-distinct`"),
        "{dup}"
    );
}

#[test]
fn reload_swaps_rules_and_keeps_them_on_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("warn.toml");
    std::fs::write(&path, WARN_DISTINCT).expect("write");
    let config = RulesConfig {
        dir: Some(dir.path().to_owned()),
        ..RulesConfig::default()
    };
    let engine = RuleEngine::new(config).expect("load");
    assert!(matches!(
        eval(&engine, INCIDENT).action,
        VerdictAction::Warn { .. }
    ));

    std::fs::write(&path, WARN_DISTINCT.replace("\"warn\"", "\"block\"")).expect("write");
    engine.reload().expect("reload");
    assert!(matches!(
        eval(&engine, INCIDENT).action,
        VerdictAction::Block { .. }
    ));

    std::fs::write(&path, WARN_DISTINCT.replace("severity", "sevrity")).expect("write");
    let err = engine.reload().expect_err("broken file");
    assert!(err.to_string().contains("warn.toml:4:"), "{err}");
    assert!(matches!(
        eval(&engine, INCIDENT).action,
        VerdictAction::Block { .. }
    ));
}

#[test]
fn metrics_and_api_report_hits() {
    let registry = prometheus::Registry::new();
    let engine = shipped();
    let metrics = RuleMetrics::register(&registry, engine.hit_stats()).expect("register");
    let engine = engine.with_metrics(metrics);
    eval(&engine, INCIDENT);
    eval(&engine, INCIDENT);
    eval(&engine, "SELEC broken");
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut text)
        .expect("encode");
    let fp: Fingerprint = fingerprint(INCIDENT.as_bytes());
    let series = format!(
        "pgshape_rule_hits_total{{action=\"observe\",fingerprint=\"{fp}\",rule=\"distinct-over-fanout-join\"}} 2"
    );
    assert!(text.contains(&series), "{text}");
    assert!(
        text.contains("pgshape_rule_parse_failures_total 1"),
        "{text}"
    );

    let json = api::rules_json(&engine);
    let rule = json["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "distinct-over-fanout-join"))
        .expect("rule listed");
    assert_eq!(rule["hits"], 2);
    assert_eq!(rule["top_fingerprints"][0]["fingerprint"], fp.to_string());
    assert_eq!(json["mode"], "enforce");
    assert_eq!(
        engine.rules_for_fingerprint(fp),
        ["distinct-over-fanout-join"]
    );
}

#[test]
fn shipped_rules_have_docs_and_hints() {
    let set = RuleSet::embedded(Mode::Enforce).expect("rules");
    assert_eq!(set.rules.len(), 11);
    for rule in &set.rules {
        assert!(
            rule.rationale.is_some() && rule.hint.is_some(),
            "{}",
            rule.id
        );
        // Transparent by default: no shipped rule warns, blocks or rewrites unless asked.
        assert_eq!(rule.action, Action::Observe, "{}", rule.id);
    }
    let first = set.get("distinct-over-fanout-join").expect("rule");
    assert!(first.hint.as_deref().is_some_and(|h| h.contains("EXISTS")));
}

#[test]
fn config_file_has_a_rules_table() {
    let config: crate::config::Config = toml::from_str(
        "[rules]\ndir = \"/etc/pgshape/rules\"\nmode = \"shadow\"\nschema_dsn = \"host=db user=monitor\"\n",
    )
    .expect("config parses");
    assert_eq!(config.rules.mode, Mode::Shadow);
    assert_eq!(
        config.rules.dir.as_deref(),
        Some(std::path::Path::new("/etc/pgshape/rules"))
    );
    assert_eq!(config.rules.schema_refresh_secs, 300);
    let err = toml::from_str::<crate::config::Config>("[rules]\nmode = \"loud\"\n")
        .expect_err("unknown mode");
    assert!(err.to_string().contains("loud"), "{err}");
}

#[test]
fn block_on_turns_observe_and_warn_rules_of_that_severity_into_blocks() {
    let set = RuleSet::embedded(Mode::Enforce)
        .and_then(|set| set.with_policy(Some(Severity::Warning), &Default::default()))
        .expect("rules");
    for rule in &set.rules {
        let expected = if rule.severity >= Severity::Warning {
            Action::Block
        } else {
            Action::Observe
        };
        assert_eq!(rule.action, expected, "{}", rule.id);
    }
    // The incident's shape now refused, not just counted.
    let v = eval(&RuleEngine::from_rule_set(set), INCIDENT);
    assert!(
        matches!(v.action, VerdictAction::Block { .. }),
        "{:?}",
        v.action
    );
}

#[test]
fn rule_actions_override_files_and_block_on() {
    let actions = BTreeMap::from([
        ("update-or-delete-without-where".to_owned(), Action::Warn),
        ("distinct-over-fanout-join".to_owned(), Action::Rewrite),
        ("order-by-random".to_owned(), Action::Off),
    ]);
    let set = RuleSet::embedded(Mode::Enforce)
        .and_then(|set| set.with_policy(Some(Severity::Error), &actions))
        .expect("rules");
    let action = |id: &str| set.get(id).expect("rule").action;
    assert_eq!(action("update-or-delete-without-where"), Action::Warn);
    assert_eq!(action("distinct-over-fanout-join"), Action::Rewrite);
    assert_eq!(action("order-by-random"), Action::Off);
    assert!(set.rewrites);

    let typo = BTreeMap::from([("update-without-where".to_owned(), Action::Block)]);
    let err = RuleSet::embedded(Mode::Enforce)
        .and_then(|set| set.with_policy(None, &typo))
        .expect_err("unknown rule id");
    let text = err.to_string();
    assert!(
        text.contains("no rule has id `update-without-where`"),
        "{text}"
    );
    assert!(
        text.contains("update-or-delete-without-where"),
        "lists the known ids: {text}"
    );

    let no_rewrite = BTreeMap::from([("order-by-random".to_owned(), Action::Rewrite)]);
    let err = RuleSet::embedded(Mode::Enforce)
        .and_then(|set| set.with_policy(None, &no_rewrite))
        .expect_err("no rewrite to apply");
    assert!(err.to_string().contains("has no rewrite"), "{err}");
}

#[test]
fn config_file_sets_block_on_and_rule_actions() {
    let config: crate::config::Config =
        toml::from_str("[rules]\nblock_on = \"error\"\n[rules.actions]\nn-plus-one = \"warn\"\n")
            .expect("config parses");
    assert_eq!(config.rules.block_on, Some(Severity::Error));
    assert_eq!(config.rules.actions.get("n-plus-one"), Some(&Action::Warn));
    let engine = RuleEngine::new(config.rules).expect("engine");
    let set = engine.rules();
    assert_eq!(set.get("n-plus-one").expect("rule").action, Action::Warn);
    assert_eq!(
        set.get("update-or-delete-without-where")
            .expect("rule")
            .action,
        Action::Block
    );
    let err = toml::from_str::<crate::config::Config>("[rules.actions]\nn-plus-one = \"shout\"\n")
        .expect_err("unknown action");
    assert!(err.to_string().contains("shout"), "{err}");
}

#[test]
fn engine_from_config_uses_the_catalog_when_a_dsn_is_set() {
    let engine = RuleEngine::from_config(RulesConfig {
        schema_dsn: Some("host=127.0.0.1 port=1 user=monitor dbname=postgres".into()),
        ..RulesConfig::default()
    })
    .expect("engine");
    assert!(engine.catalog().is_some());
    // Nothing loaded (no server): fan-out falls back to the heuristic, and says so.
    let v = eval(&engine, INCIDENT);
    assert_eq!(v.hits[0].decided_by, Some(OracleKind::Heuristic));
    let err = RuleEngine::from_config(RulesConfig {
        schema_dsn: Some("host=x port=notaport".into()),
        ..RulesConfig::default()
    })
    .expect_err("bad dsn");
    assert!(err.to_string().contains("schema DSN"), "{err}");
}

#[test]
fn the_schema_dsn_is_not_in_debug_output() {
    let config = RulesConfig {
        schema_dsn: Some("host=db user=monitor password=pw-91d4".into()),
        ..RulesConfig::default()
    };
    let whole = crate::config::Config {
        rules: config.clone(),
        ..crate::config::Config::default()
    };
    let printed = format!("{config:?} {whole:?}");
    assert!(!printed.contains("pw-91d4"), "{printed}");
    assert!(printed.contains("schema_dsn: Some(***)"), "{printed}");
}

#[test]
fn every_rule_file_in_the_repository_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("rules dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = embedded::SHIPPED
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "add new rule files to src/rules/embedded.rs"
    );
}

#[test]
fn connection_state_stays_bounded() {
    let mut conn = ConnectionRuleState::new();
    let start = Instant::now();
    let window = Duration::from_secs(1);
    for i in 0..5_000u64 {
        conn.record(Fingerprint(i), start + Duration::from_millis(i), 11, window);
    }
    assert!(conn.tracked() <= 512, "{}", conn.tracked());
    // An evicted shape starts a fresh history.
    let repeats = conn.record(Fingerprint(1), start + Duration::from_secs(10), 11, window);
    assert_eq!(repeats.recent.len(), 1);
}

/// A fingerprint keeps the newest `history` execution times, oldest first, and `exceeds`
/// counts within the window from them.
#[test]
fn repeat_history_keeps_the_newest_times() {
    let mut conn = ConnectionRuleState::new();
    let start = Instant::now();
    let window = Duration::from_millis(100);
    let at = |ms: u64| start + Duration::from_millis(ms);
    for ms in 0..15 {
        conn.record(Fingerprint(7), at(ms * 10), 4, window);
    }
    let repeats = conn.record(Fingerprint(7), at(150), 4, window);
    assert_eq!(
        repeats.recent.as_slice(),
        &[at(120), at(130), at(140), at(150)]
    );
    assert!(repeats.exceeds(3, window, at(150)), "4 runs within 100 ms");
    assert!(
        !repeats.exceeds(3, Duration::from_millis(20), at(150)),
        "only 3 within 20 ms"
    );
    assert!(!repeats.exceeds(4, window, at(150)), "history holds no 5th");
}

/// A connection remembers what shape-only rules decided for a shape, and forgets it when the
/// rules, the catalog or the application name change: the verdicts must stay those of a fresh
/// evaluation.
#[test]
fn remembered_static_results_follow_reloads_and_application_name() {
    let dir = tempfile::tempdir().unwrap();
    let scoped = WARN_DISTINCT.replace(
        "[match]",
        "[scope]\napplication_name = \"django*\"\n[match]",
    );
    std::fs::write(dir.path().join("r.toml"), &scoped).unwrap();
    let engine = RuleEngine::new(RulesConfig {
        dir: Some(dir.path().to_owned()),
        ..RulesConfig::default()
    })
    .unwrap();
    let mut conn = ConnectionRuleState::new();
    let now = Instant::now();
    let with_app = |app: &'static str| StatementInput {
        application_name: app,
        ..input(INCIDENT)
    };
    for _ in 0..3 {
        let v = engine.evaluate(&with_app("django-web"), &mut conn, now);
        assert_eq!(ids(&v), ["warn-distinct"]);
    }
    // Same connection, another application name: out of scope.
    assert!(
        engine
            .evaluate(&with_app("psql"), &mut conn, now)
            .hits
            .is_empty()
    );
    assert_eq!(
        ids(&engine.evaluate(&with_app("django-web"), &mut conn, now)),
        ["warn-distinct"]
    );
    // The rule switched off and reloaded: the remembered match must not survive.
    std::fs::write(
        dir.path().join("r.toml"),
        scoped.replace("action = \"warn\"", "action = \"off\""),
    )
    .unwrap();
    engine.reload().unwrap();
    assert!(
        engine
            .evaluate(&with_app("django-web"), &mut conn, now)
            .hits
            .is_empty()
    );
    // Every hit is still counted, remembered or not.
    assert_eq!(engine.stats.total("warn-distinct"), 4);
}
