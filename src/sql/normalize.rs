//! Human-readable normalized text of a statement, shown beside its fingerprint.
//!
//! Produced by the same walk as the fingerprint, so it shows exactly what was hashed. It is
//! built only the first time a fingerprint is seen, so unlike the fingerprint it may allocate.

use std::fmt::Write as _;
use std::ops::Range;

use super::lexer::Token;
use super::walker::{self, Sink};

/// Normalized text of `sql`, like pg_stat_statements shows it, capped at `max_len` bytes (cut
/// on a character boundary).
///
/// - Constants (and names normalized away) become `$1, $2, ...` in order of appearance; `$n`
///   parameters already in the text are renumbered the same way.
/// - A collapsed run of list elements or `VALUES` rows shows as `/*, ... */` after the one kept:
///   `IN ($1 /*, ... */)`; a one-element list shows no marker.
/// - Comments are dropped; whitespace between tokens becomes one space, or none around `.`,
///   `::`, inside brackets and before `,`/`;` (and none before `(` where the source had none).
/// - Identifiers and keywords keep the case they were written in.
/// - Bytes that are not UTF-8 are shown as U+FFFD: the text is for people, not for replay.
pub fn normalize(sql: &[u8], max_len: usize) -> String {
    let mut sink = TextSink {
        out: String::new(),
        last_end: 0,
        last: Last::Start,
        next_param: 1,
        max_len,
    };
    walker::walk(sql, 0..sql.len(), &mut sink);
    let mut out = sink.out;
    if out.len() > max_len {
        let mut cut = max_len;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// What was written last, for spacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Start,
    /// `(`, `[`, `.`, `::`: no space after.
    Glue,
    Other,
}

struct TextSink {
    out: String,
    last_end: usize,
    last: Last,
    next_param: usize,
    max_len: usize,
}

impl TextSink {
    fn full(&self) -> bool {
        self.out.len() > self.max_len
    }

    fn space_before(&mut self, glue_left: bool) {
        if self.last == Last::Other && !glue_left {
            self.out.push(' ');
        }
    }
}

impl Sink for TextSink {
    fn word(&mut self, sql: &[u8], tok: Token) {
        if self.full() {
            return;
        }
        self.space_before(false);
        self.out.push_str(&String::from_utf8_lossy(tok.text(sql)));
        self.last = Last::Other;
        self.last_end = tok.end;
    }

    fn placeholder(&mut self, span: Range<usize>) {
        if self.full() {
            return;
        }
        self.space_before(false);
        // Writing to a String cannot fail.
        let _ = write!(self.out, "${}", self.next_param);
        self.next_param += 1;
        self.last = Last::Other;
        self.last_end = span.end;
    }

    fn symbol(&mut self, text: &[u8], span: Range<usize>) {
        if self.full() {
            return;
        }
        let glue_left = match text {
            b"," | b";" | b")" | b"]" | b"." | b"::" => true,
            // A function call `count(` stays glued; `IN (` keeps its space.
            b"(" | b"[" => span.start == self.last_end,
            _ => false,
        };
        self.space_before(glue_left);
        self.out.push_str(&String::from_utf8_lossy(text));
        self.last = if matches!(text, b"(" | b"[" | b"." | b"::") {
            Last::Glue
        } else {
            Last::Other
        };
        self.last_end = span.end;
    }

    fn elided(&mut self) {
        if self.full() {
            return;
        }
        self.out.push_str(" /*, ... */");
        self.last = Last::Other;
    }
}
