//! sqlcommenter tags (`/*key='value',…*/` appended by OpenTelemetry instrumentations), so a
//! rule can be scoped to a route or controller. Tags change per request (`traceparent`), so
//! they are read per execution and only when a loaded rule asks for them.

/// The tags of the last block comment in the statement, keys and values URL-decoded.
/// Returns an empty list when there is no comment or it is not in sqlcommenter form.
pub fn sqlcommenter_tags(sql: &[u8]) -> Vec<(String, String)> {
    let Ok(text) = std::str::from_utf8(sql) else {
        return Vec::new();
    };
    let Some(start) = text.rfind("/*") else {
        return Vec::new();
    };
    let Some(len) = text[start + 2..].find("*/") else {
        return Vec::new();
    };
    let body = &text[start + 2..start + 2 + len];
    let mut tags = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            return Vec::new();
        };
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let Some(value_body) = after.strip_prefix('\'') else {
            return Vec::new();
        };
        // Values are quoted; a quote inside is escaped with a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in value_body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            return Vec::new();
        };
        let value = value_body[..end].replace("\\'", "'");
        tags.push((url_decode(key), url_decode(&value)));
        rest = value_body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    tags
}

/// Percent-decoding; malformed escapes are kept as written.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
