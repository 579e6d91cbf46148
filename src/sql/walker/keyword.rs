//! The few keywords the normalization rules look at, recognized with one lower-casing copy and
//! one `match` per identifier (instead of scanning word lists), because every identifier of
//! every statement goes through here.

/// What an identifier means to the rules; `Other` for everything else (column names, most
/// keywords).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    Other,
    Null,
    /// `TRUE` / `FALSE`.
    Bool,
    Array,
    In,
    Values,
    Is,
    Not,
    /// A type name that makes a typed literal with a following string: `DATE '2024-01-01'`.
    LiteralType,
    /// A keyword after which `-1` is a negative number, not a subtraction.
    Sign,
    /// A sign keyword that is also a `FETCH` direction word (`FIRST`, `NEXT`, `ALL`).
    SignFetch,
    /// A `FETCH`/`MOVE` word that is not the cursor name.
    Fetch,
}

/// Longest word recognized ("timestamptz").
const MAX_LEN: usize = 11;

impl Kw {
    /// Classifies an unquoted identifier.
    #[inline]
    pub(super) fn of(text: &[u8]) -> Kw {
        if text.len() < 2 || text.len() > MAX_LEN {
            return Kw::Other;
        }
        let mut buf = [0u8; MAX_LEN];
        let w = &mut buf[..text.len()];
        w.copy_from_slice(text);
        w.make_ascii_lowercase();
        match &*w {
            b"null" => Kw::Null,
            b"true" | b"false" => Kw::Bool,
            b"array" => Kw::Array,
            b"in" => Kw::In,
            b"values" => Kw::Values,
            b"is" => Kw::Is,
            b"not" => Kw::Not,
            b"date" | b"time" | b"timestamp" | b"timestamptz" | b"timetz" | b"interval"
            | b"int" | b"int2" | b"int4" | b"int8" | b"integer" | b"smallint" | b"bigint"
            | b"numeric" | b"decimal" | b"real" | b"float" | b"float4" | b"float8" | b"bool"
            | b"boolean" | b"text" | b"varchar" | b"char" | b"bpchar" | b"bytea" | b"uuid"
            | b"json" | b"jsonb" | b"inet" | b"cidr" | b"macaddr" | b"money" | b"xml" | b"oid"
            | b"regclass" | b"tsquery" | b"tsvector" | b"point" => Kw::LiteralType,
            b"select" | b"where" | b"and" | b"or" | b"then" | b"else" | b"when" | b"limit"
            | b"offset" | b"between" | b"case" | b"return" | b"having" | b"on" | b"distinct"
            | b"by" | b"like" | b"ilike" | b"escape" | b"returning" => Kw::Sign,
            b"first" | b"next" | b"all" => Kw::SignFetch,
            b"prior" | b"last" | b"absolute" | b"relative" | b"forward" | b"backward" | b"from" => {
                Kw::Fetch
            }
            _ => Kw::Other,
        }
    }

    /// Whether a `-`/`+` after this word is a sign.
    pub(super) fn is_sign(self) -> bool {
        matches!(self, Kw::Sign | Kw::SignFetch | Kw::Not)
    }

    /// Whether this word is part of `FETCH`/`MOVE` syntax rather than the cursor name.
    pub(super) fn is_fetch(self) -> bool {
        matches!(self, Kw::Fetch | Kw::SignFetch | Kw::In)
    }
}

#[cfg(test)]
mod tests {
    use super::Kw;

    #[test]
    fn classifies_case_insensitively() {
        assert_eq!(Kw::of(b"NULL"), Kw::Null);
        assert_eq!(Kw::of(b"TimestampTZ"), Kw::LiteralType);
        assert_eq!(Kw::of(b"Where"), Kw::Sign);
        assert_eq!(Kw::of(b"shop_order"), Kw::Other);
        assert_eq!(Kw::of(b"a"), Kw::Other);
        assert_eq!(Kw::of(b"timestamptzz"), Kw::Other);
        assert!(Kw::of(b"FIRST").is_fetch() && Kw::of(b"FIRST").is_sign());
    }
}
