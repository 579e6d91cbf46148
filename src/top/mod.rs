//! `pgshape top`: the admin API's statement statistics as a live terminal view, like `top`.
//!
//! The API's figures are cumulative since start; what an operator watching an incident wants is
//! what is happening now. So the view polls the listing (with histograms) every interval and
//! shows the difference between the last two polls: calls, errors and rows per second, the
//! interval's mean, and its p95 from the histogram's bucket differences (see `admin::rows`).
//!
//! Everything but the terminal is here and tested without one: [`intervals`] computes the
//! deltas, [`View`] holds the sort, the filters and the selection and takes key presses,
//! `render.rs` draws a [`View`] into a ratatui buffer or prints it as text or JSON for `--once`.
//! `term.rs` is the thin loop that polls, reads keys and draws.

mod render;
mod term;

use std::collections::HashMap;

use serde::Serialize;

use crate::admin::rows::{self, Row};

pub use render::{render_json, render_text};
pub use term::{TopError, poll_interval, run};

/// One (fingerprint, database, user) entry over the last interval, with its cumulative row.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The entry's cumulative figures at the end of the interval (SQL, rules, routes too).
    #[serde(skip)]
    pub row: Row,
    pub calls: u64,
    pub calls_per_s: f64,
    /// Time spent in statements of this entry during the interval.
    pub total_ms: f64,
    /// Over the interval's calls; `None` when there were none.
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub errors: u64,
    pub errors_per_s: f64,
    pub rows: u64,
    pub rows_per_s: f64,
}

impl Line {
    fn key(&self) -> (&str, &str, &str) {
        (&self.row.fingerprint, &self.row.database, &self.row.user)
    }
}

/// The deltas between two polls `secs` apart. An entry missing from `before` started during the
/// interval; one whose calls went down was reset, and counts from zero.
pub fn intervals(before: &[Row], now: &[Row], secs: f64) -> Vec<Line> {
    let before: HashMap<(&str, &str, &str), &Row> = before
        .iter()
        .map(|r| ((&*r.fingerprint, &*r.database, &*r.user), r))
        .collect();
    let zero = Row::default();
    let per_s = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    now.iter()
        .map(|r| {
            let prev = before
                .get(&(&*r.fingerprint, &*r.database, &*r.user))
                .copied()
                .filter(|p| p.calls <= r.calls)
                .unwrap_or(&zero);
            let calls = r.calls - prev.calls;
            let total_ms = (r.total_ms - prev.total_ms).max(0.0);
            let errors = r.error_count().saturating_sub(prev.error_count());
            let rows = r.rows.saturating_sub(prev.rows);
            let hist = rows::subtract(&r.histogram, &prev.histogram);
            Line {
                row: r.clone(),
                calls,
                calls_per_s: per_s(calls as f64),
                total_ms,
                mean_ms: (calls > 0).then(|| total_ms / calls as f64),
                p95_ms: if calls > 0 {
                    rows::quantile(&hist, 0.95)
                } else {
                    None
                },
                errors,
                errors_per_s: per_s(errors as f64),
                rows,
                rows_per_s: per_s(rows as f64),
            }
        })
        .collect()
}

/// What the rows are ordered by, descending; each a key in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Time spent over the interval (`t`): the load each shape puts on the server.
    Total,
    P95,
    Mean,
    Calls,
    Errors,
    Rows,
}

impl Sort {
    /// `(key, sort, what the header calls it)`.
    const KEYS: [(char, Sort, &'static str); 6] = [
        ('t', Sort::Total, "total time"),
        ('p', Sort::P95, "p95"),
        ('m', Sort::Mean, "mean"),
        ('c', Sort::Calls, "calls"),
        ('e', Sort::Errors, "errors"),
        ('r', Sort::Rows, "rows"),
    ];

    /// The sort a key press selects.
    pub fn of_key(c: char) -> Option<Sort> {
        Self::KEYS.iter().find(|k| k.0 == c).map(|k| k.1)
    }

    /// The name given on the command line (`total`, `p95`, `mean`, `calls`, `errors`, `rows`).
    pub fn parse(name: &str) -> Option<Sort> {
        Self::KEYS
            .iter()
            .find(|k| format!("{:?}", k.1).eq_ignore_ascii_case(name))
            .map(|k| k.1)
    }

    /// What the header calls it.
    pub fn label(self) -> &'static str {
        Self::KEYS.iter().find(|k| k.1 == self).map_or("", |k| k.2)
    }

    fn value(self, l: &Line) -> f64 {
        match self {
            Sort::Total => l.total_ms,
            Sort::P95 => l.p95_ms.unwrap_or(0.0),
            Sort::Mean => l.mean_ms.unwrap_or(0.0),
            Sort::Calls => l.calls as f64,
            Sort::Errors => l.errors as f64,
            Sort::Rows => l.rows as f64,
        }
    }

    /// Descending by this key; ties (idle entries, mostly) by cumulative time, then by
    /// fingerprint, so the order does not flicker between refreshes.
    pub fn sort(self, lines: &mut [Line]) {
        lines.sort_by(|a, b| {
            self.value(b)
                .total_cmp(&self.value(a))
                .then_with(|| b.row.total_ms.total_cmp(&a.row.total_ms))
                .then_with(|| a.key().cmp(&b.key()))
        });
    }
}

/// A key press, as the view understands it (the terminal loop maps crossterm's events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Esc,
}

/// The state of the screen: the last interval's lines and how the operator looks at them.
#[derive(Debug, Clone)]
pub struct View {
    /// Where the figures come from, for the header.
    pub admin: String,
    pub sort: Sort,
    /// Show only this database / user (`d` and `u` cycle through the ones seen).
    pub database: Option<String>,
    pub user: Option<String>,
    /// Hide entries without calls in the interval (`i`).
    pub hide_idle: bool,
    /// Length of the last interval, seconds.
    pub secs: f64,
    /// The last poll's error, shown instead of stale figures going unnoticed.
    pub error: Option<String>,
    lines: Vec<Line>,
    /// The selected entry, kept by identity across refreshes and re-sorts.
    selected: Option<(String, String, String)>,
    /// Rows PageUp/PageDown move the selection by.
    page: usize,
}

impl View {
    pub fn new(admin: &str, sort: Sort) -> View {
        View {
            admin: admin.to_owned(),
            sort,
            database: None,
            user: None,
            hide_idle: false,
            secs: 0.0,
            error: None,
            lines: Vec::new(),
            selected: None,
            page: 10,
        }
    }

    /// New figures for an interval of `secs` seconds.
    pub fn update(&mut self, lines: Vec<Line>, secs: f64) {
        self.lines = lines;
        self.secs = secs;
        self.error = None;
        self.sort.sort(&mut self.lines);
    }

    /// Every entry seen in the last poll (for the filters' choices).
    pub fn all(&self) -> &[Line] {
        &self.lines
    }

    /// The entries shown, in order.
    pub fn visible(&self) -> Vec<&Line> {
        self.lines
            .iter()
            .filter(|l| {
                self.database.as_deref().is_none_or(|d| l.row.database == d)
                    && self.user.as_deref().is_none_or(|u| l.row.user == u)
                    && !(self.hide_idle && l.calls == 0)
            })
            .collect()
    }

    /// Index in [`View::visible`] of the selected entry (the first when none is, or it left).
    pub fn selected_index(&self, visible: &[&Line]) -> usize {
        self.selected
            .as_ref()
            .and_then(|s| {
                visible
                    .iter()
                    .position(|l| l.key() == (s.0.as_str(), s.1.as_str(), s.2.as_str()))
            })
            .unwrap_or(0)
    }

    /// Handles a key press; `false` means quit.
    pub fn key(&mut self, key: Key) -> bool {
        let visible = self.visible();
        let at = self.selected_index(&visible);
        let last = visible.len().saturating_sub(1);
        let move_to = match key {
            Key::Char('q') | Key::Esc => return false,
            Key::Up | Key::Char('k') => Some(at.saturating_sub(1)),
            Key::Down | Key::Char('j') => Some((at + 1).min(last)),
            Key::PageUp => Some(at.saturating_sub(self.page)),
            Key::PageDown => Some((at + self.page).min(last)),
            Key::Home => Some(0),
            Key::End => Some(last),
            _ => None,
        };
        if let Some(i) = move_to {
            self.selected = visible
                .get(i)
                .map(|l| (l.key().0.into(), l.key().1.into(), l.key().2.into()));
            return true;
        }
        let Key::Char(c) = key else { return true };
        if let Some(sort) = Sort::of_key(c) {
            self.sort = sort;
            self.sort.sort(&mut self.lines);
        } else if c == 'd' {
            let now = self.database.take();
            self.database = self.next_of(now, |l| &l.row.database);
        } else if c == 'u' {
            let now = self.user.take();
            self.user = self.next_of(now, |l| &l.row.user);
        } else if c == 'i' {
            self.hide_idle = !self.hide_idle;
        }
        true
    }

    /// Cycles a filter: all, then each value seen in sorted order, then all again.
    fn next_of(&self, now: Option<String>, field: impl Fn(&Line) -> &String) -> Option<String> {
        let mut seen: Vec<&String> = self.lines.iter().map(field).collect();
        seen.sort();
        seen.dedup();
        match now {
            None => seen.first().map(|s| (*s).clone()),
            Some(now) => seen.into_iter().find(|s| **s > now).cloned(),
        }
    }
}

#[cfg(test)]
mod tests;
