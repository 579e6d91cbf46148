//! The lexer and everything built on it that runs on every relayed statement: fingerprint,
//! normalized text, statement splitting, `$n` slots and the value scan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshape::sql::analysis::scan_values;
use pgshape::sql::lexer::Lexer;
use pgshape::sql::{FingerprintCache, fingerprint, normalize, slots, split_statements};

fuzz_target!(|data: &[u8]| {
    let mut end = 0;
    for token in Lexer::new(data) {
        assert!(token.range().start >= end && token.range().end <= data.len());
        end = token.range().end;
    }
    let fp = fingerprint(data);
    let cache = FingerprintCache::new(4);
    assert_eq!(cache.fingerprint(data), fp);
    assert_eq!(cache.fingerprint(data), fp);
    let text = normalize(data, 1024);
    assert!(text.len() <= 1024 + 4, "{} bytes", text.len());
    let mut last = 0;
    for range in split_statements(data) {
        assert!(range.start >= last && range.start <= range.end && range.end <= data.len());
        last = range.end;
        let _ = fingerprint(&data[range]);
    }
    let _ = slots(data);
    let _ = scan_values(data);
});
