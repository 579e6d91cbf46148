//! The two text services statistics need from `crate::sql`: the normalized statement text
//! (stored once per entry, logged by the slow log) and the sqlcommenter tags.
//!
//! INTERIM: `crate::sql::normalize` and `crate::sql::commenter::parse` are being written on
//! the `fingerprint` branch. Until they land, this file carries small stand-ins with the same
//! contract, so stats, the slow log and their tests work; the switch is local to this file.

use std::borrow::Cow;

/// Statement text with literals replaced by `$n` placeholders, cut at `max_len` bytes on a
/// character boundary.
pub fn normalize(sql: &[u8], max_len: usize) -> String {
    let mut out = String::with_capacity(sql.len().min(max_len));
    let mut n = 0u32;
    let mut i = 0;
    let mut prev_ident = false;
    while i < sql.len() && out.len() < max_len {
        let b = sql[i];
        if b == b'\'' {
            i += 1;
            while i < sql.len() {
                if sql[i] == b'\'' {
                    if sql.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            n += 1;
            out.push_str(&format!("${n}"));
            prev_ident = false;
            continue;
        }
        if b.is_ascii_digit() && !prev_ident {
            while i < sql.len() && (sql[i].is_ascii_digit() || sql[i] == b'.') {
                i += 1;
            }
            n += 1;
            out.push_str(&format!("${n}"));
            continue;
        }
        if b == b'/' && sql.get(i + 1) == Some(&b'*') {
            // Comments (sqlcommenter tags included) are not part of the shape.
            match find(&sql[i + 2..], b"*/") {
                Some(end) => i += end + 4,
                None => break,
            }
            continue;
        }
        let start = i;
        i += 1;
        while i < sql.len() && sql[i] >= 0x80 && sql[i] < 0xC0 {
            i += 1;
        }
        out.push_str(&String::from_utf8_lossy(&sql[start..i]));
        prev_ident = b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    }
    let mut cut = max_len.min(out.len());
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out.trim_end().to_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Key/value tags of a trailing sqlcommenter comment, URL-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommentTags<'a> {
    pub pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl CommentTags<'_> {
    /// The value of `key`, if tagged.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Cheap test run on every statement: sqlcommenter appends its comment at the very end.
#[inline]
pub fn may_have_tags(sql: &[u8]) -> bool {
    let end = sql
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != b';')
        .map_or(0, |p| p + 1);
    end >= 4 && &sql[end - 2..end] == b"*/"
}

/// Parses the trailing `/*key='value',...*/` comment; empty when there is none.
pub fn comment_tags(sql: &[u8]) -> CommentTags<'_> {
    if !may_have_tags(sql) {
        return CommentTags::default();
    }
    let Ok(text) = std::str::from_utf8(sql) else {
        return CommentTags::default();
    };
    let text = text.trim_end_matches(|c: char| c.is_ascii_whitespace() || c == ';');
    let Some(body) = text.strip_suffix("*/") else {
        return CommentTags::default();
    };
    let Some(start) = body.rfind("/*") else {
        return CommentTags::default();
    };
    let mut tags = CommentTags::default();
    for item in body[start + 2..].split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let Some(v) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
            continue;
        };
        tags.pairs.push((url_decode(k.trim()), url_decode(v)));
    }
    tags
}

fn url_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_hides_literals() {
        let n = normalize(
            b"SELECT * FROM t WHERE email = 'a@b.c' AND id = 42 /*x='1'*/",
            100,
        );
        assert!(
            !n.contains("a@b.c") && !n.contains("42") && !n.contains("x="),
            "{n}"
        );
        assert_eq!(normalize("SELECT 'é'".as_bytes(), 8), "SELECT $");
    }

    #[test]
    fn django_comment_tags() {
        let sql = b"SELECT 1 /*controller='index',route='%5Eorders%2F',traceparent='00-a-b-01'*/;";
        let tags = comment_tags(sql);
        assert_eq!(tags.get("route"), Some("^orders/"));
        assert_eq!(tags.get("controller"), Some("index"));
        assert_eq!(tags.get("traceparent"), Some("00-a-b-01"));
        assert!(comment_tags(b"SELECT 1").pairs.is_empty());
    }
}
