//! Unit tests for the sql module, one file per concern.

mod fingerprint;
mod normalize;
mod split;
mod sqlparser_compat;
