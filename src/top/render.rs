//! Drawing a [`View`]: into a ratatui [`Buffer`] for the live screen, as a plain table for
//! `--once` (pipes, scripts, a terminal's scrollback) and as JSON for machines.

use std::fmt::Write as _;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Widget, Wrap};
use serde::Serialize;

use super::{Line, View};

/// Rows of the bottom pane (the selected shape's SQL and rule hits), borders included.
const DETAIL_HEIGHT: u16 = 9;

const HELP: &str = "q quit  t/p/m/c/e/r sort by total/p95/mean/calls/errors/rows  \
                    d database  u user  i idle  ↑↓ select";

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// The normalized SQL on one line, for a table cell.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn filter_label(f: &Option<String>) -> &str {
    f.as_deref().unwrap_or("all")
}

/// The cells of a line: figures per second over the interval of `secs`, cumulative calls,
/// then who. LOAD is statement seconds per second (2.0: two statements busy all the time).
fn cells(l: &Line, secs: f64) -> [String; 9] {
    let load = if secs > 0.0 {
        l.total_ms / 1000.0 / secs
    } else {
        0.0
    };
    [
        rate(load),
        rate(l.calls_per_s),
        ms(l.mean_ms),
        ms(l.p95_ms),
        rate(l.errors_per_s),
        rate(l.rows_per_s),
        l.row.calls.to_string(),
        l.row.database.clone(),
        l.row.user.clone(),
    ]
}

const HEADERS: [&str; 10] = [
    "LOAD", "CALLS/S", "MEAN ms", "P95 ms", "ERR/S", "ROWS/S", "CALLS", "DATABASE", "USER", "QUERY",
];

impl Widget for &View {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [head, table_area, detail_area, help] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(DETAIL_HEIGHT),
            Constraint::Length(1),
        ])
        .areas(area);
        let visible = self.visible();
        let active = visible.iter().filter(|l| l.calls > 0).count();
        let status = match &self.error {
            Some(e) => format!("  ERROR: {e}"),
            None => String::new(),
        };
        Paragraph::new(format!(
            "pgshape top  {}  every {:.1}s  sort: {}  database: {}  user: {}  {} shapes, {} active{}",
            self.admin,
            self.secs,
            self.sort.label(),
            filter_label(&self.database),
            filter_label(&self.user),
            visible.len(),
            active,
            status,
        ))
        .style(Style::new().add_modifier(Modifier::BOLD))
        .render(head, buf);

        let selected = self.selected_index(&visible);
        // Rows the table shows below its header; scroll so the selection stays in view.
        let room = usize::from(table_area.height.saturating_sub(1)).max(1);
        let first = selected.saturating_sub(room - 1);
        let rows = visible
            .iter()
            .enumerate()
            .skip(first)
            .take(room)
            .map(|(i, l)| {
                let mut cells: Vec<Cell> =
                    cells(l, self.secs).into_iter().map(Cell::from).collect();
                cells.push(Cell::from(one_line(&l.row.query)));
                let row = Row::new(cells);
                if i == selected {
                    row.style(Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    row
                }
            });
        let widths = [
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Fill(1),
        ];
        Table::new(rows, widths)
            .header(Row::new(HEADERS).style(Style::new().add_modifier(Modifier::UNDERLINED)))
            .render(table_area, buf);

        detail(visible.get(selected).copied()).render(detail_area, buf);
        Paragraph::new(HELP)
            .style(Style::new().add_modifier(Modifier::DIM))
            .render(help, buf);
    }
}

/// The bottom pane: the selected entry's identity, rules, route and SQL.
fn detail(line: Option<&Line>) -> Paragraph<'static> {
    let block = Block::new().borders(Borders::TOP).title(" selected shape ");
    let Some(l) = line else {
        return Paragraph::new("no statements yet").block(block);
    };
    let r = &l.row;
    let rules = if r.rules.is_empty() {
        "none".to_owned()
    } else {
        r.rules.join(", ")
    };
    let mut lines = vec![
        TextLine::from(format!(
            "{}  {}@{}  {} calls, {:.1} ms total, p95 {:.2} ms since start",
            r.fingerprint, r.user, r.database, r.calls, r.total_ms, r.p95_ms
        )),
        TextLine::from(vec![
            Span::styled("rule hits: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(rules),
        ]),
    ];
    if let Some(route) = r.routes.first() {
        lines.push(TextLine::from(format!("{}: {}", route.tag, route.value)));
    }
    lines.push(TextLine::from(r.query.clone()));
    Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false })
}

/// The `--once` table: one line per entry, the full SQL last so nothing is cut.
pub fn render_text(view: &View, limit: usize) -> String {
    let visible = view.visible();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pgshape top: {} over the last {:.1} s, sorted by {}; LOAD is statement seconds per \
         second, CALLS is cumulative since start",
        view.admin,
        view.secs,
        view.sort.label()
    );
    let mut table: Vec<[String; 11]> = vec![[
        "FINGERPRINT".into(),
        HEADERS[0].into(),
        HEADERS[1].into(),
        HEADERS[2].into(),
        HEADERS[3].into(),
        HEADERS[4].into(),
        HEADERS[5].into(),
        HEADERS[6].into(),
        HEADERS[7].into(),
        HEADERS[8].into(),
        HEADERS[9].into(),
    ]];
    for l in visible.iter().take(limit) {
        let [a, b, c, d, e, f, g, h, i] = cells(l, view.secs);
        table.push([
            l.row.fingerprint.clone(),
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            one_line(&l.row.query),
        ]);
    }
    let mut widths = [0usize; 11];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &table {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let numeric = (1..=7).contains(&i);
            match i {
                10 => line.push_str(cell),
                _ if numeric => {
                    let _ = write!(line, "{cell:>w$}  ");
                }
                _ => {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The `--format json` document.
#[derive(Serialize)]
struct JsonOut<'a> {
    admin: &'a str,
    interval_s: f64,
    sort: super::Sort,
    shapes: Vec<JsonLine<'a>>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    fingerprint: &'a str,
    database: &'a str,
    user: &'a str,
    query: &'a str,
    rules: &'a [String],
    /// Over the interval.
    interval: &'a Line,
    /// Since the statistics started.
    cumulative: Cumulative,
}

#[derive(Serialize)]
struct Cumulative {
    calls: u64,
    total_ms: f64,
    mean_ms: f64,
    p95_ms: f64,
    errors: u64,
    rows: u64,
}

/// One JSON document of the view's entries (filters and sort applied), `limit` at most.
pub fn render_json(view: &View, limit: usize) -> String {
    let shapes = view
        .visible()
        .into_iter()
        .take(limit)
        .map(|l| JsonLine {
            fingerprint: &l.row.fingerprint,
            database: &l.row.database,
            user: &l.row.user,
            query: &l.row.query,
            rules: &l.row.rules,
            interval: l,
            cumulative: Cumulative {
                calls: l.row.calls,
                total_ms: l.row.total_ms,
                mean_ms: l.row.mean_ms,
                p95_ms: l.row.p95_ms,
                errors: l.row.error_count(),
                rows: l.row.rows,
            },
        })
        .collect();
    let out = JsonOut {
        admin: &view.admin,
        interval_s: view.secs,
        sort: view.sort,
        shapes,
    };
    serde_json::to_string_pretty(&out).unwrap_or_default()
}
