//! Pure functions over one `EXPLAIN (FORMAT JSON)` plan: its shape hash, constant masking,
//! the incident's signature, and the terminal rendering `pgshape explain` prints.
//!
//! They take the plan as `serde_json::Value` (the `"Plan"` object of PostgreSQL's output) so
//! the admin API, the store and the CLI share them without a typed copy of every node field.

use std::fmt::Write as _;
use std::hash::Hasher as _;

use serde_json::Value;

/// Fields that name what a node is and what it reads; everything else (costs, row and width
/// estimates, conditions' constants) changes without the plan changing.
const SHAPE_FIELDS: &[&str] = &[
    "Node Type",
    "Strategy",
    "Partial Mode",
    "Join Type",
    "Parent Relationship",
    "Scan Direction",
    "Schema",
    "Relation Name",
    "Index Name",
    "CTE Name",
    "Function Name",
    "Command",
    "Subplan Name",
];

/// Fields holding expressions, whose constants are masked.
const EXPRESSION_FIELDS: &[&str] = &[
    "Filter",
    "Index Cond",
    "Recheck Cond",
    "Join Filter",
    "Hash Cond",
    "Merge Cond",
    "One-Time Filter",
    "TID Cond",
    "Order By",
    "Sort Key",
    "Presorted Key",
    "Group Key",
    "Output",
    "Cache Key",
    "Function Call",
    "Table Function Call",
    "Run Condition",
];

/// Node types that remove duplicates or group rows.
const DEDUPLICATING: &[&str] = &["Unique", "Aggregate"];
/// Node types that pass their one input through (sorting, buffering, parallelism).
const PASS_THROUGH: &[&str] = &[
    "Sort",
    "Incremental Sort",
    "Materialize",
    "Gather",
    "Gather Merge",
    "Memoize",
];
const JOINS: &[&str] = &["Nested Loop", "Hash Join", "Merge Join"];
/// How many more rows the join must estimate than the statement returns to be flagged.
const DWARF_RATIO: f64 = 10.0;

/// The plan's shape: a stable hash of node types, strategies, relations, indexes and the
/// order of children (join order), as 16 hex digits. Costs and estimates are left out, so
/// the same plan over grown tables keeps its hash.
pub fn shape_hash(plan: &Value) -> String {
    let mut hasher = crate::sql::KeyHasher::default();
    hash_node(plan, &mut hasher);
    format!("{:016x}", hasher.finish())
}

fn hash_node(node: &Value, hasher: &mut crate::sql::KeyHasher) {
    // Length-prefixed, so no two field sequences feed the hasher the same words.
    let mut put = |bytes: &[u8]| {
        hasher.write_usize(bytes.len());
        hasher.write(bytes);
    };
    for field in SHAPE_FIELDS {
        if let Some(value) = node.get(*field) {
            put(field.as_bytes());
            put(value.to_string().as_bytes());
        }
    }
    hasher.write(b"(");
    for child in children(node) {
        hash_node(child, hasher);
    }
    hasher.write(b")");
}

fn children(node: &Value) -> &[Value] {
    node.get("Plans")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Replaces the constants of every expression field of the plan (filters, index conditions,
/// sort and group keys) by `?`, as the slow log's normalized text does: the admin API's
/// reads are unauthenticated, and constants are customers' data.
pub fn mask(plan: &mut Value) {
    if let Some(object) = plan.as_object_mut() {
        for (key, value) in object.iter_mut() {
            if EXPRESSION_FIELDS.contains(&key.as_str()) {
                mask_expression(value);
            } else if key == "Plans"
                && let Some(plans) = value.as_array_mut()
            {
                plans.iter_mut().for_each(mask);
            }
        }
    }
}

fn mask_expression(value: &mut Value) {
    match value {
        Value::String(text) => *text = mask_text(text),
        Value::Array(items) => items.iter_mut().for_each(mask_expression),
        _ => {}
    }
}

/// One expression with its literals (strings, numbers) replaced by `?`. The lexer is the
/// fingerprinter's, so what counts as a literal is what the normalized SQL masks; the rest
/// of the text is kept byte for byte.
pub fn mask_text(text: &str) -> String {
    use crate::sql::lexer::{Lexer, TokenKind};
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for token in Lexer::new(bytes) {
        if token.kind.is_constant() && token.kind != TokenKind::Param {
            out.push_str(&text[copied..token.start]);
            out.push('?');
            copied = token.end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The incident's signature, when the plan has it: a Unique or Aggregate (DISTINCT, GROUP BY)
/// over a join, through sorts, whose estimated rows dwarf what the statement returns: the
/// query multiplies rows in a join only to collapse them again.
pub fn signature(plan: &Value) -> Option<String> {
    find_signature(plan, rows(plan).max(1.0)).map(|(_, text)| text)
}

/// The signature's deduplicating node and its description.
fn find_signature(node: &Value, result_rows: f64) -> Option<(&Value, String)> {
    let kind = node_type(node);
    if DEDUPLICATING.contains(&kind) {
        let mut below = children(node).first();
        while let Some(child) = below {
            let child_kind = node_type(child);
            if JOINS.contains(&child_kind) {
                let joined = rows(child);
                if joined >= DWARF_RATIO * result_rows {
                    return Some((
                        node,
                        format!(
                            "{} over a {}: about {} joined rows collapsed to the {} the \
                             statement returns (DISTINCT/GROUP BY over a fan-out join: the \
                             incident's signature)",
                            label(node),
                            child_kind,
                            joined as u64,
                            result_rows as u64
                        ),
                    ));
                }
                break;
            }
            if !PASS_THROUGH.contains(&child_kind) {
                break;
            }
            below = children(child).first();
        }
    }
    children(node)
        .iter()
        .find_map(|child| find_signature(child, result_rows))
}

fn node_type(node: &Value) -> &str {
    node.get("Node Type").and_then(Value::as_str).unwrap_or("?")
}

fn rows(node: &Value) -> f64 {
    node.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0)
}

fn total_cost(node: &Value) -> f64 {
    node.get("Total Cost")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// The node's own cost: its total less its children's (never below zero). Without ANALYZE
/// there are no loop counts, so a Nested Loop's own cost includes the repeated scans of its
/// inner side: it is marked when those repetitions are the expensive part, as they often are.
fn own_cost(node: &Value) -> f64 {
    let below: f64 = children(node).iter().map(total_cost).sum();
    (total_cost(node) - below).max(0.0)
}

/// `HashAggregate`, `Hash Join`, `Index Scan`: the node type as EXPLAIN's text format names it.
fn label(node: &Value) -> String {
    let kind = node_type(node);
    let strategy = node.get("Strategy").and_then(Value::as_str);
    match (kind, strategy) {
        ("Aggregate", Some("Hashed")) => "HashAggregate".into(),
        ("Aggregate", Some("Sorted")) => "GroupAggregate".into(),
        ("Aggregate", Some("Mixed")) => "MixedAggregate".into(),
        _ => kind.to_owned(),
    }
}

/// One line per node, indented by depth: node type, relation (and alias) or index, estimated
/// rows and total cost; the node with the highest own cost is marked, and the signature, when
/// present, follows the tree.
pub fn render(plan: &Value) -> String {
    let mut lines = Vec::new();
    collect(plan, 0, &mut lines);
    let most = most_expensive(lines.iter().map(|(_, own)| *own));
    let mut out = String::new();
    for (i, (line, _)) in lines.iter().enumerate() {
        out.push_str(line);
        if Some(i) == most {
            out.push_str("  <== most expensive");
        }
        out.push('\n');
    }
    if let Some(signature) = signature(plan) {
        let _ = writeln!(out, "\nwarning: {signature}");
    }
    out
}

/// The position (depth-first) of the node with the highest own cost; the last of equals, so
/// the terminal and the page mark the same node.
fn most_expensive(own_costs: impl Iterator<Item = f64>) -> Option<usize> {
    own_costs
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Expression fields shown beside a node on the page, first present wins (already masked).
const DETAIL_FIELDS: &[&str] = &[
    "Index Cond",
    "Hash Cond",
    "Merge Cond",
    "Join Filter",
    "Recheck Cond",
    "Filter",
    "Sort Key",
    "Group Key",
];

/// The tree the admin page draws: per node its label, what it reads, estimates, total and own
/// cost, `most_expensive` on the node [`render`] marks and `signature` on the deduplicating
/// node of the incident's signature; children in `children`. Computed here so the page needs
/// no copy of the rules above.
pub fn annotate(plan: &Value) -> Value {
    fn own_costs(node: &Value, out: &mut Vec<f64>) {
        out.push(own_cost(node));
        for child in children(node) {
            own_costs(child, out);
        }
    }
    let mut costs = Vec::new();
    own_costs(plan, &mut costs);
    let marks = Marks {
        most: most_expensive(costs.into_iter()),
        signature: find_signature(plan, rows(plan).max(1.0)).map(|(node, _)| node),
    };
    annotate_node(plan, &marks, &mut 0)
}

struct Marks<'a> {
    most: Option<usize>,
    signature: Option<&'a Value>,
}

fn annotate_node(node: &Value, marks: &Marks<'_>, position: &mut usize) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("label".into(), label(node).into());
    for (key, field) in [
        ("join_type", "Join Type"),
        ("relation", "Relation Name"),
        ("alias", "Alias"),
        ("index", "Index Name"),
        ("parent", "Parent Relationship"),
    ] {
        if let Some(value) = node.get(field).and_then(Value::as_str) {
            out.insert(key.into(), value.into());
        }
    }
    if let Some((field, value)) = DETAIL_FIELDS
        .iter()
        .find_map(|f| node.get(*f).map(|v| (*f, v)))
    {
        let text = match value {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            other => other.as_str().unwrap_or_default().to_owned(),
        };
        out.insert("detail".into(), format!("{field}: {text}").into());
    }
    out.insert("rows".into(), (rows(node) as u64).into());
    out.insert("cost".into(), total_cost(node).into());
    out.insert("own_cost".into(), own_cost(node).into());
    out.insert(
        "most_expensive".into(),
        (marks.most == Some(*position)).into(),
    );
    out.insert(
        "signature".into(),
        marks
            .signature
            .is_some_and(|s| std::ptr::eq(s, node))
            .into(),
    );
    *position += 1;
    let kids: Vec<Value> = children(node)
        .iter()
        .map(|child| annotate_node(child, marks, position))
        .collect();
    out.insert("children".into(), kids.into());
    Value::Object(out)
}

fn collect(node: &Value, depth: usize, lines: &mut Vec<(String, f64)>) {
    let mut line = String::new();
    if depth > 0 {
        let _ = write!(line, "{}-> ", "   ".repeat(depth - 1));
    }
    line.push_str(&label(node));
    if let Some(join) = node.get("Join Type").and_then(Value::as_str)
        && join != "Inner"
    {
        let _ = write!(line, " ({join})");
    }
    if let Some(index) = node.get("Index Name").and_then(Value::as_str) {
        let _ = write!(line, " using {index}");
    }
    if let Some(relation) = node.get("Relation Name").and_then(Value::as_str) {
        let _ = write!(line, " on {relation}");
        if let Some(alias) = node.get("Alias").and_then(Value::as_str)
            && alias != relation
        {
            let _ = write!(line, " {alias}");
        }
    }
    let _ = write!(
        line,
        "  (rows={} cost={:.2})",
        rows(node) as u64,
        total_cost(node)
    );
    lines.push((line, own_cost(node)));
    for child in children(node) {
        collect(child, depth + 1, lines);
    }
}

/// What `pgshape explain` prints for an answer of `POST /api/queries/{fp}/explain`: a header
/// (fingerprint, database, shape hash, plan change) and the [`render`]ed tree.
pub fn render_answer(answer: &Value) -> String {
    let field = |name: &str| answer.get(name).and_then(Value::as_str).unwrap_or("?");
    let mut out = format!(
        "fingerprint {}  database {}  plan shape {}{}\n\n",
        field("fingerprint"),
        field("database"),
        field("shape_hash"),
        if answer.get("plan_change").and_then(Value::as_bool) == Some(true) {
            "  (PLAN CHANGE: the previous explain had another shape)"
        } else {
            ""
        }
    );
    out.push_str(&render(answer.get("plan").unwrap_or(&Value::Null)));
    out
}

/// A one-line summary for logs: the node labels in depth-first order.
pub fn summary(plan: &Value) -> String {
    let mut parts = Vec::new();
    fn walk(node: &Value, parts: &mut Vec<String>) {
        let mut part = label(node);
        if let Some(relation) = node.get("Relation Name").and_then(Value::as_str) {
            part = format!("{part} on {relation}");
        }
        if let Some(index) = node.get("Index Name").and_then(Value::as_str) {
            part = format!("{part} using {index}");
        }
        parts.push(part);
        for child in children(node) {
            walk(child, parts);
        }
    }
    walk(plan, &mut parts);
    parts.join(" > ")
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
