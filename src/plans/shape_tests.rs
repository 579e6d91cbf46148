use serde_json::{Value, json};

use super::{annotate, mask, mask_text, render, shape_hash, signature, summary};

/// The incident's plan as PostgreSQL 15 gives it (trimmed to the fields used here).
fn incident(join_rows: u64, hash_join: bool) -> Value {
    let join = if hash_join {
        json!({"Node Type": "Hash Join", "Parent Relationship": "Outer", "Join Type": "Inner",
               "Plan Rows": join_rows, "Total Cost": 40.5,
               "Hash Cond": "(shop_orderitem.order_id = shop_order.id)",
               "Plans": [
                 {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "shop_orderitem",
                  "Alias": "shop_orderitem", "Plan Rows": join_rows, "Total Cost": 25.0,
                  "Filter": "((sku)::text = ANY ('{A,B}'::text[]))"},
                 {"Node Type": "Hash", "Parent Relationship": "Inner", "Plan Rows": 400, "Total Cost": 8.0,
                  "Plans": [{"Node Type": "Seq Scan", "Parent Relationship": "Outer",
                             "Relation Name": "shop_order", "Alias": "shop_order",
                             "Plan Rows": 400, "Total Cost": 8.0}]}]})
    } else {
        json!({"Node Type": "Nested Loop", "Parent Relationship": "Outer", "Join Type": "Inner",
               "Plan Rows": join_rows, "Total Cost": 90.0,
               "Plans": [
                 {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "shop_order",
                  "Alias": "shop_order", "Plan Rows": 400, "Total Cost": 8.0},
                 {"Node Type": "Index Scan", "Parent Relationship": "Inner", "Relation Name": "shop_orderitem",
                  "Index Name": "shop_orderitem_order_id", "Alias": "shop_orderitem",
                  "Plan Rows": 1, "Total Cost": 0.2,
                  "Index Cond": "(order_id = shop_order.id)",
                  "Filter": "((sku)::text = ANY ('{A,B}'::text[]))"}]})
    };
    json!({"Node Type": "Limit", "Plan Rows": 25, "Total Cost": 60.0, "Plans": [
        {"Node Type": "Unique", "Parent Relationship": "Outer", "Plan Rows": 300, "Total Cost": 59.0, "Plans": [
            {"Node Type": "Sort", "Parent Relationship": "Outer", "Plan Rows": join_rows, "Total Cost": 55.0,
             "Sort Key": ["shop_order.created_at DESC", "shop_order.id"],
             "Plans": [join]}]}]})
}

#[test]
fn shape_hash_ignores_estimates_and_sees_structure() {
    let a = incident(340, true);
    let mut grown = incident(34_000, true);
    grown["Total Cost"] = json!(6000.0);
    assert_eq!(shape_hash(&a), shape_hash(&grown));
    assert_eq!(shape_hash(&a).len(), 16);
    assert_ne!(shape_hash(&a), shape_hash(&incident(340, false)));
    // Join order: the same nodes with the children swapped is another plan.
    let mut swapped = a.clone();
    let join = &mut swapped["Plans"][0]["Plans"][0]["Plans"][0]["Plans"];
    join.as_array_mut().unwrap().reverse();
    assert_ne!(shape_hash(&a), shape_hash(&swapped));
}

#[test]
fn constants_are_masked_in_expressions_only() {
    assert_eq!(
        mask_text("((sku)::text = ANY ('{A,B}'::text[]))"),
        "((sku)::text = ANY (?::text[]))"
    );
    assert_eq!(
        mask_text("((status)::text = 'paid'::text) AND (customer_id > 42) AND (x = $1)"),
        "((status)::text = ?::text) AND (customer_id > ?) AND (x = $1)"
    );
    let mut plan = incident(340, true);
    mask(&mut plan);
    let text = plan.to_string();
    assert!(!text.contains("{A,B}"), "{text}");
    let scan = &plan["Plans"][0]["Plans"][0]["Plans"][0]["Plans"][0];
    assert_eq!(scan["Filter"], "((sku)::text = ANY (?::text[]))");
    assert_eq!(scan["Relation Name"], "shop_orderitem");
    assert_eq!(shape_hash(&plan), shape_hash(&incident(340, true)));
}

#[test]
fn the_incident_signature() {
    let found = signature(&incident(340, true)).expect("Unique over a 340-row join, 25 returned");
    assert!(found.contains("Unique over a Hash Join"), "{found}");
    assert!(found.contains("340 joined rows"), "{found}");
    // A join that hardly fans out is not the signature.
    assert_eq!(signature(&incident(40, true)), None);
    let plain = json!({"Node Type": "Seq Scan", "Relation Name": "t", "Plan Rows": 1000});
    assert_eq!(signature(&plain), None);
}

#[test]
fn render_marks_the_most_expensive_node() {
    let out = render(&incident(340, true));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Limit  (rows=25 cost=60.00)");
    assert_eq!(lines[1], "-> Unique  (rows=300 cost=59.00)");
    assert!(lines[4].starts_with("         -> Seq Scan on shop_orderitem  (rows=340 cost=25.00)"));
    // Own costs: Seq Scan on shop_orderitem 25, the Sort 14.5, the Hash Join 7.5, …
    assert!(lines[4].ends_with("<== most expensive"), "{out}");
    assert_eq!(out.matches("most expensive").count(), 1);
    assert!(out.contains("warning: Unique over a Hash Join"), "{out}");
    assert_eq!(
        summary(&incident(340, false)),
        "Limit > Unique > Sort > Nested Loop > Seq Scan on shop_order > Index Scan on \
         shop_orderitem using shop_orderitem_order_id"
    );
}

/// Depth-first (label, most_expensive, signature) of an annotated tree.
fn marks(node: &Value, out: &mut Vec<(String, bool, bool)>) {
    out.push((
        node["label"].as_str().unwrap().to_owned(),
        node["most_expensive"].as_bool().unwrap(),
        node["signature"].as_bool().unwrap(),
    ));
    for child in node["children"].as_array().unwrap() {
        marks(child, out);
    }
}

#[test]
fn annotate_marks_what_render_marks() {
    let tree = annotate(&incident(340, true));
    let mut all = Vec::new();
    marks(&tree, &mut all);
    let labels: Vec<&str> = all.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "Limit",
            "Unique",
            "Sort",
            "Hash Join",
            "Seq Scan",
            "Hash",
            "Seq Scan"
        ]
    );
    // The same node as render's `<== most expensive` (line 4), and only it.
    let most: Vec<usize> = (0..all.len()).filter(|i| all[*i].1).collect();
    assert_eq!(most, [4]);
    let scan = &tree["children"][0]["children"][0]["children"][0]["children"][0];
    assert_eq!(scan["relation"], "shop_orderitem");
    assert_eq!(scan["own_cost"], 25.0);
    assert_eq!(scan["cost"], 25.0);
    assert_eq!(scan["rows"], 340);
    assert_eq!(
        scan["detail"],
        "Filter: ((sku)::text = ANY ('{A,B}'::text[]))"
    );
    assert_eq!(
        tree["children"][0]["children"][0]["detail"],
        "Sort Key: shop_order.created_at DESC, shop_order.id"
    );
    // The signature's deduplicating node is flagged; none without the signature.
    let flagged: Vec<&str> = all.iter().filter(|m| m.2).map(|m| m.0.as_str()).collect();
    assert_eq!(flagged, ["Unique"]);
    let mut none = Vec::new();
    marks(&annotate(&incident(40, true)), &mut none);
    assert!(none.iter().all(|m| !m.2));
}
