//! Recognizing constants: literals, signed numbers, typed literals, constant arrays, and the
//! casts that go with them.

use super::{INTERVAL_FIELDS, Kw, PrevWord, Sink, Walker, one_of};
use crate::sql::lexer::{SignificantTokens, Token, TokenKind};

impl<'a, S: Sink> Walker<'a, '_, S> {
    /// If a constant starts at `t`, consumes it (with its casts) and returns where it ends.
    pub(super) fn constant(
        &self,
        t: Token,
        kw: Kw,
        toks: &mut SignificantTokens<'a>,
        sign_ok: bool,
        prev_word: PrevWord,
    ) -> Option<usize> {
        let mut ahead = *toks;
        let text = self.text(t);
        let end = match t.kind {
            k if k.is_constant() => {
                let mut end = t.end;
                // 'a' 'b' across a line break is one literal (on one line it is a syntax error,
                // fingerprinted the same way); U&'...' UESCAPE '!' too. A look at the next raw
                // byte keeps the common case to no extra lexing.
                if k.is_string() && (k == TokenKind::UnicodeString || self.string_may_follow(end)) {
                    loop {
                        let mut a = ahead;
                        match a.next() {
                            Some(n) if n.kind.is_string() => end = n.end,
                            Some(n) if self.is_word(n, b"uescape") => end = n.end,
                            _ => break,
                        }
                        ahead = a;
                    }
                }
                end
            }
            TokenKind::Operator if sign_ok && (text == b"-" || text == b"+") => {
                let n = ahead.next()?;
                if !matches!(n.kind, TokenKind::Number | TokenKind::Param) {
                    return None;
                }
                n.end
            }
            TokenKind::Ident => match kw {
                Kw::Null if prev_word == PrevWord::Other => t.end,
                Kw::Bool if !matches!(prev_word, PrevWord::Is | PrevWord::IsNot) => t.end,
                Kw::Array => {
                    let open = ahead.next()?;
                    if !self.is_punct(open, b"[") {
                        return None;
                    }
                    self.constant_array(&mut ahead)?
                }
                Kw::LiteralType => self.typed_literal(text, &mut ahead)?,
                _ => return None,
            },
            _ => return None,
        };
        let end = self.skip_casts(&mut ahead, end);
        *toks = ahead;
        Some(end)
    }

    /// Whether the next significant token after `at` might be a string: the next byte that
    /// is not whitespace starts a string, a string prefix, or a comment.
    fn string_may_follow(&self, at: usize) -> bool {
        let rest = self.sql.get(at..).unwrap_or_default();
        let Some(i) = rest.iter().position(|b| !b.is_ascii_whitespace()) else {
            return false;
        };
        match rest[i] {
            b'\'' | b'$' | b'-' | b'/' => true,
            b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N' | b'u' | b'U' => {
                matches!(rest.get(i + 1), Some(b'\'' | b'&'))
            }
            _ => false,
        }
    }

    /// After `[`: the end of the `]` if every element is a constant (or a nested `[...]` of them).
    fn constant_array(&self, toks: &mut SignificantTokens<'a>) -> Option<usize> {
        let mut first = true;
        loop {
            let t = toks.next()?;
            if first && self.is_punct(t, b"]") {
                return Some(t.end);
            }
            first = false;
            if self.is_punct(t, b"[") {
                self.constant_array(toks)?;
            } else {
                self.constant(t, self.kw(t), toks, true, PrevWord::Other)?;
            }
            let sep = toks.next()?;
            if self.is_punct(sep, b"]") {
                return Some(sep.end);
            }
            if !self.is_punct(sep, b",") {
                return None;
            }
        }
    }

    /// After a type name: the end of its string if this is a typed literal `DATE '...'`.
    fn typed_literal(&self, type_name: &[u8], toks: &mut SignificantTokens<'a>) -> Option<usize> {
        let mut ahead = *toks;
        if type_name.eq_ignore_ascii_case(b"time") || type_name.eq_ignore_ascii_case(b"timestamp") {
            self.skip_time_zone(&mut ahead);
        }
        let s = ahead.next()?;
        if !s.kind.is_string() {
            return None;
        }
        let mut end = s.end;
        if type_name.eq_ignore_ascii_case(b"interval") {
            while let Some(f) = ahead.peek() {
                if f.kind != TokenKind::Ident || !one_of(self.text(f), INTERVAL_FIELDS) {
                    break;
                }
                end = f.end;
                ahead.next();
            }
        }
        *toks = ahead;
        Some(end)
    }

    /// `WITH TIME ZONE` / `WITHOUT TIME ZONE` after `time`/`timestamp`; its end if present.
    fn skip_time_zone(&self, toks: &mut SignificantTokens<'a>) -> Option<usize> {
        let mut ahead = *toks;
        let w = ahead.next()?;
        if !self.is_word(w, b"with") && !self.is_word(w, b"without") {
            return None;
        }
        let time = ahead.next()?;
        let zone = ahead.next()?;
        if !self.is_word(time, b"time") || !self.is_word(zone, b"zone") {
            return None;
        }
        *toks = ahead;
        Some(zone.end)
    }

    /// Consumes `::type` casts after a constant: a cast only restates the type the `$n` form
    /// sends out of band, so `'2024-01-01'::date` and `$1` are the same shape.
    fn skip_casts(&self, toks: &mut SignificantTokens<'a>, mut end: usize) -> usize {
        loop {
            let mut ahead = *toks;
            match ahead.next() {
                Some(c) if self.is_punct(c, b"::") => {}
                _ => return end,
            }
            match self.skip_type(&mut ahead) {
                Some(e) => {
                    end = e;
                    *toks = ahead;
                }
                None => return end,
            }
        }
    }

    /// Consumes a type name (`int`, `public.t`, `double precision`, `varchar(10)[]`,
    /// `timestamp(3) with time zone`); its end.
    fn skip_type(&self, toks: &mut SignificantTokens<'a>) -> Option<usize> {
        let t = toks.next()?;
        if !matches!(t.kind, TokenKind::Ident | TokenKind::QuotedIdent) {
            return None;
        }
        let name = self.text(t);
        let mut end = t.end;
        loop {
            let mut ahead = *toks;
            match (ahead.next(), ahead.next()) {
                (Some(dot), Some(w))
                    if self.is_punct(dot, b".")
                        && matches!(w.kind, TokenKind::Ident | TokenKind::QuotedIdent) =>
                {
                    end = w.end;
                    *toks = ahead;
                }
                _ => break,
            }
        }
        let opt_word = |toks: &mut SignificantTokens<'a>, w: &[u8], end: &mut usize| {
            if let Some(n) = toks.peek().filter(|n| self.is_word(*n, w)) {
                toks.next();
                *end = n.end;
            }
        };
        if name.eq_ignore_ascii_case(b"double") {
            opt_word(toks, b"precision", &mut end);
        }
        if name.eq_ignore_ascii_case(b"national") {
            opt_word(toks, b"character", &mut end);
        }
        if one_of(name, &[b"character", b"char", b"bit", b"national"]) {
            opt_word(toks, b"varying", &mut end);
        }
        if toks.peek().is_some_and(|p| self.is_punct(p, b"(")) {
            end = self.skip_group(toks).unwrap_or(end);
        }
        if name.eq_ignore_ascii_case(b"time") || name.eq_ignore_ascii_case(b"timestamp") {
            end = self.skip_time_zone(toks).unwrap_or(end);
        }
        while toks.peek().is_some_and(|p| self.is_punct(p, b"[")) {
            end = self.skip_group(toks).unwrap_or(end);
        }
        Some(end)
    }

    /// Consumes a bracketed group from its opening `(` or `[` to the matching close; its end
    /// (the end of input when unbalanced).
    pub(super) fn skip_group(&self, toks: &mut SignificantTokens<'a>) -> Option<usize> {
        let mut depth = 0usize;
        let mut end = None;
        for t in toks.by_ref() {
            end = Some(t.end);
            if t.kind != TokenKind::Punct {
                continue;
            }
            match self.text(t) {
                b"(" | b"[" => depth += 1,
                b")" | b"]" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        end
    }
}
