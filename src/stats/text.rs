//! An allocation-free reader of sqlcommenter tags for the statistics hot path.
//!
//! `crate::sql::commenter::parse` is the full parser (legacy `key:value` comments, escapes,
//! decoded owned values) and the slow log uses it. Statistics read the tags of every tagged
//! statement, which in a Django or Rails app is nearly every statement, and the full parser
//! allocates a `String` per key and value; here the raw values are compared as sent and only
//! a value not seen before is decoded (by [`decode`], with the same unescaping and URL-decoding
//! as the full parser).

use std::borrow::Cow;

/// End (exclusive) of `sql` without trailing whitespace and semicolons.
#[inline]
fn trimmed_end(sql: &[u8]) -> usize {
    sql.iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != b';')
        .map_or(0, |p| p + 1)
}

/// Cheap test run on every statement: sqlcommenter appends its comment at the very end.
#[inline]
pub fn may_have_tags(sql: &[u8]) -> bool {
    let end = trimmed_end(sql);
    end >= 4 && &sql[end - 2..end] == b"*/"
}

/// The body of the trailing sqlcommenter comment (between `/*` and `*/`), if any.
#[inline]
fn comment_body(sql: &[u8]) -> Option<&[u8]> {
    let end = trimmed_end(sql);
    if end < 4 || &sql[end - 2..end] != b"*/" {
        return None;
    }
    let body_end = end - 2;
    // The opening `/*`: the last `*` before the body (rare inside a tag comment) preceded by
    // `/`. `memrchr` is SIMD; this search was a third of a tagged statement's update.
    let mut hay = &sql[..body_end];
    while let Some(i) = memchr::memrchr(b'*', hay) {
        if i >= 1 && hay[i - 1] == b'/' {
            return Some(&sql[i + 1..body_end]);
        }
        hay = &hay[..i];
    }
    None
}

/// Still URL-encoded `key='value'` pairs of the trailing sqlcommenter comment, read without
/// allocating: the statistics hot path compares raw values and decodes only new ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawTags<'a> {
    body: &'a [u8],
}

impl<'a> RawTags<'a> {
    /// The tags of `sql`'s trailing comment; empty when it has none.
    #[inline]
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

    /// `(key, raw value)` pairs that are UTF-8, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.iter_bytes()
            .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?)))
    }

    /// `(key, raw value)` pairs as bytes, in order; malformed items are skipped. Bytes, so
    /// that the hot path checks UTF-8 only of values it stores.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut rest = self.body;
        // Jumps between delimiters with SIMD `memchr` rather than stepping through each byte.
        std::iter::from_fn(move || {
            while !rest.is_empty() {
                let Some(eq) = memchr::memchr(b'=', rest) else {
                    rest = &[];
                    return None;
                };
                let key = rest[..eq].trim_ascii();
                // A malformed item before this one leaves `junk,key`: keep only the key.
                let key = match memchr::memrchr(b',', key) {
                    Some(c) => key[c + 1..].trim_ascii(),
                    None => key,
                };
                let after = rest[eq + 1..].trim_ascii_start();
                let Some(value) = after.strip_prefix(b"'") else {
                    rest = match memchr::memchr(b',', after) {
                        Some(c) => &after[c + 1..],
                        None => &[],
                    };
                    continue;
                };
                // The closing quote is the first one not escaped by a backslash.
                let mut j = 0;
                let end = loop {
                    match memchr::memchr2(b'\'', b'\\', &value[j..]) {
                        Some(p) if value[j + p] == b'\'' => break j + p,
                        Some(p) if j + p + 2 <= value.len() => j += p + 2,
                        _ => {
                            rest = &[];
                            return None;
                        }
                    }
                };
                rest = value[end + 1..].trim_ascii_start();
                if let Some(next) = rest.strip_prefix(b",") {
                    rest = next;
                }
                return Some((key, &value[..end]));
            }
            None
        })
    }
}

/// `raw` cut to at most `max` bytes, backing off to a UTF-8 character boundary.
pub fn truncate_bytes(raw: &[u8], max: usize) -> &[u8] {
    if raw.len() <= max {
        return raw;
    }
    let mut cut = max;
    while cut > 0 && (raw[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    &raw[..cut]
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
        for sql in [
            &b"SELECT 1 /*route='%5Eo%2F',b='it\\'s'*/"[..],
            b"SELECT * FROM t WHERE a = '/*x*/' /*action='list', controller='order',db_driver='django.db.backends.postgresql',framework='django%3A4.2.11',route='%5Eorders%2F%24',traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01'*/ ;",
            b"SELECT 1 /*a='x,y',b='\\\\'*/",
        ] {
            let full = crate::sql::commenter::parse(sql).expect("parsed");
            let ours: Vec<(String, String)> = RawTags::of(sql)
                .iter()
                .map(|(k, v)| (k.to_owned(), decode(v).into_owned()))
                .collect();
            assert_eq!(ours.as_slice(), full.pairs(), "{}", String::from_utf8_lossy(sql));
        }
    }
}
