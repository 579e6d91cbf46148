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

/// The words, with what they mean. Words longer than 8 bytes are matched in [`Kw::of_long`].
const WORDS: &[(&[u8], Kw)] = &[
    (b"null", Kw::Null),
    (b"true", Kw::Bool),
    (b"false", Kw::Bool),
    (b"array", Kw::Array),
    (b"in", Kw::In),
    (b"values", Kw::Values),
    (b"is", Kw::Is),
    (b"not", Kw::Not),
    (b"date", Kw::LiteralType),
    (b"time", Kw::LiteralType),
    (b"timetz", Kw::LiteralType),
    (b"interval", Kw::LiteralType),
    (b"int", Kw::LiteralType),
    (b"int2", Kw::LiteralType),
    (b"int4", Kw::LiteralType),
    (b"int8", Kw::LiteralType),
    (b"integer", Kw::LiteralType),
    (b"smallint", Kw::LiteralType),
    (b"bigint", Kw::LiteralType),
    (b"numeric", Kw::LiteralType),
    (b"decimal", Kw::LiteralType),
    (b"real", Kw::LiteralType),
    (b"float", Kw::LiteralType),
    (b"float4", Kw::LiteralType),
    (b"float8", Kw::LiteralType),
    (b"bool", Kw::LiteralType),
    (b"boolean", Kw::LiteralType),
    (b"text", Kw::LiteralType),
    (b"varchar", Kw::LiteralType),
    (b"char", Kw::LiteralType),
    (b"bpchar", Kw::LiteralType),
    (b"bytea", Kw::LiteralType),
    (b"uuid", Kw::LiteralType),
    (b"json", Kw::LiteralType),
    (b"jsonb", Kw::LiteralType),
    (b"inet", Kw::LiteralType),
    (b"cidr", Kw::LiteralType),
    (b"macaddr", Kw::LiteralType),
    (b"money", Kw::LiteralType),
    (b"xml", Kw::LiteralType),
    (b"oid", Kw::LiteralType),
    (b"regclass", Kw::LiteralType),
    (b"tsquery", Kw::LiteralType),
    (b"tsvector", Kw::LiteralType),
    (b"point", Kw::LiteralType),
    (b"select", Kw::Sign),
    (b"where", Kw::Sign),
    (b"and", Kw::Sign),
    (b"or", Kw::Sign),
    (b"then", Kw::Sign),
    (b"else", Kw::Sign),
    (b"when", Kw::Sign),
    (b"limit", Kw::Sign),
    (b"offset", Kw::Sign),
    (b"between", Kw::Sign),
    (b"case", Kw::Sign),
    (b"return", Kw::Sign),
    (b"having", Kw::Sign),
    (b"on", Kw::Sign),
    (b"distinct", Kw::Sign),
    (b"by", Kw::Sign),
    (b"like", Kw::Sign),
    (b"ilike", Kw::Sign),
    (b"escape", Kw::Sign),
    (b"first", Kw::SignFetch),
    (b"next", Kw::SignFetch),
    (b"all", Kw::SignFetch),
    (b"prior", Kw::Fetch),
    (b"last", Kw::Fetch),
    (b"absolute", Kw::Fetch),
    (b"relative", Kw::Fetch),
    (b"forward", Kw::Fetch),
    (b"backward", Kw::Fetch),
    (b"from", Kw::Fetch),
];

/// Multiplier that sends each word of [`WORDS`] to its own slot of [`TABLE`] (found by search;
/// the table is built at compile time and the build fails if two words share a slot).
const MAGIC: u64 = 0x90c1_92cf_d3ac_94af;
const SLOT_BITS: u32 = 9;

/// A word of up to 8 bytes as a little-endian integer, zero-padded.
const fn pack(w: &[u8]) -> u64 {
    let mut x = 0u64;
    let mut i = 0;
    while i < w.len() {
        x |= (w[i] as u64) << (8 * i);
        i += 1;
    }
    x
}

#[inline]
const fn slot(x: u64) -> usize {
    (x.wrapping_mul(MAGIC) >> (64 - SLOT_BITS)) as usize
}

/// Perfect hash table of the short words: one multiply and one compare per identifier.
static TABLE: [(u64, Kw); 1 << SLOT_BITS] = {
    let mut t = [(0u64, Kw::Other); 1 << SLOT_BITS];
    let mut i = 0;
    while i < WORDS.len() {
        let (w, kw) = WORDS[i];
        assert!(w.len() <= 8, "long words go to Kw::of_long");
        let x = pack(w);
        let s = slot(x);
        assert!(
            t[s].0 == 0,
            "two keywords share a slot: choose another MAGIC"
        );
        t[s] = (x, kw);
        i += 1;
    }
    t
};

impl Kw {
    /// Classifies an unquoted identifier.
    #[inline]
    pub(super) fn of(text: &[u8]) -> Kw {
        let n = text.len();
        if n > 8 {
            return Kw::of_long(text);
        }
        if n == 0 {
            return Kw::Other;
        }
        let mut x = 0u64;
        for (i, b) in text.iter().enumerate() {
            x |= u64::from(*b) << (8 * i);
        }
        let x = crate::sql::fingerprint::ascii_lower8(x);
        let (key, kw) = TABLE[slot(x)];
        if key == x { kw } else { Kw::Other }
    }

    #[cold]
    fn of_long(text: &[u8]) -> Kw {
        if text.eq_ignore_ascii_case(b"timestamp") || text.eq_ignore_ascii_case(b"timestamptz") {
            Kw::LiteralType
        } else if text.eq_ignore_ascii_case(b"returning") {
            Kw::Sign
        } else {
            Kw::Other
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
        assert_eq!(Kw::of(b"RETURNING"), Kw::Sign);
        assert_eq!(Kw::of(b"nul"), Kw::Other);
        assert_eq!(Kw::of(b"nulls"), Kw::Other);
        assert_eq!(Kw::of(b""), Kw::Other);
        for (w, kw) in super::WORDS {
            assert_eq!(Kw::of(w), *kw, "{}", String::from_utf8_lossy(w));
            assert_eq!(Kw::of(&w.to_ascii_uppercase()), *kw);
        }
        assert!(Kw::of(b"FIRST").is_fetch() && Kw::of(b"FIRST").is_sign());
    }
}
