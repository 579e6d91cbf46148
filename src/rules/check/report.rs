//! Output formats of `pgshape check`: human, JSON, GitHub workflow commands, JUnit XML.

use std::io::{self, Write};

use serde::Serialize;

use crate::rules::Severity;

/// How hits are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `file:line: severity [rule] message` plus an indented hint.
    #[default]
    Human,
    /// One JSON document with every hit and the totals.
    Json,
    /// GitHub Actions workflow commands (`::warning file=…,line=…::…`), shown inline on PRs.
    Github,
    /// JUnit XML: one test case per statement, a failure per hit.
    Junit,
}

/// One hit, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: String,
    pub severity: Severity,
    pub action: String,
    pub message: String,
    pub hint: Option<String>,
    pub fingerprint: String,
    pub decided_by: Option<String>,
    /// The statement, shortened for display.
    pub statement: String,
    /// What the source knows about the statement (pg_stat_statements: calls and time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The rewrite the hit's rule would send, or why there is none (only for rules that
    /// rewrite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<super::rewrite::RewriteInfo>,
}

/// Totals, printed by every format.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub statements: usize,
    pub hits: usize,
    pub parse_failures: usize,
}

pub fn write(
    format: Format,
    findings: &[Finding],
    checked: &[(String, usize)],
    totals: Totals,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Human => human(findings, totals, out),
        Format::Json => {
            let doc = serde_json::json!({ "hits": findings, "totals": totals });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        Format::Github => github(findings, out),
        Format::Junit => junit(findings, checked, totals, out),
    }
}

fn human(findings: &[Finding], totals: Totals, out: &mut dyn Write) -> io::Result<()> {
    for f in findings {
        writeln!(
            out,
            "{}:{}: {} [{}] {}",
            f.file, f.line, f.severity, f.rule, f.message
        )?;
        writeln!(out, "    {}", f.statement)?;
        if let Some(note) = &f.note {
            writeln!(out, "    seen: {note}")?;
        }
        if let Some(hint) = &f.hint {
            writeln!(out, "    hint: {hint}")?;
        }
        if let Some(rewrite) = &f.rewrite {
            writeln!(out, "    {}", rewrite.line())?;
        }
    }
    writeln!(
        out,
        "{} statements checked, {} rule hits, {} not parsed",
        totals.statements, totals.hits, totals.parse_failures
    )
}

/// Escaping of workflow command data and properties (GitHub's toolkit rules).
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

fn github(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    for f in findings {
        let level = match f.severity {
            Severity::Info => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        let mut text = f.message.clone();
        if let Some(hint) = &f.hint {
            text.push_str(" Hint: ");
            text.push_str(hint);
        }
        if let Some(rewrite) = &f.rewrite {
            // "Rewrite (…): …", "Not rewritable: …", "Rewrite not proposed: …"
            let line = rewrite.line();
            let mut chars = line.chars();
            text.push(' ');
            text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            text.push_str(chars.as_str());
        }
        writeln!(
            out,
            "::{level} file={},line={},title={}::{}",
            gh_escape(&f.file, true),
            f.line,
            gh_escape(&f.rule, true),
            gh_escape(&text, false)
        )?;
    }
    Ok(())
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn junit(
    findings: &[Finding],
    checked: &[(String, usize)],
    totals: Totals,
    out: &mut dyn Write,
) -> io::Result<()> {
    let failing = checked
        .iter()
        .filter(|(file, line)| findings.iter().any(|f| &f.file == file && f.line == *line))
        .count();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="pgshape check" tests="{}" failures="{failing}">"#,
        totals.statements
    )?;
    writeln!(
        out,
        r#"  <testsuite name="pgshape check" tests="{}" failures="{failing}">"#,
        totals.statements
    )?;
    for (file, line) in checked {
        let name = format!("{file}:{line}");
        let hits: Vec<&Finding> = findings
            .iter()
            .filter(|f| &f.file == file && f.line == *line)
            .collect();
        if hits.is_empty() {
            writeln!(
                out,
                r#"    <testcase classname="{}" name="{}"/>"#,
                xml(file),
                xml(&name)
            )?;
            continue;
        }
        writeln!(
            out,
            r#"    <testcase classname="{}" name="{}">"#,
            xml(file),
            xml(&name)
        )?;
        for f in hits {
            writeln!(
                out,
                r#"      <failure type="{}" message="{}">{}</failure>"#,
                xml(&f.rule),
                xml(&format!("{}: {}", f.severity, f.message)),
                xml(&format!(
                    "{}\nhint: {}{}",
                    f.statement,
                    f.hint.as_deref().unwrap_or(""),
                    f.rewrite
                        .as_ref()
                        .map(|r| format!("\n{}", r.line()))
                        .unwrap_or_default()
                ))
            )?;
        }
        writeln!(out, "    </testcase>")?;
    }
    writeln!(out, "  </testsuite>")?;
    writeln!(out, "</testsuites>")
}
