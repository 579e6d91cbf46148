//! Structural analysis (sqlparser AST → facts) with pgshape's budget: whatever the text, it
//! returns facts or an error, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshape::sql::analysis::analyze;

fuzz_target!(|data: &[u8]| {
    let _ = analyze(data);
});
