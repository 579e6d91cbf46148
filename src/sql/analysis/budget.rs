//! How much text and nesting a statement may have and still be parsed.
//!
//! Checked before sqlparser sees the text, with pgshape's own lexer (linear, allocation-free,
//! and never recursive), so the check itself costs at most one pass over `max_bytes` of text:
//! the size test comes first and needs no pass at all.

use std::fmt;

use crate::sql::lexer::{SignificantTokens, TokenKind};

/// Largest statement analysed by default. Statements of ORMs with long `IN` lists stay well
/// below it; the facts of a shape are cached by fingerprint, so a larger statement of a shape
/// already seen smaller still has its facts.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;

/// Deepest bracket nesting analysed by default: well past hand-written and generated SQL, well
/// within what the parser's recursion limit and the facts walker take.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Limits on the statements the analyzer parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Statement text in bytes.
    pub max_bytes: usize,
    /// Nesting of `(` and `[`, outside strings and comments.
    pub max_depth: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Which limit a statement went past: the `reason` label of
/// `pgshape_analysis_skipped_total` and the `analysis` field of the slow log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverBudget {
    Size,
    Depth,
}

impl OverBudget {
    pub const ALL: [OverBudget; 2] = [OverBudget::Size, OverBudget::Depth];

    pub fn as_str(self) -> &'static str {
        match self {
            OverBudget::Size => "size",
            OverBudget::Depth => "depth",
        }
    }
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Budget {
    /// Whether `sql` may be parsed.
    ///
    /// # Errors
    /// The first limit `sql` is over.
    pub fn check(&self, sql: &[u8]) -> Result<(), OverBudget> {
        if sql.len() > self.max_bytes {
            return Err(OverBudget::Size);
        }
        let mut depth = 0usize;
        for token in SignificantTokens::new(sql) {
            if token.kind != TokenKind::Punct {
                continue;
            }
            match token.text(sql) {
                b"(" | b"[" => {
                    depth += 1;
                    if depth > self.max_depth {
                        return Err(OverBudget::Depth);
                    }
                }
                b")" | b"]" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::analysis::{AnalysisError, analyze, analyze_within};

    fn nested(depth: usize) -> String {
        format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth))
    }

    #[test]
    fn within_budget_is_analysed() {
        assert!(analyze(nested(DEFAULT_MAX_DEPTH).as_bytes()).is_ok());
        assert!(analyze(b"SELECT a[1][2] FROM t WHERE x IN (1, 2, 3)").is_ok());
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let sql = format!(
            "SELECT '{}' /* {} */ FROM t -- {}\n",
            "(".repeat(1000),
            "(".repeat(1000),
            "[".repeat(1000)
        );
        assert_eq!(Budget::default().check(sql.as_bytes()), Ok(()));
    }

    #[test]
    fn ten_thousand_parentheses_are_over_the_depth_budget() {
        let sql = nested(10_000);
        assert!(matches!(
            analyze(sql.as_bytes()),
            Err(AnalysisError::OverBudget(OverBudget::Depth))
        ));
    }

    #[test]
    fn deep_nesting_without_brackets_stops_at_the_parser_limit() {
        // NOT NOT NOT … recurses in the parser without a single bracket: its recursion limit
        // ends it with an error (sqlparser reports it as a parse error here), not the stack.
        let sql = format!("SELECT {}true", "NOT ".repeat(10_000));
        assert_eq!(Budget::default().check(sql.as_bytes()), Ok(()));
        assert!(analyze(sql.as_bytes()).is_err());
    }

    #[test]
    fn a_long_in_list_is_over_the_size_budget() {
        let list: Vec<String> = (0..200_000).map(|i| i.to_string()).collect();
        let sql = format!("SELECT * FROM t WHERE id IN ({})", list.join(", "));
        assert!(sql.len() > DEFAULT_MAX_BYTES);
        assert!(matches!(
            analyze(sql.as_bytes()),
            Err(AnalysisError::OverBudget(OverBudget::Size))
        ));
        let roomy = Budget {
            max_bytes: sql.len(),
            ..Budget::default()
        };
        assert!(analyze_within(sql.as_bytes(), &roomy).is_ok());
    }
}
