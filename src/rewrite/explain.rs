//! `pgshape rewrite explain FINGERPRINT`: what the rewrite rules of a running pgshape decided
//! for one shape, read from its admin API (`GET /api/queries/{fp}`, the `rewrite` object of
//! [`super::Rewriter::explain`]) and printed for a person: the normalized original with its
//! numbered slots, then per (rule, database) the state, the template and a sample rewritten
//! statement or the reason there is none, the outcome counts, and the kill switch.
//!
//! [`fetch`] is the HTTP part, [`render`] the text; [`form_label`] names a semi-join form the
//! same way here and in `pgshape check`.

use std::fmt::Write as _;

use serde_json::Value;

use super::semijoin::Form;
use super::template::{list_slots, slot_count};
use crate::admin::client::{AdminClient, ClientError};
use crate::sql::{Fingerprint, ParseFingerprintError};

/// Why there is nothing to explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Fingerprint(#[from] ParseFingerprintError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "the admin API at {url} knows nothing of fingerprint {fingerprint}: no statement of that \
         shape ran through this pgshape since it started (or since the statistics were reset)"
    )]
    NotFound { url: String, fingerprint: String },
    #[error(
        "fingerprint {fingerprint} has statistics but no rewrite information: no rule with a \
         rewrite (action \"rewrite\", or the dry run of an observing rule) has matched it"
    )]
    NoRewrite { fingerprint: String },
}

/// How a proven semi-join rewrite is named in reports: `semi-join`, the form when it is not the
/// plain DISTINCT one, and whether the DISTINCT could go (`template` for an operator's).
pub fn form_label(form: Option<Form>, distinct_dropped: bool) -> String {
    let mut label = match form {
        None => return "template".to_owned(),
        Some(Form::Distinct) => "semi-join".to_owned(),
        Some(Form::DistinctOn) => "semi-join, DISTINCT ON".to_owned(),
        Some(Form::CountOverDistinct) => "semi-join under COUNT(*)".to_owned(),
        Some(Form::CountDistinct) => "semi-join, COUNT(DISTINCT)".to_owned(),
    };
    if distinct_dropped {
        label.push_str(", DISTINCT dropped");
    }
    label
}

/// The [`Form`] serialized as `name` (the plan JSON's `form`).
fn form_named(name: &str) -> Option<Form> {
    [
        Form::Distinct,
        Form::DistinctOn,
        Form::CountOverDistinct,
        Form::CountDistinct,
    ]
    .into_iter()
    .find(|f| {
        serde_json::to_value(f)
            .ok()
            .as_ref()
            .and_then(Value::as_str)
            == Some(name)
    })
}

/// `GET /api/queries/{fingerprint}` of the admin API at `admin`, as JSON.
///
/// # Errors
/// A malformed fingerprint or address, an unreachable admin API, an unknown fingerprint, any
/// other HTTP error, or an answer that is not JSON.
pub fn fetch(admin: &str, fingerprint: &str) -> Result<Value, ExplainError> {
    let fingerprint = fingerprint.parse::<Fingerprint>()?.to_string();
    let client = AdminClient::new(admin)?;
    let path = format!("/api/queries/{fingerprint}");
    match client.get_json(&path) {
        Err(ClientError::Status { status: 404, .. }) => Err(ExplainError::NotFound {
            url: client.url(&path),
            fingerprint,
        }),
        other => Ok(other?),
    }
}

/// The text `pgshape rewrite explain` prints for a `GET /api/queries/{fp}` document.
///
/// # Errors
/// [`ExplainError::NoRewrite`] when the document has no `rewrite` object.
pub fn render(detail: &Value) -> Result<String, ExplainError> {
    let fingerprint = detail
        .get("fingerprint")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let Some(rewrite) = detail.get("rewrite").filter(|r| r.is_object()) else {
        return Err(ExplainError::NoRewrite { fingerprint });
    };
    let plans: &[Value] = rewrite
        .get("plans")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let outcomes = rewrite.get("outcomes").and_then(Value::as_object);
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "fingerprint {fingerprint}");
    let original = plans.iter().find_map(|p| str_of(p, "original"));
    match &original {
        Some(original) => {
            let _ = writeln!(out, "original (normalized, constants as numbered slots):");
            let _ = writeln!(out, "  {original}");
            let _ = write!(out, "{}", slot_list(original));
        }
        None => {
            let _ = writeln!(out, "original: not known (no current plan for this shape)");
        }
    }
    match rewrite.get("disabled").and_then(Value::as_str) {
        Some(why) => {
            let _ = writeln!(
                out,
                "rewrite: DISABLED until the next rule reload: {why} (statements pass through \
                 unchanged)"
            );
        }
        None => {
            let _ = writeln!(out, "rewrite: enabled");
        }
    }

    let mut rules_shown = Vec::new();
    for plan in plans {
        let rule = str_of(plan, "rule").unwrap_or_else(|| "?".into());
        let database = str_of(plan, "database").unwrap_or_default();
        let state = str_of(plan, "state").unwrap_or_else(|| "?".into());
        let _ = writeln!(out);
        let _ = writeln!(out, "rule {rule}, database {database}");
        if let Some(own) = str_of(plan, "original")
            && original.as_ref() != Some(&own)
        {
            let _ = writeln!(out, "  original: {own}");
        }
        match state.as_str() {
            "ready" => {
                let form = plan
                    .get("form")
                    .and_then(Value::as_str)
                    .and_then(form_named);
                let dropped = plan
                    .get("distinct_dropped")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let described = if plan.get("described").and_then(Value::as_bool) == Some(true) {
                    "result shape checked"
                } else {
                    "result shape NOT checked: no schema connection"
                };
                let _ = writeln!(
                    out,
                    "  state:    ready ({}, {described})",
                    form_label(form, dropped)
                );
                let _ = writeln!(
                    out,
                    "  template: {}",
                    str_of(plan, "template_sql").unwrap_or_default()
                );
                let _ = writeln!(
                    out,
                    "  sample:   {}",
                    str_of(plan, "sample").unwrap_or_default()
                );
            }
            "proving" => {
                let _ = writeln!(
                    out,
                    "  state:    proving (statements pass through unchanged until it is done)"
                );
            }
            other => {
                let _ = writeln!(out, "  state:    {other}");
                let _ = writeln!(
                    out,
                    "  reason:   {}",
                    str_of(plan, "reason").unwrap_or_default()
                );
            }
        }
        let _ = writeln!(out, "  outcomes: {}", outcome_text(outcomes, &rule));
        rules_shown.push(rule);
    }
    if plans.is_empty() {
        let _ = writeln!(
            out,
            "\nno current plan (forgotten, or the rules were reloaded; the next execution makes one)"
        );
    }
    for rule in outcomes.into_iter().flat_map(|o| o.keys()) {
        if !rules_shown.contains(rule) {
            let _ = writeln!(out, "\nrule {rule} (no current plan)");
            let _ = writeln!(out, "  outcomes: {}", outcome_text(outcomes, rule));
        }
    }
    Ok(out)
}

/// `slots:` and one line per `$k` of a normalized text.
fn slot_list(normalized: &str) -> String {
    let count = slot_count(normalized);
    if count == 0 {
        return "slots: none (the statement has no constants)\n".to_owned();
    }
    let lists = list_slots(normalized);
    let mut out = String::from("slots:\n");
    for k in 1..=count {
        let kind = if lists.contains(&k) {
            "list: IN (...) / ARRAY[...], one or many values; a template may use it only where a \
             list fits"
        } else {
            "single value"
        };
        let _ = writeln!(out, "  ${k}  {kind}");
    }
    out
}

/// `applied 12, not_provable 1`, or `none yet`.
fn outcome_text(outcomes: Option<&serde_json::Map<String, Value>>, rule: &str) -> String {
    let counts: Vec<String> = outcomes
        .and_then(|o| o.get(rule))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    if counts.is_empty() {
        "none yet".to_owned()
    } else {
        counts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_plans_slots_and_outcomes() {
        let detail = serde_json::json!({
            "fingerprint": "00000000000000ab",
            "entries": [],
            "rewrite": {
                "disabled": null,
                "plans": [{
                    "rule": "distinct-over-fanout-join",
                    "fingerprint": "00000000000000ab",
                    "database": "shop",
                    "original": "SELECT DISTINCT o.id FROM o JOIN i ON i.o = o.id WHERE i.s IN ($1 /*, ... */) LIMIT $2",
                    "state": "ready",
                    "template_sql": "SELECT o.id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.o = o.id AND i.s IN ($1)) LIMIT $2",
                    "sample": "SELECT o.id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.o = o.id AND i.s IN ('A', 'B')) LIMIT 25",
                    "form": "distinct",
                    "distinct_dropped": true,
                    "described": true
                }, {
                    "rule": "patch",
                    "fingerprint": "00000000000000ab",
                    "database": "shop",
                    "original": "SELECT DISTINCT o.id FROM o JOIN i ON i.o = o.id WHERE i.s IN ($1 /*, ... */) LIMIT $2",
                    "state": "refused",
                    "reason": "slot $1 is a list"
                }],
                "outcomes": {"distinct-over-fanout-join": {"applied": 2}, "gone": {"disabled": 1}}
            }
        });
        let text = render(&detail).unwrap();
        assert!(text.contains("fingerprint 00000000000000ab\n"), "{text}");
        assert!(text.contains("  $1  list: IN (...)"), "{text}");
        assert!(text.contains("  $2  single value\n"), "{text}");
        assert!(text.contains("rewrite: enabled\n"), "{text}");
        assert!(
            text.contains(
                "  state:    ready (semi-join, DISTINCT dropped, result shape checked)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  sample:   SELECT o.id FROM o WHERE EXISTS"),
            "{text}"
        );
        assert!(text.contains("  outcomes: applied 2\n"), "{text}");
        assert!(
            text.contains("  state:    refused\n  reason:   slot $1 is a list\n"),
            "{text}"
        );
        assert!(
            text.contains("rule gone (no current plan)\n  outcomes: disabled 1"),
            "{text}"
        );

        let none = serde_json::json!({"fingerprint": "00000000000000ab", "entries": []});
        assert!(matches!(render(&none), Err(ExplainError::NoRewrite { .. })));
    }
}
