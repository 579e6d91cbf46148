//! sqlcommenter tags: the trailing `/*key='value',...*/` comment that Django, Rails, Flask,
//! Spring and OpenTelemetry instrumentations append, which tells which endpoint sent a statement.
//!
//! Format (<https://google.github.io/sqlcommenter/spec/>): `key='value'` pairs joined by `,`,
//! keys and values URL-encoded, then `'` in a value escaped as `\'`. Rails' default `legacy`
//! query-log format `/*application:Shop,controller:users,action:show*/` is accepted too.
//! Parsing starts from the end of the statement and gives up at once when it does not end in a
//! comment, so statements without tags cost a few byte compares.

/// Most pairs kept from one comment; the rest are ignored (the comment comes from the client).
pub const MAX_PAIRS: usize = 32;

/// The tags of one statement's trailing comment, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlComment {
    pairs: Vec<(String, String)>,
}

impl SqlComment {
    /// The decoded value of `key` (case-sensitive, as the spec's keys are).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All decoded pairs, in the order written.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The URL route (Django `route`, Flask `route`).
    pub fn route(&self) -> Option<&str> {
        self.get("route")
    }

    /// The controller (Django view name, Rails controller).
    pub fn controller(&self) -> Option<&str> {
        self.get("controller")
    }

    /// The action (Rails, Spring).
    pub fn action(&self) -> Option<&str> {
        self.get("action")
    }

    /// W3C trace context `traceparent`, linking the statement to its trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.get("traceparent")
    }

    /// The application (`app_name`, or Rails' `application`).
    pub fn app_name(&self) -> Option<&str> {
        self.get("app_name").or_else(|| self.get("application"))
    }

    /// The framework and version, e.g. `django:5.2.19`.
    pub fn framework(&self) -> Option<&str> {
        self.get("framework")
    }
}

/// Byte range of the comment's inside (between `/*` and `*/`) if `sql` ends with a block
/// comment, ignoring trailing whitespace and `;`.
fn trailing_comment(sql: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut end = sql.len();
    while end > 0 && (sql[end - 1].is_ascii_whitespace() || sql[end - 1] == b';') {
        end -= 1;
    }
    if end < 4 || &sql[end - 2..end] != b"*/" {
        return None;
    }
    let body_end = end - 2;
    let open = sql[..body_end].windows(2).rposition(|w| w == b"/*")?;
    Some(open + 2..body_end)
}

/// The sqlcommenter tags of `sql`'s trailing comment, or `None` if it has no trailing comment
/// or the comment is not a tag list.
pub fn parse(sql: &[u8]) -> Option<SqlComment> {
    let body = &sql[trailing_comment(sql)?];
    let body = body.trim_ascii();
    if body.is_empty() {
        return None;
    }
    let pairs = if body.contains(&b'=') {
        parse_sqlcommenter(body)?
    } else {
        parse_legacy(body)?
    };
    Some(SqlComment { pairs })
}

/// `key='value',key2='value2'`.
fn parse_sqlcommenter(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        let eq = i + body[i..].iter().position(|&b| b == b'=')?;
        let key = body[i..eq].trim_ascii();
        if key.is_empty() || body.get(eq + 1) != Some(&b'\'') {
            return None;
        }
        let mut value = Vec::new();
        let mut j = eq + 2;
        loop {
            match *body.get(j)? {
                b'\\' => {
                    value.push(*body.get(j + 1)?);
                    j += 2;
                }
                b'\'' => break,
                b => {
                    value.push(b);
                    j += 1;
                }
            }
        }
        if pairs.len() < MAX_PAIRS {
            pairs.push((url_decode(key), url_decode(&value)));
        }
        i = j + 1;
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match body.get(i) {
            None => return Some(pairs),
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
}

/// Rails' legacy `key:value,key:value` (values are not encoded, so `:` splits at the first).
fn parse_legacy(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for part in body.split(|&b| b == b',') {
        let colon = part.iter().position(|&b| b == b':')?;
        let key = part[..colon].trim_ascii();
        let value = part[colon + 1..].trim_ascii();
        if key.is_empty() || !key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return None;
        }
        if pairs.len() < MAX_PAIRS {
            pairs.push((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }
    Some(pairs)
}

/// Percent-decoding; a `%` not followed by two hex digits is kept as is. Invalid UTF-8 after
/// decoding shows as U+FFFD (tags are for display and grouping, not replay).
fn url_decode(s: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DJANGO: &str = "SELECT 1 /*app_name='shop',controller='shop%3Aorder-list',db_driver='django.db.backends.postgresql',framework='django%3A5.2.19',route='api/orders/',traceparent='00-ffd5290c2624aa12a22cfeff40faf8a6-8eb8ee514190b7c4-03'*/";

    #[test]
    fn django_opentelemetry_tags() {
        let c = parse(DJANGO.as_bytes()).expect("tags");
        assert_eq!(c.app_name(), Some("shop"));
        assert_eq!(c.controller(), Some("shop:order-list"));
        assert_eq!(c.get("db_driver"), Some("django.db.backends.postgresql"));
        assert_eq!(c.framework(), Some("django:5.2.19"));
        assert_eq!(c.route(), Some("api/orders/"));
        assert_eq!(
            c.traceparent(),
            Some("00-ffd5290c2624aa12a22cfeff40faf8a6-8eb8ee514190b7c4-03")
        );
        assert_eq!(c.action(), None);
        assert_eq!(c.pairs().len(), 6);
        // A trailing `;` and whitespace after the comment do not hide it.
        assert_eq!(parse(format!("{DJANGO} ;\n").as_bytes()), Some(c));
    }

    #[test]
    fn escapes_and_encoding() {
        let c = parse(br"SELECT 1 /*route='%2Fpath%20x',note='it\'s',odd='100%',k%3D='v'*/")
            .expect("tags");
        assert_eq!(c.route(), Some("/path x"));
        assert_eq!(c.get("note"), Some("it's"));
        assert_eq!(c.get("odd"), Some("100%"));
        assert_eq!(c.get("k="), Some("v"));
    }

    #[test]
    fn rails_formats() {
        let legacy =
            parse(b"SELECT 1 /*application:Shop,controller:users,action:show*/").expect("tags");
        assert_eq!(legacy.app_name(), Some("Shop"));
        assert_eq!(legacy.controller(), Some("users"));
        assert_eq!(legacy.action(), Some("show"));
        let sqlcommenter =
            parse(b"SELECT 1 /*action='show',application='Shop',controller='users'*/")
                .expect("tags");
        assert_eq!(sqlcommenter.action(), Some("show"));
        assert_eq!(sqlcommenter.app_name(), Some("Shop"));
    }

    #[test]
    fn not_tags() {
        assert_eq!(parse(b"SELECT 1"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"*/"), None);
        assert_eq!(parse(b"SELECT 1 /* just a note */"), None);
        assert_eq!(parse(b"SELECT 1 /**/"), None);
        assert_eq!(parse(b"SELECT 1 /*route='unterminated*/"), None);
        assert_eq!(parse(b"SELECT 1 /*route='a' junk*/"), None);
        // A leading comment is not a trailing one.
        assert_eq!(parse(b"/*route='a'*/ SELECT 1"), None);
    }

    #[test]
    fn pair_count_is_capped() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}='v'")).collect();
        let sql = format!("SELECT 1 /*{}*/", many.join(","));
        let c = parse(sql.as_bytes()).expect("tags");
        assert_eq!(c.pairs().len(), MAX_PAIRS);
    }
}
