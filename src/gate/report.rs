//! A [`Report`] for people: a terminal table, or Markdown sized for a pull-request comment
//! (the regressions and new or vanished shapes in the open, unchanged shapes folded away).

use std::fmt::Write as _;

use super::diff::{Change, Figures, Report, Status};

/// The SQL on one line, cut at `max` characters.
fn short(sql: &str, max: usize) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        return one;
    }
    let mut cut: String = one.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `before -> after` of one figure, `-` for a side without the shape.
fn pair(c: &Change, f: impl Fn(&Figures) -> String) -> String {
    let side = |x: &Option<Figures>| x.as_ref().map_or_else(|| "-".to_owned(), &f);
    format!("{} -> {}", side(&c.before), side(&c.after))
}

fn summary(r: &Report) -> String {
    format!(
        "{} regressed, {} new, {} vanished, {} improved, {} unchanged ({} shapes before, {} after)",
        r.regressions,
        r.count(Status::New),
        r.count(Status::Vanished),
        r.count(Status::Improved),
        r.count(Status::Unchanged),
        r.shapes_before,
        r.shapes_after
    )
}

fn columns(c: &Change) -> [String; 5] {
    [
        pair(c, |f| f.calls.to_string()),
        pair(c, |f| format!("{:.2}", f.mean_ms)),
        pair(c, |f| format!("{:.2}", f.p95_ms)),
        pair(c, |f| format!("{:.1}", f.rows_per_call)),
        c.after
            .as_ref()
            .or(c.before.as_ref())
            .map(|f| f.rules.iter().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
    ]
}

/// The terminal table: a summary line, every shape, then why the gate fails.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pgshape diff: {}", summary(r));
    let mut table = vec![[
        "STATUS".to_owned(),
        "FINGERPRINT".to_owned(),
        "CALLS".to_owned(),
        "MEAN ms".to_owned(),
        "P95 ms".to_owned(),
        "ROWS/CALL".to_owned(),
        "RULES".to_owned(),
        "QUERY".to_owned(),
    ]];
    for c in &r.changes {
        let [calls, mean, p95, rows, rules] = columns(c);
        table.push([
            c.status.label().to_owned(),
            c.fingerprint.clone(),
            calls,
            mean,
            p95,
            rows,
            rules,
            short(&c.query, 80),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &table {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for c in r.changes.iter().filter(|c| !c.reasons.is_empty()) {
        let _ = writeln!(
            out,
            "\nREGRESSED {} {}",
            c.fingerprint,
            short(&c.query, 100)
        );
        for why in &c.reasons {
            let _ = writeln!(out, "  - {why}");
        }
    }
    out
}

/// Escapes what would break a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('`', "'")
}

fn markdown_rows(out: &mut String, changes: &[&Change]) {
    let _ = writeln!(
        out,
        "| status | fingerprint | calls | mean ms | p95 ms | rows/call | rules | query |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for c in changes {
        let [calls, mean, p95, rows, rules] = columns(c);
        let status = match c.status {
            Status::Regressed => "**regressed**",
            other => other.label(),
        };
        let _ = writeln!(
            out,
            "| {status} | `{}` | {} | {} | {} | {} | {} | `{}` |",
            c.fingerprint,
            calls.replace("->", "→"),
            mean.replace("->", "→"),
            p95.replace("->", "→"),
            rows.replace("->", "→"),
            cell(&rules),
            cell(&short(&c.query, 80))
        );
    }
}

/// Markdown for a pull-request comment.
pub fn render_markdown(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.failed() {
        format!(
            "❌ {} query shape{} regressed",
            r.regressions,
            if r.regressions == 1 { "" } else { "s" }
        )
    } else {
        "✅ no query shape regressed".to_owned()
    };
    let _ = writeln!(out, "### pgshape diff: {verdict}\n");
    let _ = writeln!(out, "{}\n", summary(r));
    let regressed: Vec<&Change> = r
        .changes
        .iter()
        .filter(|c| c.status == Status::Regressed)
        .collect();
    for c in &regressed {
        let _ = writeln!(
            out,
            "- `{}` `{}`",
            c.fingerprint,
            cell(&short(&c.query, 100))
        );
        for why in &c.reasons {
            let _ = writeln!(out, "  - {why}");
        }
    }
    if !regressed.is_empty() {
        out.push('\n');
    }
    let (quiet, notable): (Vec<&Change>, Vec<&Change>) = r
        .changes
        .iter()
        .partition(|c| c.status == Status::Unchanged);
    if !notable.is_empty() {
        markdown_rows(&mut out, &notable);
        out.push('\n');
    }
    if !quiet.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>{} unchanged shapes</summary>\n",
            quiet.len()
        );
        markdown_rows(&mut out, &quiet);
        let _ = writeln!(out, "\n</details>");
    }
    out
}
