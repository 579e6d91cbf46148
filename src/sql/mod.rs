//! SQL text handling on the proxy's hot path: fingerprints, normalized text, statement
//! splitting and sqlcommenter tags.
//!
//! Everything here works on raw bytes with a purpose-built PostgreSQL [`lexer`], because a
//! general SQL tokenizer or parser costs tens of microseconds per statement and pgshape
//! fingerprints every statement it relays. The sqlparser AST is built elsewhere (rule analysis),
//! once per fingerprint.
//!
//! - [`lexer`]: the single-pass, allocation-free tokenizer every other part uses.
//! - [`fingerprint()`]: the stable shape id; [`normalize`] the matching readable text.
//! - [`FingerprintCache`]: raw text → fingerprint for statements sent again verbatim.
//! - [`split_statements`]: where a multi-statement `Query` splits, as the server splits it.
//! - [`commenter`]: the sqlcommenter tags (route, controller, traceparent) of a statement.

pub mod analysis;
mod bytes;
mod cache;
pub mod commenter;
mod fingerprint;
mod hasher;
pub mod lexer;
mod normalize;
mod slots;
mod split;
mod walker;

#[cfg(test)]
mod tests;

pub use cache::{FingerprintCache, MAX_CACHED_STATEMENT_BYTES};
pub use fingerprint::{Fingerprint, ParseFingerprintError, fingerprint};
pub use hasher::{FastHasher, KeyHasher};
pub use normalize::normalize;
pub use slots::{Slot, SlotError, slots};
pub use split::{StatementSplitter, split_statements};
