//! Per-execution facts that depend on the statement's constants, which the fingerprint (and
//! so the [`super::Facts`] cache) deliberately forgets: OFFSET values, IN-list lengths and
//! LIKE patterns with a leading wildcard.
//!
//! A token scan, not a parse: it is several times cheaper than building the AST, and the
//! constructs it reads are lexically unambiguous once strings and comments are tokens.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Constants of one execution. With `$n` parameters the values are not in the text, so
/// `offset` is `None` and a parameter pattern is not a leading wildcard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ValueFacts {
    /// Largest literal OFFSET anywhere in the statement.
    pub offset: Option<u64>,
    /// Longest `IN (…)` constant list or `ARRAY[…]` (parameters count as elements).
    pub max_in_list_len: usize,
    /// `LIKE '%…'` / `ILIKE '_…'`, also through `UPPER('%…')` as Django writes it.
    pub leading_wildcard_like: bool,
}

/// Scans one statement's tokens; an untokenizable text yields the empty facts (fail open).
pub fn scan_values(sql: &[u8]) -> ValueFacts {
    let mut facts = ValueFacts::default();
    let Ok(text) = std::str::from_utf8(sql) else {
        return facts;
    };
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return facts;
    };
    let tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(word) = token else {
            if *token == Token::LBracket && i > 0 && is_keyword(&tokens[i - 1], Keyword::ARRAY) {
                facts.max_in_list_len = facts.max_in_list_len.max(list_len(&tokens[i + 1..]));
            }
            continue;
        };
        match word.keyword {
            Keyword::OFFSET => {
                if let Some(Token::Number(n, _)) = tokens.get(i + 1)
                    && let Ok(n) = n.parse::<u64>()
                {
                    facts.offset = Some(facts.offset.map_or(n, |o| o.max(n)));
                }
            }
            Keyword::LIKE | Keyword::ILIKE => {
                let pattern = tokens[i + 1..]
                    .iter()
                    .find(|t| !matches!(t, Token::Word(_) | Token::LParen));
                if pattern
                    .and_then(string_value)
                    .is_some_and(|s| s.starts_with('%') || s.starts_with('_'))
                {
                    facts.leading_wildcard_like = true;
                }
            }
            Keyword::IN if tokens.get(i + 1) == Some(&Token::LParen) => {
                let subquery = matches!(
                    tokens.get(i + 2),
                    Some(Token::Word(w)) if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES)
                );
                if !subquery {
                    facts.max_in_list_len = facts.max_in_list_len.max(list_len(&tokens[i + 2..]));
                }
            }
            _ => {}
        }
    }
    facts
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.keyword == keyword)
}

/// Elements of a list whose opening bracket was just consumed: top-level commas + 1.
fn list_len(tokens: &[Token]) -> usize {
    let mut depth = 0usize;
    let mut commas = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => {
                if depth == 0 {
                    return if i == 0 { 0 } else { commas + 1 };
                }
                depth -= 1;
            }
            Token::Comma if depth == 0 => commas += 1,
            _ => {}
        }
    }
    commas + 1
}

fn string_value(token: &Token) -> Option<&str> {
    match token {
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some(s),
        Token::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}
