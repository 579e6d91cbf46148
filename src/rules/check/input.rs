//! Reading statements for `pgshape check`: SQL files, PostgreSQL server logs and pgshape's own
//! JSON statement log, each statement with the line it starts on.

use crate::sql::split_statements;

/// The three input forms; [`detect`] picks one from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Statements separated by `;` (comments and quoting respected).
    Sql,
    /// PostgreSQL log lines from `log_statement` (`LOG:  statement: …`) or
    /// `log_min_duration_statement` (`LOG:  duration: 1.2 ms  statement: …`, also `execute …:`),
    /// with tab-indented continuation lines.
    PostgresLog,
    /// JSON lines: pgshape's slow/statement log (`fields.query`), or objects with a top-level
    /// `query` / `sql` / `statement` string.
    JsonLines,
}

/// One statement to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based line where the statement starts in its input.
    pub line: usize,
    pub sql: String,
    /// Session context when the input carries it (JSON log), else empty.
    pub database: String,
    pub user: String,
    pub application_name: String,
    /// What the source knows about the statement (pg_stat_statements: calls and time).
    pub note: Option<String>,
}

impl Statement {
    pub(crate) fn new(line: usize, sql: String) -> Statement {
        Statement {
            line,
            sql,
            database: String::new(),
            user: String::new(),
            application_name: String::new(),
            note: None,
        }
    }
}

/// Guesses the input form from the first meaningful line.
pub fn detect(text: &str) -> InputKind {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(l) if l.starts_with('{') => InputKind::JsonLines,
        _ if text.lines().take(50).any(|l| log_statement(l).is_some()) => InputKind::PostgresLog,
        _ => InputKind::Sql,
    }
}

/// Splits `text` of the given kind into statements.
pub fn statements(text: &str, kind: InputKind) -> Vec<Statement> {
    match kind {
        InputKind::Sql => sql_statements(text, 1),
        InputKind::PostgresLog => log_statements(text),
        InputKind::JsonLines => json_statements(text),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Statements of a SQL text; the reported line skips leading comments and blank lines, so it
/// points at the statement itself.
fn sql_statements(text: &str, first_line: usize) -> Vec<Statement> {
    split_statements(text.as_bytes())
        .filter_map(|range| {
            let sql = text.get(range.clone())?;
            let skip = leading_comment_len(sql);
            let body = sql[skip..].trim();
            if body.is_empty() {
                return None;
            }
            let line = first_line + line_of(text, range.start + skip);
            Some(Statement::new(line, sql.to_owned()))
        })
        .collect()
}

/// Bytes of leading whitespace, `--` comments and `/* */` comments.
fn leading_comment_len(sql: &str) -> usize {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("--") {
            rest = after.find('\n').map_or("", |i| &after[i + 1..]);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            match after.find("*/") {
                Some(i) => rest = &after[i + 2..],
                None => return sql.len() - trimmed.len(),
            }
        } else {
            return sql.len() - trimmed.len();
        }
    }
}

/// The statement text of a log line, if it logs one.
fn log_statement(line: &str) -> Option<&str> {
    let (_, message) = line.split_once("LOG:  ")?;
    let message = match message.strip_prefix("duration: ") {
        Some(rest) => rest.split_once(" ms  ")?.1,
        None => message,
    };
    if let Some(sql) = message.strip_prefix("statement: ") {
        return Some(sql);
    }
    // `execute <name>: SQL` / `execute <name>/<portal>: SQL` (extended protocol).
    let rest = message.strip_prefix("execute ")?;
    rest.split_once(": ").map(|(_, sql)| sql)
}

fn log_statements(text: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut flush = |current: &mut Option<(usize, String)>| {
        if let Some((line, sql)) = current.take() {
            out.extend(sql_statements(&sql, line));
        }
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix('\t') {
            if let Some((_, sql)) = current.as_mut() {
                sql.push('\n');
                sql.push_str(rest);
            }
            continue;
        }
        flush(&mut current);
        if let Some(sql) = log_statement(line) {
            current = Some((i + 1, sql.to_owned()));
        }
    }
    flush(&mut current);
    out
}

fn json_statements(text: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = value.get("fields").unwrap_or(&value);
        let field = |name: &str| {
            fields
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let sql = ["query", "sql", "statement"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(|v| v.as_str()));
        if let Some(sql) = sql {
            let mut stmt = Statement::new(i + 1, sql.to_owned());
            stmt.database = field("database");
            stmt.user = field("user");
            stmt.application_name = field("application_name");
            out.push(stmt);
        }
    }
    out
}
