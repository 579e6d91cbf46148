//! The lexer against sqlparser's tokenizer (PostgreSqlDialect): same token boundaries and
//! coarse classes, on the corpus and on generated SQL.
//!
//! Whitespace and comments are compared only through the boundaries of the tokens around them
//! (sqlparser yields one token per space character). Inputs where the two are known to differ
//! by design are not generated:
//! - unterminated strings, quoted identifiers and comments: sqlparser returns an error, the
//!   lexer a token to the end of input (a statement with a syntax error is still fingerprinted);
//! - operator sequences outside the fixed set below: PostgreSQL lexes any run of operator
//!   characters as one user-defined operator (trimming a trailing `+`/`-` unless the run contains
//!   one of ``~!@#^&|`?%``), while sqlparser knows a fixed list of operators;
//! - an operator directly followed by a comment (`</*c*/`): PostgreSQL ends the operator at
//!   `/*` (and `--`), sqlparser reads on (so comments here always follow whitespace or a
//!   non-operator token);
//! - a number glued to an identifier (`1abc`, `1e`): PostgreSQL 16 rejects it as trailing junk,
//!   the two tokenizers split it differently.

use proptest::prelude::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token as SpToken, Tokenizer};

use crate::sql::lexer::{Lexer, TokenKind};

/// The classes both tokenizers can agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    QuotedIdent,
    String,
    Number,
    Placeholder,
    OpPunct,
}

fn ours(sql: &str) -> Vec<(Class, usize, usize)> {
    Lexer::new(sql.as_bytes())
        .filter(|t| !t.kind.is_trivia())
        .map(|t| {
            let class = match t.kind {
                TokenKind::Ident => Class::Word,
                TokenKind::QuotedIdent => Class::QuotedIdent,
                TokenKind::Number => Class::Number,
                TokenKind::Param => Class::Placeholder,
                k if k.is_string() => Class::String,
                _ => Class::OpPunct,
            };
            (class, t.start, t.end)
        })
        .collect()
}

/// Byte offset of a 1-based (line, column-in-chars) location.
fn byte_offset(sql: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, l) in sql.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            return offset
                + l.char_indices()
                    .nth(column as usize - 1)
                    .map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    offset
}

fn theirs(sql: &str) -> Vec<(Class, usize, usize)> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .expect("sqlparser tokenizes the input");
    tokens
        .into_iter()
        .filter(|t| !matches!(t.token, SpToken::Whitespace(_) | SpToken::EOF))
        .map(|t| {
            let class = match &t.token {
                SpToken::Word(w) if w.quote_style == Some('"') => Class::QuotedIdent,
                SpToken::Word(_) => Class::Word,
                SpToken::Number(..) => Class::Number,
                SpToken::Placeholder(p) if p.starts_with('$') => Class::Placeholder,
                SpToken::SingleQuotedString(_)
                | SpToken::EscapedStringLiteral(_)
                | SpToken::UnicodeStringLiteral(_)
                | SpToken::HexStringLiteral(_)
                | SpToken::NationalStringLiteral(_)
                | SpToken::SingleQuotedByteStringLiteral(_)
                | SpToken::DollarQuotedString(_) => Class::String,
                _ => Class::OpPunct,
            };
            let start = byte_offset(sql, t.span.start.line, t.span.start.column);
            let end = byte_offset(sql, t.span.end.line, t.span.end.column);
            (class, start, end)
        })
        .collect()
}

const CORPUS: &str = include_str!("../../../tests/corpus/django-orders.sql");

#[track_caller]
fn agree(sql: &str) {
    assert_eq!(ours(sql), theirs(sql), "token streams differ for:\n{sql}");
}

#[test]
fn corpus_tokens_agree() {
    agree(CORPUS);
    agree(
        "SELECT DISTINCT \"shop_order\".\"id\" FROM \"shop_order\" WHERE \"shop_order\".\"id\" IN (1, 2) \
         AND x::timestamptz >= '2024-01-01'::date LIMIT 25 /*route='api/orders/'*/;",
    );
}

#[test]
fn literal_forms_agree() {
    for sql in [
        "x=-1",
        "0x1F 1_000 1.5e10 1e-5 .5 1. 42",
        r"B'01' X'1F' E'a\'b' U&'x' N'y' 'it''s' 'back\slash'",
        "$$a$$ $t$b;$$ $t$ $1 $12",
        "a->>'k' @> <@ #> #>> ~* !~* && || :: != <> <= >= %",
        "/* a /* b */ c */ d -- tail",
        "é \"Ü\"",
    ] {
        agree(sql);
    }
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_$]{0,8}",
        prop::sample::select(vec![
            "SELECT", "FROM", "WHERE", "IN", "AND", "NULL", "VALUES", "ARRAY", "LIMIT", "DATE",
            "BEGIN", "END", "CASE", "SET",
        ])
        .prop_map(String::from),
        "[a-zA-Z ;'_\"é]{0,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        "[a-z ;\"'_\\\\-]{0,8}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        "[a-z ;\"'_]{0,8}".prop_map(|s| format!("E'{}'", s.replace('\'', "\\'"))),
        "[a-z ;]{0,8}".prop_map(|s| format!("U&'{s}'")),
        "[a-z ;]{0,8}".prop_map(|s| format!("N'{s}'")),
        "[01]{0,8}".prop_map(|s| format!("B'{s}'")),
        "[0-9A-F]{0,8}".prop_map(|s| format!("X'{s}'")),
        "[a-z ;'_]{0,8}".prop_map(|s| format!("$${s}$$")),
        ("[a-z][a-z0-9]{0,2}", "[a-z ;'_]{0,8}").prop_map(|(t, s)| format!("${t}${s}${t}$")),
        "[0-9]{1,6}",
        "[0-9]{1,4}\\.[0-9]{0,4}",
        "[0-9]{1,3}(\\.[0-9]{1,3})?[eE][+-]?[0-9]{1,2}",
        "\\.[0-9]{1,3}",
        "0x[0-9A-Fa-f]{1,4}",
        "\\$[1-9][0-9]{0,2}",
        prop::sample::select(vec![
            "=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||", "->", "->>",
            "@>", "<@", "#>", "#>>", "~", "~*", "!~", "!~*", "&&", "::", "(", ")", ",", ";", ".",
            "[", "]",
        ])
        .prop_map(String::from),
    ]
}

/// Tokens that may touch their neighbour without changing how either is lexed.
fn glues(t: &str) -> bool {
    matches!(t, "(" | ")" | "," | ";" | "[" | "]")
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        " ",
        "\n",
        "\t",
        "  ",
        " /* c */ ",
        " -- c\n",
        " /* x /* y */ */",
        " /**/",
        "",
    ])
}

fn statement() -> impl Strategy<Value = String> {
    prop::collection::vec((token(), separator()), 1..40).prop_map(|parts| {
        let mut sql = String::new();
        let mut prev_glues = true;
        for (tok, sep) in parts {
            let sep = if sep.is_empty() && !(prev_glues || glues(&tok)) {
                " "
            } else {
                sep
            };
            if !sql.is_empty() {
                sql.push_str(sep);
            }
            prev_glues = glues(&tok);
            sql.push_str(&tok);
        }
        sql
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_tokens_agree(sql in statement()) {
        prop_assert_eq!(ours(&sql), theirs(&sql), "for {}", sql);
    }

    /// The splitter's no-lexing fast path cuts where lexing cuts.
    #[test]
    fn split_fast_path_agrees(sql in statement(), tail in prop::sample::select(vec!["", ";", " ; ", "\n"])) {
        let sql = format!("{sql}{tail}");
        let fast: Vec<_> = crate::sql::split_statements(sql.as_bytes()).collect();
        let slow: Vec<_> = crate::sql::split::split_statements_by_lexing(sql.as_bytes()).collect();
        prop_assert_eq!(fast, slow, "for {:?}", sql);
    }

    /// Re-spacing and re-commenting a statement never changes its fingerprint.
    #[test]
    fn trivia_do_not_change_the_fingerprint(
        toks in prop::collection::vec(token(), 1..30),
        seps_a in prop::collection::vec(separator(), 30),
        seps_b in prop::collection::vec(separator(), 30),
    ) {
        let join = |seps: &[&str]| {
            let mut sql = String::new();
            for (i, t) in toks.iter().enumerate() {
                if i > 0 {
                    let s = if seps[i].is_empty() { " " } else { seps[i] };
                    sql.push_str(s);
                }
                sql.push_str(t);
            }
            sql
        };
        let (a, b) = (join(&seps_a), join(&seps_b));
        prop_assert_eq!(crate::sql::fingerprint(a.as_bytes()), crate::sql::fingerprint(b.as_bytes()), "{} vs {}", a, b);
    }

    /// Arbitrary bytes never panic any entry point, and the splitter's ranges are in order.
    #[test]
    fn arbitrary_bytes_are_handled(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = crate::sql::fingerprint(&bytes);
        let text = crate::sql::normalize(&bytes, 64);
        prop_assert!(text.len() <= 64);
        let _ = crate::sql::commenter::parse(&bytes);
        let mut last = 0;
        for r in crate::sql::split_statements(&bytes) {
            prop_assert!(r.start >= last && r.start < r.end && r.end <= bytes.len());
            last = r.end;
        }
        let covered: usize = Lexer::new(&bytes).map(|t| t.end - t.start).sum();
        prop_assert_eq!(covered, bytes.len());
    }
}
