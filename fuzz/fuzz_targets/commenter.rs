//! sqlcommenter tags: read from the end of every statement that has a trailing comment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshape::sql::commenter::{self, MAX_PAIRS};

fuzz_target!(|data: &[u8]| {
    if let Some(comment) = commenter::parse(data) {
        assert!(comment.pairs().len() <= MAX_PAIRS);
        let _ = comment.route();
        let _ = comment.traceparent();
    }
});
