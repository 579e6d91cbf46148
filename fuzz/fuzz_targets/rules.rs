//! The rule-file loader: a rule file is operator input, but a typo must be an error naming the
//! file and line, never a panic that takes the proxy down on a SIGHUP reload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshape::rules::{Mode, RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [("fuzz.toml".to_owned(), text.to_owned())];
    let _ = RuleSet::from_sources("fuzz", &files, Mode::Enforce);
});
