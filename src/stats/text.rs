//! An allocation-free reader of sqlcommenter tags for the statistics hot path.
//!
//! `crate::sql::commenter::parse` is the full parser (legacy `key:value` comments, escapes,
//! decoded owned values) and the slow log uses it. Statistics read the tags of every tagged
//! statement, which in a Django or Rails app is nearly every statement, and the full parser
//! allocates a `String` per key and value; here the raw values are compared as sent and only
//! a value not seen before is decoded (by [`decode`], with the same unescaping and URL-decoding
//! as the full parser).

use std::borrow::Cow;

/// Cheap test run on every statement: sqlcommenter appends its comment at the very end.
#[inline]
pub fn may_have_tags(sql: &[u8]) -> bool {
    let end = sql
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != b';')
        .map_or(0, |p| p + 1);
    end >= 4 && &sql[end - 2..end] == b"*/"
}

/// The body of the trailing sqlcommenter comment (between `/*` and `*/`), if any.
fn comment_body(sql: &[u8]) -> Option<&[u8]> {
    if !may_have_tags(sql) {
        return None;
    }
    let end = sql
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != b';')?
        .checked_sub(1)?;
    // `end` is the index of `*` in the closing `*/`; find the opening `/*` before it.
    let body_end = end;
    let start = sql[..body_end].windows(2).rposition(|w| w == b"/*")? + 2;
    Some(&sql[start..body_end])
}

/// Still URL-encoded `key='value'` pairs of the trailing sqlcommenter comment, read without
/// allocating: the statistics hot path compares raw values and decodes only new ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawTags<'a> {
    body: &'a [u8],
}

impl<'a> RawTags<'a> {
    /// The tags of `sql`'s trailing comment; empty when it has none.
    pub fn of(sql: &'a [u8]) -> Self {
        RawTags {
            body: comment_body(sql).unwrap_or_default(),
        }
    }

    /// Whether there is no tag comment.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `(key, raw value)` pairs in order; malformed items are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let body = self.body;
        let mut i = 0;
        std::iter::from_fn(move || {
            while i < body.len() {
                let item_start = i;
                // Up to the next comma outside quotes; `\'` escapes a quote inside a value.
                let mut quoted = false;
                while i < body.len() && (quoted || body[i] != b',') {
                    match body[i] {
                        b'\\' if quoted => i += 1,
                        b'\'' => quoted = !quoted,
                        _ => {}
                    }
                    i += 1;
                }
                let item = &body[item_start..i.min(body.len())];
                i += 1;
                if let Some(pair) = split_pair(item) {
                    return Some(pair);
                }
            }
            None
        })
    }
}

fn split_pair(item: &[u8]) -> Option<(&str, &str)> {
    let eq = item.iter().position(|b| *b == b'=')?;
    let key = std::str::from_utf8(&item[..eq]).ok()?.trim();
    let value = std::str::from_utf8(&item[eq + 1..]).ok()?.trim();
    let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
    Some((key, value))
}

/// Decodes a raw tag value: `\\x` escapes, then percent-encoding (sqlcommenter's order).
pub fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return url_decode(raw);
    }
    let mut unescaped = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                unescaped.push(next);
            }
        } else {
            unescaped.push(c);
        }
    }
    Cow::Owned(url_decode(&unescaped).into_owned())
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
    fn django_comment_tags() {
        let sql = b"SELECT 1 /*controller='index',route='%5Eorders%2F',traceparent='00-a-b-01'*/;";
        let tags = RawTags::of(sql);
        assert_eq!(tags.get("route").map(decode).as_deref(), Some("^orders/"));
        assert_eq!(tags.get("controller"), Some("index"));
        assert_eq!(tags.get("traceparent"), Some("00-a-b-01"));
        assert!(RawTags::of(b"SELECT 1").is_empty());
        assert_eq!(
            RawTags::of(b"SELECT 1 /* plain comment */").iter().count(),
            0
        );
        let raw = RawTags::of(b"SELECT 1 /*a='x,y',b='it\\'s',c=bad,d='%2F'*/ ");
        let pairs: Vec<_> = raw.iter().collect();
        assert_eq!(pairs, [("a", "x,y"), ("b", "it\\'s"), ("d", "%2F")]);
        assert_eq!(raw.get("d").map(decode).as_deref(), Some("/"));
        assert_eq!(raw.get("b").map(decode).as_deref(), Some("it's"));
        // The same values as the full parser gives.
        let sql = b"SELECT 1 /*route='%5Eo%2F',b='it\\'s'*/";
        let full = crate::sql::commenter::parse(sql).expect("parsed");
        for (k, v) in RawTags::of(sql).iter() {
            assert_eq!(full.get(k), Some(decode(v).as_ref()), "{k}");
        }
    }
}
